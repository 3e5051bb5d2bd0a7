"""A migration as the journal stored it when it was applied, so a release whose tree lacks the file can undo it.

A newer release applies ``0008_x``; the deploy is rolled back to a release that has no ``0008_x.sql``. The
database is then *ahead* of that release (``ops.migrations.journal.fold``), and ``inv db.rollback`` there must
still be able to undo ``0008_x`` (or, when it was left dirty half way, the statements of it that ran). So the
``begin`` event of every apply and the ``done`` of every mark store, in the journal's ``sql`` and ``rollback_sql``
columns, the migration's statements and its rollback file's statements, rendered as they ran (or would have run)
then: templates, cluster and variables of that release and that environment.
:func:`from_state` turns them back into an object the rollback code takes like a :class:`MigrationFile`, whose
statements are :class:`StoredStatement` (run as stored, never rendered again).

Both columns hold JSON: ``{"file": "migrations/0008_x.sql", "statements": [[line, text], …]}``, and for the
rollback ``"file": null`` when there was no rollback file, ``"nothing_to_undo"``, and ``"error"`` when its
rollback file could not be rendered then. Events written before the columns existed store nothing: those
migrations can be undone only from a release that has their files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ops.core.errors import BadInput
from ops.migrations.files import MigrationFile, rel
from ops.migrations.journal import State


@dataclass(frozen=True, eq=False)
class StoredStatement:
    """A statement as it ran: rendered already (``Migrations.render`` returns its text as it is)."""

    text: str
    line: int


@dataclass
class StoredMigration:
    """A migration known only from the journal; has what the rollback code reads of a :class:`MigrationFile`.
    ``path`` and ``rollback_path`` are the files' names as they were (relative to the project; not on disk)."""

    id: str
    number: int
    path: Path
    rollback_path: Path | None
    checksum: str
    statements: list[StoredStatement]
    rollback_statements: list[StoredStatement]
    nothing_to_undo: bool = False
    error: str = ""  # the rollback file could not be rendered when the migration was applied
    depends: list[str] = field(default_factory=list)


def record(f: MigrationFile, render: Callable[[Any, Path], str], root: Path) -> tuple[str, str]:
    """The journal's ``sql`` and ``rollback_sql`` for ``f`` applied now: its statements and its rollback file's,
    rendered (``render``: ``Migrations.render``)."""
    forward: dict[str, Any] = {"file": rel(f.path, root), "statements": []}
    back: dict[str, Any] = {"file": rel(f.rollback_path, root) if f.rollback_path else None, "statements": [],
                            "nothing_to_undo": f.nothing_to_undo}
    for part, path, statements in ((forward, f.path, f.statements), (back, f.rollback_path, f.rollback_statements)):
        try:
            part["statements"] = [[s.line, render(s, path)] for s in statements]
        except BadInput as exc:  # a mark of a file this environment cannot render; validate reports it
            part["error"] = exc.message
    return json.dumps(forward, ensure_ascii=False), json.dumps(back, ensure_ascii=False)


def id_number(mid: str) -> int:
    """The number a migration id starts with (0 when it starts with none)."""
    head = mid.split("_", 1)[0]
    return int(head) if head.isdigit() else 0


def from_state(st: State) -> StoredMigration | None:
    """The stored migration of an applied (or dirty) one, or None when its apply stored nothing (before chops
    stored it)."""
    if not st.rollback_sql:
        return None
    forward = json.loads(st.sql) if st.sql else {"file": f"{st.id}.sql", "statements": []}
    back = json.loads(st.rollback_sql)
    return StoredMigration(
        id=st.id, number=id_number(st.id), path=Path(forward["file"]),
        rollback_path=Path(back["file"]) if back.get("file") else None, checksum=st.checksum or "",
        statements=[StoredStatement(text, line) for line, text in forward["statements"]],
        rollback_statements=[StoredStatement(text, line) for line, text in back.get("statements") or []],
        nothing_to_undo=bool(back.get("nothing_to_undo")), error=back.get("error") or "")


def not_stored_message(mid: str) -> str:
    """Why an ahead migration whose apply stored nothing cannot be undone from this release."""
    return (f"{mid}: applied before chops stored rollback SQL; its file is not in this release; roll back from a "
            "release that has it")
