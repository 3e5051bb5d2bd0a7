"""Where the database is: ``clickhouse.url`` (or the embedded default) parsed into a :class:`Target`.

Settings validate the URL while they load, so this is core, below the ClickHouse layer that opens it.

A URL may carry ClickHouse settings as parameters, beside ``database=``:

* ``NAME=value``: a query setting, sent with every statement (like ``[clickhouse.settings]``), on either engine;
* ``merge_tree.NAME=value`` and ``server_settings.NAME=value``: settings of the embedded engine itself (like
  ``[clickhouse.merge_tree]`` / ``[clickhouse.server_settings]``), in ``chdb://`` URLs only: a client cannot set
  a server's.

A URL's settings win over the configured tables'. Whether ClickHouse knows a name is checked when the engine
opens (an unknown one is refused there, naming it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from ops.core.errors import BadInput, ConfigError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# The groups of ClickHouse settings: the settings key (clickhouse.<group>) and the URL prefix (<group>.NAME) alike.
QUERY, MERGE_TREE, SERVER = "settings", "merge_tree", "server_settings"


@dataclass(frozen=True)
class Target:
    """Where the database is: parsed from a URL or from the embedded default."""

    kind: str  # "embedded" | "server"
    database: str
    path: Path | None = None  # embedded: data directory
    host: str | None = None
    port: int | None = None
    secure: bool = False
    username: str | None = None
    password: str | None = None
    # ClickHouse settings by group: query settings, and the embedded engine's MergeTree and server settings.
    settings: Mapping[str, Any] = field(default_factory=dict, hash=False)
    merge_tree: Mapping[str, Any] = field(default_factory=dict, hash=False)
    server_settings: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def settings_group(self, group: str) -> Mapping[str, Any]:
        """The settings of one group: ``settings``, ``merge_tree`` or ``server_settings``."""
        return {QUERY: self.settings, MERGE_TREE: self.merge_tree, SERVER: self.server_settings}[group]

    @property
    def url(self) -> str:
        """The URL with the password masked: safe to print."""
        if self.kind == "embedded":
            return f"chdb://{self.path}"
        scheme = "https" if self.secure else "http"
        auth = f"{quote(self.username or '', safe='')}{':********' if self.password else ''}@" if self.username else ""
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.database}"


def parse_url(url: str, default_database: str = "default", where: str = "CLICKHOUSE_URL") -> Target:
    """Parse ``chdb:///abs/path[?database=db&…]`` or ``http(s)://user:pass@host[:port][/db][?…]``; one-line errors
    that never show a password. Parameters other than ``database=`` are settings (see the module's doc)."""
    try:
        return _parse_url(url, default_database, where)
    except ConfigError as exc:
        try:
            netloc = urlsplit(url).netloc
        except ValueError:
            netloc = ""
        if _stray_at(url, netloc):
            # what the error would quote (a path, a parameter) may be the end of a password: say it without that
            raise ConfigError(f"{where}: cannot read {mask_url(url)!r}: a '/', '?', '#' or '@' in the password must "
                              "be percent-encoded (%2F, %3F, %23, %40)") from None
        raise exc from None


def _parse_url(url: str, default_database: str, where: str) -> Target:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"{where}: malformed URL {mask_url(url)!r}: {exc}") from None
    if parts.fragment or url.endswith("#"):
        raise ConfigError(f"{where}: a URL has no #fragment, got {mask_url(url)!r}")
    scheme = parts.scheme.lower()
    if scheme == "chdb":
        if parts.netloc or not parts.path.startswith("/"):
            raise ConfigError(f"{where}: an embedded URL is chdb:///absolute/path, got {mask_url(url)!r}")
        database, groups = _parameters(parts.query, where, embedded=True)
        return Target("embedded", validate_identifier(database or default_database, f"{where}: database", ConfigError),
                      path=Path(parts.path), **groups)
    if scheme not in ("http", "https"):
        raise ConfigError(
            f"{where}: unknown scheme {parts.scheme or '(none)'!r} in {mask_url(url)!r} "
            "(use http://, https:// or chdb:///path)"
        )
    if not parts.hostname:
        raise ConfigError(f"{where}: no host in {mask_url(url)!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{where}: port must be a number from 1 to 65535 in {mask_url(url)!r}") from None
    secure = scheme == "https"
    path = parts.path.strip("/")
    if "/" in path:
        raise ConfigError(f"{where}: the URL path names one database, got {path!r}")
    query_database, groups = _parameters(parts.query, where, embedded=False)
    database = unquote(path) or query_database or default_database
    return Target(
        "server",
        validate_identifier(database, f"{where}: database", ConfigError),
        host=parts.hostname,
        port=port or (8443 if secure else 8123),
        secure=secure,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        **groups,
    )


