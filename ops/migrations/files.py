"""The migration files: reading ``migrations/`` (names, statements, rollback files, ``-- depends:``), checksums,
the checks that need only the files, new files from the template, and cluster templating (``ops.migrations.sqlsplit``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.clickhouse.client import target
from ops.core.errors import BadInput
from ops.core.output import plural
from ops.core.settings import decode_utf8
from ops.core.graph import find_cycle
from ops.migrations import sqlsplit, templates
from ops.migrations.objects import Action, touches

FILE_NAME = re.compile(r"^(?P<number>\d{4,})_(?P<name>[a-z0-9][a-z0-9_]*)\.sql$")
NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")

TEMPLATE = """\
-- {id}: {title}
--
-- Statements are separated by `;` (semicolons inside strings and comments are fine).
-- Write every ENGINE clause explicitly. `ON CLUSTER {{cluster}}` is kept on a cluster
-- (clickhouse.cluster) and removed elsewhere, so one file serves the embedded engine and a cluster.
-- Another migration that must run first: a line `-- depends: NNNN_name` at the top.
-- ClickHouse DDL is not transactional: prefer IF NOT EXISTS / IF EXISTS so a statement can run twice.

"""

ROLLBACK_TEMPLATE = """\
-- Rollback of {id}: undo its statements, the last one first (statement 1 here undoes the last of {id}).

"""


@dataclass
class MigrationFile:
    """One migration as it is on disk."""

    id: str
    number: int
    path: Path
    rollback_path: Path | None
    checksum: str
    depends: list[str]
    statements: list[Any]  # ops.migrations.sqlsplit.Statement
    rollback_statements: list[Any]
    nothing_to_undo: bool = False  # its rollback file says, with NOTHING_TO_UNDO, that it runs nothing on purpose

    def statement_sha(self, index: int) -> str:
        return sha(self.statements[index].text)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file_checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def read_files(directory: Path, root: Path, problems: list[dict[str, str]] | None = None) -> list[MigrationFile]:
    """Every migration file in ``directory``, in file order (yoyo's ``read_migrations`` finds them; chops reads
    them). Names are checked; duplicate numbers are reported by :func:`check_files`. A file chops cannot read (a
    name it does not take, bytes that are not UTF-8, a statement that does not end) is a ``BadInput``; with
    ``problems`` (``db.validate``, which lists every finding) it is a finding appended there instead, and a file
    with a bad name is left out."""
    from yoyo import read_migrations

    if not directory.is_dir():
        raise BadInput(f"migrations directory {rel(directory, root)} does not exist",
                       hint="create it, or set migrations.dir")
    bad = sorted(p.name for p in directory.iterdir() if p.suffix == ".sql" and not p.name.endswith(".rollback.sql")
                 and not FILE_NAME.match(p.name))
    message = "migration file names must be NNNN_name.sql (lowercase, digits, _): {}"
    if bad and problems is None:
        raise BadInput(message.format(", ".join(bad)))
    for name in bad:
        problems.append(finding("error", "name", name, message.format(name)))
    result = []
    for migration in read_migrations(str(directory)):
        path = Path(migration.path)
        if path.name in bad:
            continue
        rollback = path.with_name(f"{migration.id}.rollback.sql")
        try:
            text = _text(path, root)
            statements = _split(path, text, root)
            rollback_statements = _split(rollback, _text(rollback, root), root) if rollback.exists() else []
        except BadInput as exc:
            if problems is None:
                raise
            problems.append(finding("error", "read", migration.id, exc.message))
            text, statements, rollback_statements = "", [], []
        result.append(MigrationFile(
            id=migration.id,
            number=int(FILE_NAME.match(path.name)["number"]),
            path=path,
            rollback_path=rollback if rollback.exists() else None,
            checksum=file_checksum(path),
            depends=depends(text),
            statements=statements,
            rollback_statements=rollback_statements,
            nothing_to_undo=rollback.exists() and not rollback_statements
            and NOTHING_TO_UNDO.search(rollback.read_bytes().decode("utf-8", "replace")) is not None,
        ))
    return result


# A rollback file that runs nothing on purpose says so on a line of its own (the importers write it for a migration
# its tool rolls back as a no-op); any other rollback file without statements is a mistake until shown otherwise.
NOTHING_TO_UNDO = re.compile(r"^--\s*chops:\s*nothing to undo\b", re.M | re.I)


def _text(path: Path, root: Path) -> str:
    return decode_utf8(path.read_bytes(), rel(path, root), BadInput)


def _split(path: Path, text: str, root: Path):
    try:
        return sqlsplit.split_statements(text)
    except BadInput as exc:
        raise BadInput(f"{rel(path, root)}: {exc.message}") from None


def depends(text: str) -> list[str]:
    """The ids a migration's ``-- depends:`` lines name (yoyo's syntax, read by yoyo's parser)."""
    from yoyo.migrations import parse_metadata_from_sql_comments

    directives, _, _ = parse_metadata_from_sql_comments(text)
    return directives.get("depends", "").split()


def finding(level: str, check: str, migration: str, message: str) -> dict[str, str]:
    return {"level": level, "check": check, "migration": migration, "message": message}


