"""Import another tool's migration directory into chops' layout.

chops' layout: ``NNNN_name.sql`` applies a migration, ``NNNN_name.rollback.sql`` undoes it (its statements in the
order they run). An imported migration is ``NNNN_<version>_<name>``: ``NNNN`` is chops' 4-digit sequence number,
which continues after the highest number already in the destination, so the imported migrations run after the
project's own, in the source tool's order, and ``db.new`` keeps numbering after them; ``<version>`` is the source
version exactly as written (``20230101120000``, ``000145``), so every command that shows an id (``db.status``,
``db.history``, ``db.validate``) shows where the migration came from, and ``--adopt`` matches it against the source
tool's version table. Keeping the version as the chops number instead would break the order as soon as the two
kinds mix (golang-migrate's ``000001`` is chops' ``0001``, and ``000145`` sorts before ``0007`` as text).

Source formats, each read as the tool itself reads it:

* ``golang-migrate``: ``{version}_{title}.up.sql`` and an optional ``{version}_{title}.down.sql``, run in the
  numeric order of their versions. An up and a down are paired by the number of the version alone, as
  golang-migrate pairs them (``000145_reacreate_x.up.sql`` with ``000145_recreate_x.down.sql``: the row's note
  says so); two ups (or two downs) with one version are refused, as golang-migrate refuses them;
* ``goose``: ``{version}_{name}.sql`` with ``-- +goose Up`` / ``-- +goose Down`` sections (Go migrations cannot
  be converted), numeric order. ``-- +goose ENVSUB ON`` / ``OFF`` lines stay where they are (a section that
  starts with ENVSUB already on starts with an ``ON`` line), so that ``${NAME}`` is expanded on the same lines as
  goose expands it (``ops.migrations.templates``);
* ``dbmate``: ``{version}_{name}.sql`` with ``-- migrate:up`` / ``-- migrate:down`` sections, in file name order.
  A file may hold several up/down pairs (dbmate 2.x): each ``-- migrate:up`` starts a section that takes one
  ``-- migrate:down``. dbmate applies the up sections in file order and rolls back by running the down sections,
  also in file order (``Migrate`` and ``Rollback`` in dbmate's ``pkg/dbmate/db.go`` loop over the parsed
  sections alike), so the apply file holds the up sections in order and the rollback file the down sections in
  the same order, each under a comment naming its section;
* ``plain``: numbered files of any digit count, ``{number}_{name}.sql`` (``1_init.sql``, ``001_x.sql``,
  ``20240101120000_x.sql``; the npm ``clickhouse-migrations`` layout), each with an optional
  ``{number}_{name}.down.sql`` or ``.rollback.sql`` beside it, paired and ordered as golang-migrate's (by the
  number, numerically).

Template placeholders (``{{.NAME}}``, goose's ``${NAME}``) are kept as written; each row lists the variables its
files use, which ``[migrations.variables]`` must give when the migrations are rendered.

A migration without a down (no ``.down.sql``, no Down section) is a no-op when the source tool rolls it back, so
it gets a rollback file that says so and runs nothing: rolling back through it works as it did before. (A plain
set's tool has no rollback at all; its rollback files say that, and are where the undoing statements go.)

Every written file starts with ``-- imported from <format>: <original file name>``; that line is how a second
import of the same directory recognises what it already wrote and skips it (keeping its id, whatever its form).
Existing files are never overwritten, and every source file is read and checked before anything is written, so a
``BadInput`` means nothing was changed. Each row also lists the tables, views and dictionaries the migration shares
with a migration already in the destination (``ops.migrations.objects``): both creating ``events`` usually means
the second ``CREATE … IF NOT EXISTS`` silently does nothing and the next ``ALTER`` fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ops.core.errors import BadInput
from ops.migrations.objects import Touch, touches_of_sql
from ops.migrations.sqlsplit import CODE, COMMENT, GOOSE_ENVSUB, _scan, split_statements
from ops.migrations.templates import template_variables

FORMATS = ("golang-migrate", "goose", "dbmate", "plain")

_HEADER = "-- imported from {fmt}: {name}"
_HEADER_LINE = re.compile(r"-- imported from (?P<fmt>[a-z-]+): (?P<name>.+)")
# File names in the destination: a sequence number, the name, and whether the file is a rollback.
_CHOPS_FILE = re.compile(r"(?P<number>\d+)_(?P<name>.*?)(?P<rollback>\.rollback)?\.sql")
_MAX_NUMBER = 9999

_GOLANG_MIGRATE_FILE = re.compile(r"(?P<version>\d+)_(?P<name>.*)\.(?P<direction>up|down)\.sql")
_VERSIONED_SQL_FILE = re.compile(r"(?P<version>\d+)_(?P<name>.*)\.sql")
_PLAIN_FILE = re.compile(r"(?P<version>\d+)_(?P<name>.*?)(?:\.(?P<direction>down|rollback|up))?\.sql")
_GOOSE_GO_FILE = re.compile(r"\d+_.*\.go")
_EXPECTED_NAMES = {
    "golang-migrate": "{version}_{title}.up.sql / {version}_{title}.down.sql",
    "goose": "{version}_{name}.sql",
    "dbmate": "{version}_{name}.sql",
    "plain": "{number}_{name}.sql, and {number}_{name}.down.sql or .rollback.sql",
}

# goose: `-- +goose <annotation>`; goose reads annotations case-insensitively.
_GOOSE_ANNOTATION = re.compile(r"--\s*\+goose\s+(?P<annotation>.*?)\s*", re.IGNORECASE)
_GOOSE_DROPPED = {"statementbegin", "no transaction"}
# dbmate: `-- migrate:up` / `-- migrate:down` at the start of a line (as dbmate's `(?m)^--\s*migrate:up` reads
# it), optionally followed by options (`transaction:false`), dropped: ClickHouse has no transactions.
_DBMATE_MARKER = re.compile(r"--\s*migrate:(?P<section>up|down)(?:\s+.*)?")
# goose's ENVSUB switch, written first in a section that starts with it on (switched on by an earlier line).
_ENVSUB_ON = "-- +goose ENVSUB ON"
# The Go-template cluster placeholder some golang-migrate setups use, in chops' spelling.
_GO_TEMPLATE_CLUSTER = re.compile(r"\{\{\s*\.CLUSTER\s*\}\}")

_NO_DOWN = {
    "golang-migrate": ("-- golang-migrate has no {down} for this migration: migrating down over it runs nothing.\n"
                       "-- This rollback runs nothing either, on purpose (no statements below).\n"
              "-- chops: nothing to undo"),
    "goose": ("-- {original} has no `-- +goose Down` section: goose rolls this migration back as a no-op.\n"
              "-- This rollback runs nothing either, on purpose (no statements below).\n"
              "-- chops: nothing to undo"),
    "dbmate": ("-- {original} has no `-- migrate:down` section: rolling it back runs nothing in dbmate.\n"
               "-- This rollback runs nothing either, on purpose (no statements below).\n"
              "-- chops: nothing to undo"),
    "plain": ("-- {original} has no down file ({down}): the tool that ran it could not roll it back.\n"
              "-- This rollback runs nothing (no statements below); write the statements that undo it here."),
}


@dataclass
class _Migration:
    """One source migration, read and checked: the SQL to write for apply and rollback."""

    version: str
    name: str  # normalised
    sources: list[str]  # original file names: apply first
    apply: str
    apply_source: str
    rollback: str
    rollback_source: str
    noop_rollback: bool = False  # the source has no down: the rollback file runs nothing, and says why
    files: dict[str, str] = field(default_factory=dict)  # written file name -> content
    notes: list[str] = field(default_factory=list)  # what the import decided that the reader should know


@dataclass
class _Dest:
    """What the destination already holds."""

    imported: dict[tuple[str, str], list[str]]  # (format, original file name) -> chops files made from it
    highest: int  # the highest migration number
    apply_files: dict[str, tuple[str, str] | None]  # chops id -> (format, original name) it was imported from


def import_migrations(source: Path, dest: Path, fmt: str, dry_run: bool = False) -> list[dict]:
    """Convert the ``fmt`` migrations in ``source`` into chops migrations in ``dest``; one row per source migration.

    Each row: ``source`` (original file names, list), ``version`` (original version string), ``id`` (chops id),
    ``files`` (file names written, or for ``skip`` those already in ``dest``), ``rollback`` (whether the
    migration has a rollback file), ``noop_rollback`` (the source had no down, so its rollback runs nothing),
    ``action`` (``write`` or ``skip``), ``collisions`` (objects it shares with a migration already in ``dest``
    that this import did not write: ``object``, ``action``, ``migration``, ``its_action``, ``message``), ``notes``
    (what the import decided that is worth knowing, e.g. a down file paired by version whose title differs) and
    ``variables`` (the template variables its files use: ``name``, ``required``, ``default``; see
    ``ops.migrations.templates``). With ``dry_run`` nothing is written and the same rows are returned.
    """
    if fmt not in FORMATS:
        raise BadInput(f"unknown migration format {fmt!r}: choose one of {', '.join(FORMATS)}")
    source, dest = Path(source), Path(dest)
    if not source.is_dir():
        raise BadInput(f"migration source {source} is not a directory")
    if dest.exists() and not dest.is_dir():
        raise BadInput(f"migration destination {dest} is not a directory")

    migrations = _READERS[fmt](source)
    existing = _scan_dest(dest)
    plan = _plan(migrations, existing, fmt, dest)
    others = _other_migrations(dest, existing, fmt, migrations)
    for migration, row in zip(migrations, plan):
        row["collisions"] = _collisions(row["id"], migration.apply, others)
        row["variables"] = variables_used(migration.apply, migration.rollback)

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


def _plan(migrations: list[_Migration], existing: _Dest, fmt: str, dest: Path) -> list[dict]:
    """One row per migration, and the files each needs written (``_Migration.files``)."""
    plan: list[dict] = []
    next_number = existing.highest + 1
    for migration in migrations:
        done = sorted(set(existing.imported.get((fmt, migration.apply_source), []))
                      | set(existing.imported.get((fmt, migration.rollback_source), [])))
        if any(not name.endswith(".rollback.sql") for name in done):
            # Already imported: keep its id. Only a rollback file missing since then (an interrupted import, or
            # one made before chops wrote no-op rollbacks) is written now.
            chops_id = _chops_id(done[0])
            rollback_name = f"{chops_id}.rollback.sql"
            if rollback_name not in done:
                migration.files[rollback_name] = _content(fmt, migration.rollback_source, migration.rollback)
                plan.append(_row(migration, chops_id, [rollback_name], rollback=True, action="write"))
            else:
                plan.append(_row(migration, chops_id, done, rollback=True, action="skip"))
            continue
        if next_number > _MAX_NUMBER:
            raise BadInput(f"{dest} would need migration number {next_number}: chops numbers stop at {_MAX_NUMBER}")
        chops_id = f"{next_number:04d}_{migration.version}_{migration.name}"
        next_number += 1
        migration.files[f"{chops_id}.sql"] = _content(fmt, migration.apply_source, migration.apply)
        migration.files[f"{chops_id}.rollback.sql"] = _content(fmt, migration.rollback_source, migration.rollback)
        plan.append(_row(migration, chops_id, list(migration.files), rollback=True, action="write"))
    return plan


def _chops_id(file_name: str) -> str:
    """``0003_add_users.rollback.sql`` -> ``0003_add_users``."""
    match = _CHOPS_FILE.fullmatch(file_name)
    return f"{match['number']}_{match['name']}"


def _row(migration: _Migration, chops_id: str, files: list[str], rollback: bool, action: str) -> dict:
    return {"source": list(migration.sources), "version": migration.version, "id": chops_id, "files": files,
            "rollback": rollback, "noop_rollback": migration.noop_rollback, "action": action,
            "notes": list(migration.notes)}


def variables_used(*texts: str) -> list[dict]:
    """The template variables the SQL ``texts`` (each a file) use, once each, in order of first use: ``name``,
    ``required`` (used somewhere without a default) and ``default`` (the first default written, when it is not
    required)."""
    found: dict[str, dict] = {}
    for use in (use for text in texts for use in template_variables(text)):
        entry = found.setdefault(use.name, {"name": use.name, "required": False, "default": use.default})
        if use.required:
            entry["required"], entry["default"] = True, None
    return list(found.values())


def _content(fmt: str, original: str, sql: str) -> str:
    """A written file: the header line that marks it as imported, a blank line, the SQL."""
    header = _HEADER.format(fmt=fmt, name=original)
    return f"{header}\n\n{sql}\n" if sql else f"{header}\n"


def _scan_dest(dest: Path) -> _Dest:
    """What ``dest`` already holds: the files imported (by origin), the highest number, every apply file."""
    found = _Dest(imported={}, highest=0, apply_files={})
    if not dest.is_dir():
        return found
    for path in sorted(dest.iterdir()):
        match = _CHOPS_FILE.fullmatch(path.name)
        if not match or not path.is_file():
            continue
        found.highest = max(found.highest, int(match["number"]))
        with open(path, encoding="utf-8", errors="replace") as f:
            header = _HEADER_LINE.fullmatch(f.readline().rstrip("\r\n"))
        origin = (header["fmt"], header["name"]) if header else None
        if origin:
            found.imported.setdefault(origin, []).append(path.name)
        if not match["rollback"]:
            found.apply_files[_chops_id(path.name)] = origin
    return found


# --- collisions --------------------------------------------------------------------------------------------------

def _other_migrations(dest: Path, existing: _Dest, fmt: str, migrations: list[_Migration]) -> dict[str, list[Touch]]:
    """The objects each apply file in ``dest`` touches, for the files this import did not write."""
    ours = {(fmt, name) for m in migrations for name in (m.apply_source, m.rollback_source)}
    others: dict[str, list[Touch]] = {}
    for chops_id, origin in existing.apply_files.items():
        if origin in ours:
            continue
        try:
            others[chops_id] = touches_of_sql((dest / f"{chops_id}.sql").read_text(encoding="utf-8"))
        except (BadInput, UnicodeDecodeError):
            continue  # a file chops cannot read: db.validate reports it
    return others


def _collisions(chops_id: str, sql: str, others: dict[str, list[Touch]]) -> list[dict]:
    """Each object ``sql`` touches that a migration in ``others`` touches too, with what each does to it."""
    found, seen = [], set()
    for mine in touches_of_sql(sql):
        for other_id, theirs in others.items():
            for other in theirs:
                if not mine.same_object(other) or (mine.shown, other_id) in seen:
                    continue
                seen.add((mine.shown, other_id))
                found.append({
                    "object": mine.shown, "action": mine.action.value, "migration": other_id,
                    "its_action": other.action.value,
                    "message": f"{chops_id} {_verb(mine)} {mine.shown}, which {other_id} {_verb(other)} too"
                               + (": with IF NOT EXISTS the second silently does nothing" if
                                  mine.action.value == other.action.value == "created" else ""),
                })
                break
    return found


def _verb(touch: Touch) -> str:
    return {"created": "creates", "altered": "alters", "dropped": "drops"}[touch.action.value]


# --- reading sources ---------------------------------------------------------------------------------------------

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


def _terminated(sql: str) -> str:
    """``sql`` with a ``;`` after its last token when its last statement has none, so that another section can
    follow it (dbmate runs each section on its own; goose ends a statement at ``StatementEnd``). The ``;`` goes
    right after the token, before any comment that follows it."""
    last = None  # offset just after the last token that is not whitespace or a comment
    last_is_semicolon = True
    for kind, begin, end in _scan(sql):
        if kind == COMMENT:
            continue
        text = sql[begin:end].rstrip() if kind == CODE else sql[begin:end]
        if text.strip():
            last, last_is_semicolon = begin + len(text), kind == CODE and text.endswith(";")
    if last is None or last_is_semicolon:
        return sql
    return sql[:last] + ";" + sql[last:]


def _sql_files(source: Path, fmt: str) -> list[tuple[Path, re.Match]]:
    """The migration files of ``source`` with their name matched; other ``.sql`` files are a ``BadInput``."""
    pattern = {"golang-migrate": _GOLANG_MIGRATE_FILE, "plain": _PLAIN_FILE}.get(fmt, _VERSIONED_SQL_FILE)
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
        if fmt == "plain" and match["direction"] == "up":
            raise BadInput(f"{path.name} is a golang-migrate file name (.up.sql), not a plain one",
                           hint="import the directory with --from golang-migrate")
        files.append((path, match))
    return files


def _duplicate(first: str, second: str, version: str) -> BadInput:
    return BadInput(f"duplicate migration version {version}: {first} and {second}")


def _read_paired(source: Path, fmt: str) -> list[_Migration]:
    """golang-migrate and plain numbered files: an up file per version and at most one down file, paired by the
    number of the version alone, as golang-migrate does (its ``source/file`` driver keys both directions by the
    parsed version: a down whose title differs is that version's down, and the import says so in a note). Run
    in the numeric order of their versions (``2_x`` before ``10_x``)."""
    ups: dict[int, tuple[Path, re.Match]] = {}
    downs: dict[int, tuple[Path, re.Match]] = {}
    for path, match in _sql_files(source, fmt):
        side = downs if match["direction"] in ("down", "rollback") else ups
        version = int(match["version"])
        if version in side:
            raise _duplicate(side[version][0].name, path.name, match["version"])
        side[version] = (path, match)
    for version, (path, _) in downs.items():
        if version not in ups:
            up = ".up.sql" if fmt == "golang-migrate" else ".sql"
            raise BadInput(f"{path.name} has no matching {up} migration")
    return [_paired(fmt, *ups[version], downs.get(version)) for version in sorted(ups)]


def _paired(fmt: str, path: Path, match: re.Match, down: tuple[Path, re.Match] | None) -> _Migration:
    stem = path.name[:-len(".up.sql")] if fmt == "golang-migrate" else path.name[:-len(".sql")]
    missing = f"{stem}.down.sql" if fmt == "golang-migrate" else f"{stem}.down.sql or {stem}.rollback.sql"
    migration = _Migration(version=match["version"], name=_normalise_name(match["name"], path.name),
                           sources=[path.name], apply=_clean_sql(_read(path), path.name), apply_source=path.name,
                           rollback=_NO_DOWN[fmt].format(down=missing, original=path.name),
                           rollback_source=path.name, noop_rollback=True)
    if down is not None:
        down_path, down_match = down
        differ = [what for what, group in (("titles", "name"), ("versions as written", "version"))
                  if down_match[group] != match[group]]
        if differ:
            by = "golang-migrate pairs an up and a down" if fmt == "golang-migrate" else "they are paired"
            migration.notes.append(f"{down_path.name} is the rollback of {path.name}: {by} by the number of the "
                                   f"version alone, and the {' and '.join(differ)} differ")
        migration.sources.append(down_path.name)
        migration.rollback = _clean_sql(_read(down_path), down_path.name)
        migration.rollback_source, migration.noop_rollback = down_path.name, False
    return migration


def _read_sectioned(source: Path, fmt: str) -> list[_Migration]:
    """goose and dbmate: one file per migration, with up and down sections. goose orders by the number of the
    version, dbmate by file name (its versions are text); both refuse two files with one version."""
    migrations: list[tuple[int | str, _Migration]] = []
    seen: dict[int | str, str] = {}
    for path, match in _sql_files(source, fmt):
        version = int(match["version"]) if fmt == "goose" else match["version"]
        if version in seen:
            raise _duplicate(seen[version], path.name, match["version"])
        seen[version] = path.name
        up, down = _sections(_read(path), path.name, fmt)
        migrations.append((version, _Migration(
            version=match["version"], name=_normalise_name(match["name"], path.name), sources=[path.name],
            apply=up, apply_source=path.name, rollback=down if down is not None else _NO_DOWN[fmt].format(
                original=path.name), rollback_source=path.name, noop_rollback=down is None)))
    if fmt == "goose":
        migrations.sort(key=lambda pair: pair[0])
    return [migration for _, migration in migrations]


@dataclass
class _Section:
    """One up (and maybe down) section of a goose or dbmate file: the 0-based numbers of its lines."""

    up: list[int] = field(default_factory=list)
    down: list[int] | None = None
    up_line: int = 0  # 1-based line of its up marker
    down_line: int = 0
    up_envsub: bool = False  # goose: ENVSUB is on where the section starts (switched on by an earlier line)
    down_envsub: bool = False


def _sections(text: str, original: str, fmt: str) -> tuple[str, str | None]:
    """The apply SQL and the rollback SQL (None when there is no down section) of a goose or dbmate file,
    without marker or annotation lines. Marker lines are recognised line by line, as goose and dbmate do."""
    up_marker = "-- +goose Up" if fmt == "goose" else "-- migrate:up"
    lines = text.split("\n")
    sections, preamble = _parse_sections(lines, original, fmt)
    if not sections:
        raise BadInput(f"{original} has no `{up_marker}` section")

    def sql_of(numbers: list[int], envsub: bool = False) -> str:
        # Checked with every other line blanked, so that errors give line numbers of the file.
        keep = set(numbers)
        as_in_file = "\n".join(line if n in keep else "" for n, line in enumerate(lines))
        sql = _clean_sql("\n".join(lines[n] for n in numbers), original, as_in_file)
        # goose's ENVSUB switch holds from its line on, across sections: a section that starts with it on
        # starts with the marker, so that its file alone says so (ops.migrations.templates expands the lines).
        return f"{_ENVSUB_ON}\n{sql}" if envsub and sql else sql

    if split_statements(sql_of(preamble)):
        raise BadInput(f"{original} has SQL before its `{up_marker}` line")
    if len(sections) == 1:
        only = sections[0]
        return sql_of(only.up, only.up_envsub), None if only.down is None else sql_of(only.down, only.down_envsub)
    ups = [(f"-- dbmate section {i} of {len(sections)} (line {s.up_line})", sql_of(s.up))
           for i, s in enumerate(sections, 1)]
    downs = [(f"-- dbmate section {i} of {len(sections)} (line {s.down_line})" if s.down is not None
              else f"-- dbmate section {i} of {len(sections)} (line {s.up_line}) has no `-- migrate:down`: "
                   "nothing undoes it", "" if s.down is None else sql_of(s.down)) for i, s in enumerate(sections, 1)]
    if all(s.down is None for s in sections):
        return _joined(ups), None
    order = "-- dbmate runs the down sections in file order, as below (not newest first)."
    return _joined(ups), order + "\n" + _joined(downs)


def _joined(parts: list[tuple[str, str]]) -> str:
    """Sections one after another, each under its comment and ended with ``;``."""
    return "\n\n".join(f"{comment}\n{_terminated(sql)}" if sql else comment for comment, sql in parts)


def _parse_sections(lines: list[str], original: str, fmt: str) -> tuple[list[_Section], list[int]]:
    """The sections of a goose or dbmate file and the lines before the first marker (comments only, checked by
    the caller). goose: one Up and at most one Down, in either order; dbmate: each ``-- migrate:up`` starts a
    section that takes at most one ``-- migrate:down``."""
    sections: list[_Section] = []
    preamble: list[int] = []
    current = preamble
    goose = _Section()
    envsub = False  # goose: whether ENVSUB is on at this line
    for number, line in enumerate(lines):
        envsub_marker = GOOSE_ENVSUB.fullmatch(line.strip()) if fmt == "goose" else None
        if envsub_marker:  # kept where it is, as a comment: chops' renderer reads it (ops.migrations.templates)
            envsub = envsub_marker["state"].lower() == "on"
            current.append(number)
            continue
        marker = _marker(line, original, number, fmt)
        if marker is None:
            current.append(number)
        elif marker == "end":  # goose StatementEnd: the statement ends here even without a `;`
            _terminate_lines(lines, current)
        elif not marker:
            continue  # an annotation chops has no use for (StatementBegin, NO TRANSACTION)
        elif fmt == "goose":
            if (goose.up_line if marker == "up" else goose.down_line):
                raise BadInput(f"{original} line {number + 1}: a second {marker} section")
            if marker == "up":
                goose.up_line, goose.up_envsub, current = number + 1, envsub, goose.up
                sections = [goose]
            else:
                goose.down_line, goose.down, goose.down_envsub = number + 1, [], envsub
                current = goose.down
        elif marker == "up":
            sections.append(_Section(up_line=number + 1))
            current = sections[-1].up
        elif not sections:
            if any(_marker(rest, original, n, fmt) == "up" for n, rest in enumerate(lines)):
                raise BadInput(f"{original} line {number + 1}: `-- migrate:down` before the first `-- migrate:up`")
            continue  # no up section at all: reported by the caller
        elif sections[-1].down is not None:
            raise BadInput(f"{original} line {number + 1}: a second down section (each `-- migrate:up` takes one "
                           "`-- migrate:down`)")
        else:
            sections[-1].down, sections[-1].down_line = [], number + 1
            current = sections[-1].down
    return sections, preamble


def _marker(line: str, original: str, number: int, fmt: str) -> str | None:
    """``up``, ``down``, ``end`` (goose StatementEnd) or None for a line of SQL; dropped annotations are ``""``."""
    if fmt == "goose":
        annotation = _GOOSE_ANNOTATION.fullmatch(line.strip())
        if not annotation:
            return None
        word = annotation["annotation"].lower()
        if word == "statementend":
            return "end"
        if word in _GOOSE_DROPPED:
            return ""
        if word not in ("up", "down"):
            raise BadInput(f"{original} line {number + 1}: goose annotation {line.strip()!r} is not supported")
        return word
    marker = _DBMATE_MARKER.fullmatch(line.rstrip())
    return marker["section"] if marker else None


def _terminate_lines(lines: list[str], numbers: list[int]) -> None:
    """End the SQL on lines ``numbers`` with ``;`` (in place) when its last statement has none."""
    if not numbers:
        return
    first, mine = numbers[0], set(numbers)
    block = "\n".join(lines[n] if n in mine else "" for n in range(first, numbers[-1] + 1))
    for offset, line in enumerate(_terminated(block).split("\n")):
        if first + offset in mine:
            lines[first + offset] = line


_READERS = {
    "golang-migrate": lambda source: _read_paired(source, "golang-migrate"),
    "goose": lambda source: _read_sectioned(source, "goose"),
    "dbmate": lambda source: _read_sectioned(source, "dbmate"),
    "plain": lambda source: _read_paired(source, "plain"),
}
