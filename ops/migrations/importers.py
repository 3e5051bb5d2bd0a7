"""Import another tool's migration directory into chops' layout.

chops' layout: ``NNNN_name.sql`` applies a migration, the optional ``NNNN_name.rollback.sql`` undoes it (its
statements in the order they run, undo of the last apply statement first: the order the source tools' down
migrations are already written in, so they are copied as they are). ``NNNN`` is a 4-digit sequence number.

Source formats:

* ``golang-migrate``: ``{version}_{title}.up.sql`` and an optional ``{version}_{title}.down.sql``;
* ``goose``: ``{version}_{name}.sql`` with ``-- +goose Up`` / ``-- +goose Down`` sections (Go migrations cannot
  be converted);
* ``dbmate``: ``{version}_{name}.sql`` with ``-- migrate:up`` / ``-- migrate:down`` sections.

Source migrations run in the numeric order of their versions (``9_x`` before ``10_y``); their new numbers
continue after the highest number already in the destination. Every written file starts with
``-- imported from <format>: <original file name>``; that line is how a second import of the same directory
recognises what it already wrote and skips it. Existing files are never overwritten, and every source file is
read and checked before anything is written, so a ``BadInput`` means nothing was changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ops.core.errors import BadInput
from ops.migrations.sqlsplit import split_statements

FORMATS = ("golang-migrate", "goose", "dbmate")

_HEADER = "-- imported from {fmt}: {name}"
_HEADER_LINE = re.compile(r"-- imported from (?P<fmt>[a-z-]+): (?P<name>.+)")
# File names in the destination: a sequence number, the name, and whether the file is a rollback.
_CHOPS_FILE = re.compile(r"(?P<number>\d+)_(?P<name>.*?)(?P<rollback>\.rollback)?\.sql")
_MAX_NUMBER = 9999

_GOLANG_MIGRATE_FILE = re.compile(r"(?P<version>\d+)_(?P<name>.*)\.(?P<direction>up|down)\.sql")
_VERSIONED_SQL_FILE = re.compile(r"(?P<version>\d+)_(?P<name>.*)\.sql")
_GOOSE_GO_FILE = re.compile(r"\d+_.*\.go")
_EXPECTED_NAMES = {
    "golang-migrate": "{version}_{title}.up.sql / {version}_{title}.down.sql",
    "goose": "{version}_{name}.sql",
    "dbmate": "{version}_{name}.sql",
}

# goose: `-- +goose <annotation>`; goose reads annotations case-insensitively.
_GOOSE_ANNOTATION = re.compile(r"--\s*\+goose\s+(?P<annotation>.*?)\s*", re.IGNORECASE)
_GOOSE_DROPPED = {"statementbegin", "statementend", "no transaction"}
# dbmate: `-- migrate:up` / `-- migrate:down`, optionally followed by options (`transaction:false`), dropped.
_DBMATE_MARKER = re.compile(r"--\s*migrate:(?P<section>up|down)(?:\s+.*)?\s*")
# The Go-template cluster placeholder some golang-migrate setups use, in chops' spelling.
_GO_TEMPLATE_CLUSTER = re.compile(r"\{\{\s*\.CLUSTER\s*\}\}")


@dataclass
class _Migration:
    """One source migration, read and checked: the SQL to write for apply and (if any) rollback."""

    version: str
    name: str  # normalised
    sources: list[str]  # original file names: apply first
    apply: str
    apply_source: str
    rollback: str | None = None
    rollback_source: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # written file name -> content


def import_migrations(source: Path, dest: Path, fmt: str, dry_run: bool = False) -> list[dict]:
    """Convert the ``fmt`` migrations in ``source`` into chops migrations in ``dest``; one row per source migration.

    Each row: ``source`` (original file names, list), ``version`` (original version string), ``id`` (chops id
    ``NNNN_name``), ``files`` (file names written, or for ``skip`` those already in ``dest``), ``rollback``
    (whether the migration has a rollback file) and ``action`` (``write`` or ``skip``). With ``dry_run`` nothing
    is written and the same rows are returned.
    """
    if fmt not in FORMATS:
        raise BadInput(f"unknown migration format {fmt!r}: choose one of {', '.join(FORMATS)}")
    source, dest = Path(source), Path(dest)
    if not source.is_dir():
        raise BadInput(f"migration source {source} is not a directory")
    if dest.exists() and not dest.is_dir():
        raise BadInput(f"migration destination {dest} is not a directory")

    migrations = _READERS[fmt](source)
    imported, highest = _scan_dest(dest)

    plan: list[dict] = []
    next_number = highest + 1
    for migration in migrations:
        existing = sorted(set(imported.get((fmt, migration.apply_source), []))
                          | set(imported.get((fmt, migration.rollback_source), [])))
        if any(not name.endswith(".rollback.sql") for name in existing):
            # Already imported: keep its id. Only a rollback file missing since then (an interrupted import) is
            # written now.
            chops_id = _chops_id(existing[0])
            rollback_name = f"{chops_id}.rollback.sql"
            if migration.rollback is not None and rollback_name not in existing:
                migration.files[rollback_name] = _content(fmt, migration.rollback_source, migration.rollback)
                plan.append(_row(migration, chops_id, [rollback_name], rollback=True, action="write"))
            else:
                plan.append(_row(migration, chops_id, existing, rollback=rollback_name in existing, action="skip"))
            continue
        if next_number > _MAX_NUMBER:
            raise BadInput(f"{dest} would need migration number {next_number}: chops numbers stop at {_MAX_NUMBER}")
        chops_id = f"{next_number:04d}_{migration.name}"
        next_number += 1
        migration.files[f"{chops_id}.sql"] = _content(fmt, migration.apply_source, migration.apply)
        if migration.rollback is not None:
            migration.files[f"{chops_id}.rollback.sql"] = _content(fmt, migration.rollback_source, migration.rollback)
        plan.append(_row(migration, chops_id, list(migration.files), rollback=migration.rollback is not None,
                         action="write"))

    # Apply files before their rollback files, so an interrupted import never leaves a rollback on its own.
    to_write = [(name, content) for m in migrations for name, content in m.files.items()]
    clashes = [name for name, _ in to_write if (dest / name).exists()]
    if clashes:
        raise BadInput(f"{dest} already has {', '.join(clashes)}: chops never overwrites a migration")
    if not dry_run:
        dest.mkdir(parents=True, exist_ok=True)
        for name, content in to_write:
            with open(dest / name, "x", encoding="utf-8", newline="\n") as out:  # "x": never overwrite
                out.write(content)
    return plan


def _chops_id(file_name: str) -> str:
    """``0003_add_users.rollback.sql`` -> ``0003_add_users``."""
    match = _CHOPS_FILE.fullmatch(file_name)
    return f"{match['number']}_{match['name']}"


def _row(migration: _Migration, chops_id: str, files: list[str], rollback: bool, action: str) -> dict:
    return {"source": list(migration.sources), "version": migration.version, "id": chops_id, "files": files,
            "rollback": rollback, "action": action}


def _content(fmt: str, original: str, sql: str) -> str:
    """A written file: the header line that marks it as imported, a blank line, the SQL."""
    header = _HEADER.format(fmt=fmt, name=original)
    return f"{header}\n\n{sql}\n" if sql else f"{header}\n"


def _scan_dest(dest: Path) -> tuple[dict[tuple[str, str], list[str]], int]:
    """What ``dest`` already holds: (format, original file name) -> chops files made from it; the highest number."""
    imported: dict[tuple[str, str], list[str]] = {}
    highest = 0
    if not dest.is_dir():
        return imported, highest
    for path in sorted(dest.iterdir()):
        match = _CHOPS_FILE.fullmatch(path.name)
        if not match or not path.is_file():
            continue
        highest = max(highest, int(match["number"]))
        with open(path, encoding="utf-8", errors="replace") as f:
            header = _HEADER_LINE.fullmatch(f.readline().rstrip("\r\n"))
        if header:
            imported.setdefault((header["fmt"], header["name"]), []).append(path.name)
    return imported, highest


def _normalise_name(name: str, original: str) -> str:
    normal = re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", name.lower())).strip("_")
    if not normal:
        raise BadInput(f"{original}: migration has no name (expected {{version}}_{{name}})")
    return normal


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"{path.name} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def _clean_sql(sql: str, original: str, lines_as_in_file: str | None = None) -> str:
    """The SQL as chops stores it: cluster placeholder converted, blank lines and trailing whitespace trimmed.

    Also checks that it splits into statements (no unterminated string or comment), naming the file and line
    if not; ``lines_as_in_file`` is the same SQL with each line at its line number in the file, when ``sql`` is
    only a section of it.
    """
    try:
        split_statements(sql if lines_as_in_file is None else lines_as_in_file)
    except BadInput as e:
        raise BadInput(f"{original}: {e.message}", hint=e.hint) from None
    sql = _GO_TEMPLATE_CLUSTER.sub("{cluster}", sql)
    return re.sub(r"\A(?:[ \t]*\n)+", "", sql).rstrip()


def _sql_files(source: Path, fmt: str) -> list[tuple[Path, re.Match]]:
    """The migration files of ``source`` with their name matched; other ``.sql`` files are a ``BadInput``."""
    pattern = _GOLANG_MIGRATE_FILE if fmt == "golang-migrate" else _VERSIONED_SQL_FILE
    files = []
    for path in sorted(source.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        if fmt == "goose" and _GOOSE_GO_FILE.fullmatch(path.name):
            raise BadInput(f"goose Go migrations cannot be converted: {path.name}",
                           hint="rewrite it as a SQL migration first")
        if not path.name.endswith(".sql"):
            continue  # READMEs and the like
        match = pattern.fullmatch(path.name)
        if not match:
            raise BadInput(f"{path.name} is not a {fmt} migration file name (expected {_EXPECTED_NAMES[fmt]})")
        files.append((path, match))
    return files


def _in_version_order(migrations: dict[int, _Migration]) -> list[_Migration]:
    return [migrations[version] for version in sorted(migrations)]


def _duplicate(first: str, second: str, version: str) -> BadInput:
    return BadInput(f"duplicate migration version {version}: {first} and {second}")


def _read_golang_migrate(source: Path) -> list[_Migration]:
    ups: dict[int, tuple[Path, re.Match]] = {}
    downs: dict[int, tuple[Path, re.Match]] = {}
    for path, match in _sql_files(source, "golang-migrate"):
        side = ups if match["direction"] == "up" else downs
        version = int(match["version"])
        if version in side:
            raise _duplicate(side[version][0].name, path.name, match["version"])
        side[version] = (path, match)

    migrations: dict[int, _Migration] = {}
    for version, (path, match) in ups.items():
        up_sql = _clean_sql(_read(path), path.name)
        migration = _Migration(version=match["version"], name=_normalise_name(match["name"], path.name),
                               sources=[path.name], apply=up_sql, apply_source=path.name)
        if version in downs:
            down_path, down_match = downs[version]
            if down_match["name"] != match["name"] or down_match["version"] != match["version"]:
                raise _duplicate(path.name, down_path.name, match["version"])
            migration.sources.append(down_path.name)
            migration.rollback = _clean_sql(_read(down_path), down_path.name)
            migration.rollback_source = down_path.name
        migrations[version] = migration
    for version, (path, _) in downs.items():
        if version not in ups:
            raise BadInput(f"{path.name} has no matching .up.sql migration")
    return _in_version_order(migrations)


def _read_sectioned(source: Path, fmt: str) -> list[_Migration]:
    """goose and dbmate: one file per migration, with an up section and an optional down section."""
    migrations: dict[int, _Migration] = {}
    seen: dict[int, str] = {}
    for path, match in _sql_files(source, fmt):
        version = int(match["version"])
        if version in seen:
            raise _duplicate(seen[version], path.name, match["version"])
        seen[version] = path.name
        sections = _sections(_read(path), path.name, fmt)
        migrations[version] = _Migration(
            version=match["version"], name=_normalise_name(match["name"], path.name), sources=[path.name],
            apply=sections["up"], apply_source=path.name, rollback=sections.get("down"), rollback_source=path.name)
    return _in_version_order(migrations)


def _sections(text: str, original: str, fmt: str) -> dict[str, str]:
    """The ``up`` and (if present) ``down`` SQL of a goose or dbmate file, without marker or annotation lines.

    Marker lines are recognised line by line, as goose and dbmate themselves do.
    """
    up_marker = "-- +goose Up" if fmt == "goose" else "-- migrate:up"
    lines = text.split("\n")
    sections: dict[str, list[int]] = {}  # section -> numbers (0-based) of its lines
    current: list[int] = []  # lines before the first marker: comments only, checked below
    preamble = current
    for number, line in enumerate(lines):
        section = None
        if fmt == "goose":
            annotation = _GOOSE_ANNOTATION.fullmatch(line.strip())
            if annotation:
                word = annotation["annotation"].lower()
                if word in _GOOSE_DROPPED:
                    continue
                if word not in ("up", "down"):
                    raise BadInput(f"{original} line {number + 1}: goose annotation {line.strip()!r} is not supported")
                section = word
        else:
            marker = _DBMATE_MARKER.fullmatch(line.strip())
            section = marker["section"] if marker else None
        if section is None:
            current.append(number)
            continue
        if section in sections:
            raise BadInput(f"{original} line {number + 1}: a second {section} section")
        current = sections[section] = []
    if "up" not in sections:
        raise BadInput(f"{original} has no `{up_marker}` section")

    def sql_of(numbers: list[int]) -> str:
        # Checked with every other line blanked, so that errors give line numbers of the file.
        keep = set(numbers)
        as_in_file = "\n".join(line if n in keep else "" for n, line in enumerate(lines))
        return _clean_sql("\n".join(lines[n] for n in numbers), original, as_in_file)

    if split_statements(sql_of(preamble)):
        raise BadInput(f"{original} has SQL before its `{up_marker}` line")
    return {name: sql_of(numbers) for name, numbers in sections.items()}


_READERS = {
    "golang-migrate": _read_golang_migrate,
    "goose": lambda source: _read_sectioned(source, "goose"),
    "dbmate": lambda source: _read_sectioned(source, "dbmate"),
}
