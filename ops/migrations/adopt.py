"""Adopting a database another tool migrated: import its directory, read its version table, and record the
migrations it applied as applied in chops without running them, so that switching tools is one command.

The version tables, as each tool writes them on ClickHouse (read from the tools' ClickHouse drivers):

* golang-migrate ``schema_migrations (version Int64, dirty UInt8, sequence UInt64) ENGINE = TinyLog``: one row
  per change of state; the current one is the row with the highest ``sequence``. golang-migrate is linear, so
  every migration up to that version is applied; ``dirty = 1`` means that version's migration began and did not
  finish. Version -1 (or no row) means none.
* goose ``goose_db_version (version_id Int64, is_applied UInt8, date Date, tstamp DateTime) ENGINE = MergeTree``:
  a row per apply (goose deletes the rows of a version it rolls back; older goose inserted ``is_applied = 0``).
  A version is applied when its newest row says so, as goose decides (``ORDER BY tstamp DESC LIMIT 1`` per
  version). Version 0 is the row goose writes when it creates the table.
* dbmate ``schema_migrations (version String, ts DateTime, applied UInt8) ENGINE = ReplacingMergeTree(ts)``:
  dbmate's own query, ``SELECT version FROM schema_migrations FINAL WHERE applied``. goose and dbmate apply
  migrations missing below the newest one, so their applied set can have holes.

Only migrations chops' journal has never seen are recorded (through ``Migrations.mark_many``, the repair path of
``db.mark``); a migration chops has applied, rolled back or left dirty since keeps its own history, so adopting
again changes nothing. Everything is read and checked before anything is written: a version table that names a
version the directory lacks is a ``BadInput``, and nothing is imported or recorded. A version golang-migrate left
dirty becomes a dirty chops migration with no statement done (``Migrations.mark_dirty``): ``--resume`` runs it
from its first statement, ``db.rollback`` undoes nothing, ``db.mark`` settles it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.core.errors import BadInput
from ops.core.output import word
from ops.core.urls import validate_identifier
from ops.migrations.importers import FORMATS, import_migrations

VERSION_TABLES = {"golang-migrate": "schema_migrations", "goose": "goose_db_version", "dbmate": "schema_migrations"}
_COLUMNS = {"golang-migrate": ("version", "dirty", "sequence"), "goose": ("version_id", "is_applied", "tstamp"),
            "dbmate": ("version", "applied", "ts")}


@dataclass
class ToolState:
    """What the other tool's version table says: the versions it applied (as the tool compares them: numbers
    for golang-migrate and goose, text for dbmate) and the version it left dirty (golang-migrate only)."""

    table: str
    applied: list[Any]
    dirty: Any = None
    current: Any = None  # golang-migrate's current version (-1: none)


def read_tool_state(db, fmt: str, table: str | None = None) -> ToolState:
    """Read ``fmt``'s version table (``table``, default the tool's own name) in ``db``'s database."""
    if fmt not in VERSION_TABLES:
        raise BadInput(f"{fmt} has no version table to adopt from", hint="import without --adopt")
    table = validate_identifier(table or VERSION_TABLES[fmt], "version table")
    columns = {r["name"] for r in db.rows("SELECT name FROM system.columns WHERE database = currentDatabase() "
                                          "AND table = {t:String}", {"t": table})}
    if not columns:
        raise BadInput(f"there is no table {table} in database {db.name}: nothing to adopt from {fmt}",
                       hint=f"name {fmt}'s version table with --table, or import without --adopt")
    missing = [c for c in _COLUMNS[fmt] if c not in columns]
    if missing:
        raise BadInput(f"{table} is not {fmt}'s version table: it has no column {', '.join(missing)} "
                       f"(it has {', '.join(sorted(columns))})", hint="check --from, or name the table with --table")
    if fmt == "golang-migrate":
        found = db.rows(f"SELECT version, dirty FROM `{table}` ORDER BY sequence DESC LIMIT 1")
        current = int(found[0]["version"]) if found else -1
        dirty = current if found and found[0]["dirty"] and current >= 0 else None
        return ToolState(table, applied=[current] if current >= 0 and dirty is None else [], dirty=dirty,
                         current=current)
    if fmt == "goose":
        newest = "id" if "id" in columns else "tstamp"  # goose's other dialects number the rows
        found = db.rows(f"SELECT version_id AS v FROM `{table}` GROUP BY version_id "
                        f"HAVING argMax(is_applied, {newest}) = 1 AND version_id != 0 ORDER BY version_id")
        return ToolState(table, applied=[int(r["v"]) for r in found])
    found = db.rows(f"SELECT version AS v FROM `{table}` FINAL WHERE applied ORDER BY version")
    return ToolState(table, applied=[r["v"] for r in found])


