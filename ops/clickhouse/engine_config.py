"""The embedded engine's own settings: the ClickHouse configuration file chops writes beside its data path from
``clickhouse.merge_tree`` and ``clickhouse.server_settings``, and how a configured value compares with what an
engine or a server reports (``system.merge_tree_settings``, ``system.server_settings``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping
from xml.sax.saxutils import escape as xml_escape

from ops.core.errors import BadInput
from ops.core.urls import validate_identifier


def config_path(path: Path) -> Path:
    """The configuration file of the engine at ``path``: beside it, like its lock (``var/clickhouse.config.xml``)."""
    return path.parent / f"{path.name}.config.xml"


def setting_text(value: Any) -> str:
    return ("1" if value else "0") if isinstance(value, bool) else str(value)


def engine_config(merge_tree: Mapping[str, Any], server_settings: Mapping[str, Any]) -> str | None:
    """The ClickHouse configuration file that gives the embedded engine these settings; None when there are none.
    Names were checked as identifiers when the settings loaded; values are escaped."""
    if not merge_tree and not server_settings:
        return None

    def elements(entries: Mapping[str, Any], indent: str) -> list[str]:
        return [f"{indent}<{validate_identifier(name, 'setting', BadInput)}>{xml_escape(setting_text(value))}"
                f"</{name}>" for name, value in sorted(entries.items())]

    lines = ["<!-- Written by chops from clickhouse.merge_tree and clickhouse.server_settings (see: inv config)",
             "     each time it opens the embedded engine: edits here are overwritten. -->", "<clickhouse>"]
    lines += elements(server_settings, "    ")
    if merge_tree:
        lines += ["    <merge_tree>", *elements(merge_tree, "        "), "    </merge_tree>"]
    return "\n".join(lines + ["</clickhouse>", ""])


def write_config(path: Path, text: str | None) -> None:
    """Write the engine's configuration file (atomically), or remove a stale one when there are no settings."""
    if text is None:
        path.unlink(missing_ok=True)
        return
    if path.exists() and path.read_text() == text:
        return
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        partial.write_text(text)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)  # a full disk leaves no half-written file behind


def known_settings(client, table: str, names: Mapping[str, Any]) -> dict[str, str]:
    """``{name: value}`` of ``system.<table>`` for the given names."""
    params = {f"n{i}": name for i, name in enumerate(names)}
    wanted = ", ".join(f"{{{p}:String}}" for p in params)
    result = client.query(f"SELECT name, value FROM system.{table} WHERE name IN ({wanted})", parameters=params)
    return {name: value for name, value in result.result_rows}


def not_applied(wanted: Mapping[str, Any], actual: Mapping[str, str]) -> dict[str, str | None]:
    """The configured settings a server does not have: ``{name: the server's value}`` (None: it has no such
    setting). Values compare as ClickHouse prints them (``true`` is ``1``)."""
    return {name: actual.get(name) for name, value in wanted.items() if actual.get(name) != setting_text(value)}