def _parameters(query: str, where: str, embedded: bool) -> tuple[str | None, dict[str, Mapping[str, Any]]]:
    """``database=`` and the settings a URL's query carries, by group; a one-line error for anything else."""
    database: str | None = None
    groups: dict[str, dict[str, str]] = {QUERY: {}, MERGE_TREE: {}, SERVER: {}}
    seen: set[str] = set()
    accepted = "database=, NAME= (a query setting)" + (", merge_tree.NAME=, server_settings.NAME=" if embedded else "")
    for raw, value in parse_qsl(query, keep_blank_values=True):
        if raw in seen:
            raise ConfigError(f"{where}: URL parameter {raw} is given twice")
        seen.add(raw)
        prefix, dot, name = raw.rpartition(".")
        if raw == "database":
            database = value
            continue
        if (dot and prefix not in (MERGE_TREE, SERVER)) or not IDENTIFIER.match(name):
            raise ConfigError(f"{where}: unknown URL parameter {raw!r} (accepted: {accepted})")
        if dot and not embedded:
            raise ConfigError(f"{where}: URL parameter {raw}: a client cannot set a server's "
                              f"{'MergeTree' if prefix == MERGE_TREE else 'server'} settings; "
                              "they are in the server's own configuration")
        if value == "":
            raise ConfigError(f"{where}: URL parameter {raw} has no value (write {raw}=VALUE)")
        groups[prefix or QUERY][name] = value
    return database, {group: MappingProxyType(entries) for group, entries in groups.items()}


def mask_url(url: str) -> str:
    """The URL with any password replaced by ********, whatever the password contains: everything from the first
    ``:`` after the user name to the *last* ``@`` goes (an unencoded ``/``, ``?``, ``#`` or ``@`` in a password
    cannot hide the rest of it). A URL whose query holds an ``@`` is masked too much, never too little."""
    head, sep, rest = url.partition("://")
    at, colon = rest.rfind("@"), rest.find(":")
    if not sep or at < 0 or colon < 0 or colon > at or "/" in rest[:colon]:
        return url
    return f"{head}://{rest[:colon]}:********{rest[at:]}"


def _stray_at(url: str, netloc: str) -> bool:
    """Whether ``url`` has an ``@`` after its host (as a URL parser reads it): a password with an unencoded ``/``,
    ``?`` or ``#`` ends the host early, and what follows would be shown as a path, a parameter or a fragment."""
    return url.partition("://")[2].count("@") > netloc.count("@")


def validate_identifier(name: str, what: str = "name", error: type = BadInput) -> str:
    if not IDENTIFIER.match(name or ""):
        raise error(f"{what} {name!r} is not a valid identifier (letters, digits and _; not starting with a digit)")
    return name


def target(settings) -> Target:
    """The database chops talks to under these settings, with the ClickHouse settings of
    ``[clickhouse.settings]``, ``[clickhouse.merge_tree]`` and ``[clickhouse.server_settings]`` (a URL's win)."""
    url = settings.get("clickhouse.url")
    database = settings.get("clickhouse.database")
    if url:
        found = parse_url(url, database, where=settings.sources["clickhouse.url"])
    else:
        found = Target("embedded", validate_identifier(database, "clickhouse.database"),
                       path=settings.path("paths.var") / "clickhouse")
    groups = {group: MappingProxyType({**settings.get(f"clickhouse.{group}"), **found.settings_group(group)})
              for group in (QUERY, MERGE_TREE, SERVER)}
    return Target(**{**found.__dict__, **groups})