def _number(chops_id: str) -> int:
    return int(chops_id.split("_", 1)[0])


def _version_key(fmt: str, version: str) -> Any:
    return version if fmt == "dbmate" else int(version)


def plan_adoption(fmt: str, rows: list[dict], tool: ToolState, known: set[str],
                  pending_elsewhere: list[str] = ()) -> dict[str, Any]:
    """Which imported migrations (``rows`` of ``import_migrations``) to record as applied and which one as
    dirty, given the tool's state and the ids chops' journal already ``known``. Pure: reads and writes nothing.

    Returns ``table``, ``adopt`` (ids to record applied), ``dirty`` (the id to record dirty, or None),
    ``known`` (ids the tool applied that chops' journal already has: left alone), ``pending`` (ids to apply
    later) and ``gaps``: pending ids, imported or among ``pending_elsewhere`` (the destination's other pending
    migrations), numbered below one recorded applied; goose and dbmate apply those late, chops calls them
    conflicts and refuses to migrate until they are settled."""
    by_version = {_version_key(fmt, r["version"]): r["id"] for r in rows}
    applied: set[Any] = set(tool.applied)
    if fmt == "golang-migrate":  # linear: everything below the current version is applied
        top = tool.dirty if tool.dirty is not None else tool.current
        applied = {v for v in by_version if v <= top and v != tool.dirty}
        named = [top] if top is not None and top >= 0 else []
    else:
        named = list(tool.applied)
    unknown = [v for v in named if v not in by_version]
    if unknown:
        shown = ", ".join(str(v) for v in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise BadInput(f"{tool.table} records {word(len(unknown), 'version')} {shown}, which the directory does not "
                       "have: the database "
                       "is newer than these files; nothing was imported or recorded",
                       hint="import the directory the database was migrated with")
    plan: dict[str, Any] = {"table": tool.table, "adopt": [], "dirty": None, "known": [], "pending": [], "gaps": []}
    for version in sorted(by_version):
        chops_id = by_version[version]
        if version in applied or version == tool.dirty:
            if chops_id in known:
                plan["known"].append(chops_id)
            elif version == tool.dirty:
                plan["dirty"] = chops_id
            else:
                plan["adopt"].append(chops_id)
        else:
            plan["pending"].append(chops_id)
    newest = max((_number(i) for i in plan["adopt"]), default=0)
    plan["gaps"] = sorted((i for i in [*plan["pending"], *pending_elsewhere] if _number(i) < newest), key=_number)
    return plan


def import_and_adopt(migrations, source: Path, fmt: str, table: str | None = None,
                     dry_run: bool = False) -> dict[str, Any]:
    """Import ``source`` into ``migrations.directory`` and adopt what ``fmt``'s version table says is applied.

    Returns ``imported`` (the rows of :func:`ops.migrations.importers.import_migrations`) and ``adoption``
    (:func:`plan_adoption`, plus ``recorded``: the ids recorded applied, empty on a dry run)."""
    if fmt not in FORMATS:
        raise BadInput(f"unknown migration format {fmt!r}: choose one of {', '.join(FORMATS)}")
    rows = import_migrations(source, migrations.directory, fmt, dry_run=True)  # every file read and checked
    tool = read_tool_state(migrations.db, fmt, table)
    known = {e["migration_id"] for e in migrations.journal()}
    imported = {r["id"] for r in rows}
    states = migrations.states() if migrations.directory.is_dir() else {}
    others = [i for i, st in states.items() if st.state == "pending" and i not in imported]
    plan = plan_adoption(fmt, rows, tool, known, others)
    plan["recorded"] = []
    if not dry_run:
        rows = import_migrations(source, migrations.directory, fmt)
        plan["recorded"] = migrations.mark_many(plan["adopt"])  # one lock, one journal write
        if plan["dirty"] is not None and migrations.mark_dirty(plan["dirty"]):
            migrations.notify(f"{plan['dirty']} is dirty, as {fmt} left version {tool.dirty}: check what of it "
                              f"ran, then inv db.migrate --resume, inv db.rollback or inv db.mark {plan['dirty']}")
    return {"imported": rows, "adoption": plan}