def created_objects(f: MigrationFile) -> list[str]:
    """The tables, views and dictionaries ``f``'s statements leave created (``ops.migrations.objects``), in order."""
    alive: list[str] = []
    for stmt in f.statements:
        for touch in touches(stmt.text):
            if touch.action == Action.CREATED and touch.shown not in alive:
                alive.append(touch.shown)
            elif touch.action == Action.DROPPED and touch.shown in alive:
                alive.remove(touch.shown)
    return alive


def empty_rollback_message(f: MigrationFile) -> str:
    """What rolling back ``f`` leaves, when its rollback file has no statements."""
    stays = created_objects(f)
    what = (f"{len(stays)} object{'s' if len(stays) != 1 else ''} stay{'s' if len(stays) == 1 else ''} "
            f"({', '.join(stays)})" if stays else f"what its {plural(len(f.statements), 'statement')} did stays")
    return f"rollback of {f.id} does nothing (its rollback file has no statements): {what}"


def check_files(files: list[MigrationFile]) -> list[dict[str, str]]:
    """What is wrong with the files alone: duplicate numbers, unknown depends, cycles (errors); no rollback file,
    a rollback file with no statements, no statements (warnings)."""
    findings = []
    by_number: dict[int, list[str]] = {}
    for f in files:
        by_number.setdefault(f.number, []).append(f.id)
    for number, ids in sorted(by_number.items()):
        if len(ids) > 1:
            findings.append(finding("error", "duplicate", ids[0],
                                    f"number {number:04d} is used by {' and '.join(ids)}; renumber one"))
    ids = {f.id for f in files}
    for f in files:
        for dep in f.depends:
            if dep not in ids:
                findings.append(finding("error", "depends", f.id, f"{f.id} depends on {dep}, which does not exist"))
        if f.rollback_path is None:
            findings.append(finding("warning", "rollback", f.id, f"{f.id} has no rollback file ({f.id}.rollback.sql)"))
        elif f.statements and not f.rollback_statements and not f.nothing_to_undo:
            findings.append(finding("warning", "empty-rollback", f.id, empty_rollback_message(f)))
        if not f.statements:
            findings.append(finding("warning", "empty", f.id, f"{f.id} has no statements"))
    cycle = find_cycle({f.id: [d for d in f.depends if d in ids] for f in files})
    if cycle:
        findings.append(finding("error", "cycle", cycle[0], "dependency cycle: " + " -> ".join(cycle + [cycle[0]])))
    return findings


def new_files(directory: Path, root: Path, name: str, dry_run: bool = False) -> list[Path]:
    """Write the next-numbered NNNN_name.sql and NNNN_name.rollback.sql from the template (``dry_run``: only say
    which)."""
    if not name or "/" in name or "\\" in name or ".." in name or any(c.isspace() for c in name):
        raise BadInput(f"migration name {name!r} must be a plain name: no paths, no spaces (e.g. add_events_table)")
    if not NAME.match(name):
        raise BadInput(f"migration name {name!r} may hold only lowercase letters, digits and _ (e.g. add_events_table)")
    if not directory.is_dir():
        raise BadInput(f"migrations directory {rel(directory, root)} does not exist")
    numbers = [int(m["number"]) for p in directory.iterdir() if (m := re.match(r"^(?P<number>\d{4,})_", p.name))]
    mid = f"{max(numbers, default=0) + 1:04d}_{name}"
    path = directory / f"{mid}.sql"
    rollback = directory / f"{mid}.rollback.sql"
    if dry_run:
        return [path, rollback]
    title = name.replace("_", " ")
    path.write_text(TEMPLATE.format(id=mid, title=title))
    rollback.write_text(ROLLBACK_TEMPLATE.format(id=mid))
    return [path, rollback]


# --- cluster templating -----------------------------------------------------------------------------------------------

def cluster_of(settings) -> str | None:
    """The cluster ``ON CLUSTER {cluster}`` names: ``clickhouse.cluster`` on a server, none on the embedded engine."""
    if target(settings).kind != "server":
        return None  # the embedded engine has no cluster: ON CLUSTER {cluster} is removed
    return settings.get("clickhouse.cluster") or None


def render(statement: Any, cluster: str | None, path: Path, root: Path, embedded: bool = False,
           variables: Any = None) -> str:
    """A statement (``sqlsplit.Statement``; bare text counts as line 1, outside goose ENVSUB blocks) of the file at
    ``path`` as it runs: its template variables filled (``ops.migrations.templates``), then ``{cluster}`` filled in
    (or ``ON CLUSTER {cluster}`` removed; on the embedded engine every ``ON CLUSTER`` clause, literal ones included,
    is removed)."""
    statement = sqlsplit.Statement(statement, 1) if isinstance(statement, str) else statement
    try:
        text = templates.render_variables(statement.text, variables or {}, first_line=statement.line,
                                          envsub=statement.envsub)
        return sqlsplit.render(text, cluster, embedded=embedded)
    except BadInput as exc:
        raise BadInput(f"{rel(path, root)}: {exc.message}", hint=exc.hint) from None
