"""What ``db.validate`` finds beyond the files alone (``ops.migrations.files.check_files``): the journal's verdicts
(drift, dirt, conflicts), literal cluster names that differ from the configured cluster, and statements of apply
and rollback files that the engine's own parser refuses; and the ways out of a dirty migration, which every message
about one names.

The verdicts are pure functions of the files and the journal's one fold (``ops.migrations.journal.fold``);
only the syntax check asks the engine (``formatQueryOrNull``, then ``EXPLAIN AST`` for the message: parsed,
never run).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Iterable

from ops.clickhouse.client import brief, first_line
from ops.core.errors import BadInput
from ops.core.output import plural, word
from ops.migrations import objects, sqlsplit, templates
from ops.migrations.files import MigrationFile, empty_rollback_message, finding, rel
from ops.migrations.journal import State

SYNTAX_ERROR = re.compile(r"Code: 62\b|SYNTAX_ERROR")
Located = tuple[str, Path, int, Any]  # a statement to parse: migration id, its file, its index there, the statement


def ways_out(mid: str, operation: str, rollback_file: bool = True, ran: Iterable[int] = ()) -> str:
    """The hint of a dirty migration: every command that settles it from here (``ran``: the indexes of the
    statements of the unfinished attempt that ran)."""
    ran = sorted(ran)
    if operation == "rollback":
        keep = "" if ran else f"; or, to keep it applied (none of its rollback ran): inv db.mark {mid}"
        return (f"fix its rollback file and run: inv db.rollback; or, if it is undone already: inv db.unmark {mid}"
                + keep)
    undo = ("undo what ran: inv db.rollback" if rollback_file or not ran else
            f"undo {word(len(ran), 'statement')} {', '.join(str(i + 1) for i in ran)} by hand, then: "
            f"inv db.unmark {mid}")
    return (f"fix the file and run: inv db.migrate --resume; or {undo}; "
            f"or, if its effect is already there: inv db.mark {mid}")


def repair(operation: str | None, rollback_file: bool) -> str:
    """The one command that settles a dirty migration (``operation``: the unfinished one), for a script or a deploy:
    undo what ran when a rollback file says how (the database is then as before it), else finish it."""
    return "inv db.rollback" if operation == "rollback" or rollback_file else "inv db.migrate --resume"


def clean_error(exc: BaseException) -> str:
    """ClickHouse's whole message of a failed statement, on one line, without chops' ``ClickHouse refused `…```
    prefix or the client's ``FORMAT Native``."""
    text = first_line(exc.__cause__ or exc)
    text = re.sub(r"^ClickHouse refused `.*?`: ", "", text)
    return re.sub(r"\s*FORMAT Native\.?", "", text)


def status_rows(files: list[MigrationFile], states: dict[str, State]) -> list[dict[str, Any]]:
    """``db.status``: every migration on disk (file order), then those only the journal knows, with its state and,
    when dirty, drifted or ahead, a note in words (the error in short; ``error`` keeps it whole). ``rollback``:
    whether it has a rollback file (here, or one the journal stored when it was applied); ``repair``: for a dirty
    one, the command that settles it (:func:`repair`)."""
    by_id = {f.id: f for f in files}
    rows = []
    for mid in list(by_id) + sorted(set(states) - set(by_id)):
        st, f = states[mid], by_id.get(mid)
        note = ""
        if st.state == "dirty":
            of = (f.rollback_statements if st.operation == "rollback" else f.statements) if f else None
            note = (f"{st.operation} stopped after {len(st.done)} of "
                    f"{plural(len(of), 'statement') if of is not None else '? statements'}"
                    + (f"; statement {st.failed_statement + 1} failed: {brief(st.error or '')}"
                       if st.failed_statement is not None else "; the process was interrupted"))
        elif st.state == "drifted":
            note = "file changed after it was applied"
        elif st.state == "ahead":
            note = "applied, file not in this release" + ("" if st.rollback_sql else
                                                          " (applied before chops stored rollback SQL)")
        rollback = bool(f.rollback_path) if f else bool(st.rollback_sql and json.loads(st.rollback_sql).get("file"))
        rows.append({"id": mid, "state": st.state, "applied_at": st.applied_at, "applied_by": st.applied_by,
                     "statements": len(f.statements) if f else None, "rollback": rollback,
                     "note": note, "error": st.error,
                     "repair": repair(st.operation, rollback) if st.state == "dirty" else None})
    return rows


def markable(chosen: list[MigrationFile], states: dict[str, State]) -> list[MigrationFile]:
    """Those of ``chosen`` that a baseline records as applied: the pending ones. Refused (``BadInput``) when any
    of them is dirty or drifted: those need a decision of their own."""
    ids = [f.id for f in chosen if states[f.id].state in ("dirty", "drifted")]
    if ids:
        st = states[ids[0]]
        how = (ways_out(st.id, st.operation, ran=st.done) if st.state == "dirty"
               else f"restore {st.id}'s file, or record the change with: inv db.mark {st.id}")
        raise BadInput(f"{', '.join(ids)} {'is' if len(ids) == 1 else 'are'} "
                       f"{' and '.join(sorted({states[i].state for i in ids}))}: nothing was recorded", hint=how)
    return [f for f in chosen if states[f.id].state == "pending"]


def ahead_message(ids: list[str]) -> str:
    """The warning about migrations the database has applied and this tree has no file of."""
    files = "file" if len(ids) == 1 else "files"
    return f"database is ahead of this release: {', '.join(ids)} applied, {files} not in this release"


def state_findings(files: list[MigrationFile], states: dict[str, State]) -> list[dict[str, str]]:
    """Drifted and dirty migrations, and pending ones numbered before an applied one (conflicts): errors.
    A migration the database is ahead with (applied, no file here): a warning."""
    found = []
    applied = [f for f in files if states[f.id].state in ("applied", "drifted")]
    for mid in sorted(st.id for st in states.values() if st.state == "ahead"):
        found.append(finding("warning", "ahead", mid, ahead_message([mid]) + " (a newer release applied it; "
                             "it stays, or inv db.rollback undoes it)"))
    for st in states.values():
        if st.state == "drifted":
            found.append(finding("error", "drift", st.id, f"{st.id} changed after it was applied (restore it, or "
                                 "write a new migration for the change)"))
        elif st.state == "dirty":
            found.append(finding("error", "dirty", st.id, f"{st.id} is dirty: {st.operation} did not finish" + (
                f" (statement {st.failed_statement + 1}: {brief(st.error or '')})"
                if st.failed_statement is not None else "")))
    if applied:
        later = max(applied, key=lambda x: x.number)
        for f in files:
            if states[f.id].state == "pending" and f.number < later.number:
                found.append(finding("error", "conflict", f.id, f"{f.id} is pending but {later.id}, numbered after it, "
                                     "is already applied (two branches claimed the same place?); renumber it after "
                                     "the newest applied one"))
    return found


def cluster_problems(files: list[MigrationFile], cluster: str | None, root: Path) -> list[dict[str, str]]:
    """With ``cluster`` (a server's ``clickhouse.cluster``): every literal ``ON CLUSTER name`` naming another
    cluster, in apply and rollback files (the embedded engine removes every clause: nothing to check there)."""
    if not cluster:
        return []
    found = []
    for f in files:
        for path, statements in ((f.path, f.statements), (f.rollback_path, f.rollback_statements)):
            for stmt in statements:
                for name, line in sqlsplit.literal_clusters(stmt.text):
                    if name != cluster:
                        found.append(finding(
                            "error", "cluster", f.id,
                            f"{rel(path, root)} line {stmt.line + line - 1}: ON CLUSTER {name}, but "
                            f"clickhouse.cluster is {cluster} (write ON CLUSTER {{cluster}})"))
    return found


def text_problems(files: list[MigrationFile], settings, database: str) -> list[dict[str, str]]:
    """What the text of apply and rollback files says against the configuration: a placeholder rendering cannot
    fill (``template`` errors: an unknown variable, with file, line and variable; ``ops.migrations.templates``), and
    a database other than ``database`` (the one the migrations run in) named in a statement (``database``
    warnings, once per file and database; ``ops.migrations.objects.database_problems``)."""
    variables, root = settings.get("migrations.variables"), settings.root
    found, seen = [], set()
    for f in files:
        for path, statements in ((f.path, f.statements), (f.rollback_path, f.rollback_statements)):
            if path is None:
                continue
            for line, message in templates.template_problems(path.read_bytes().decode("utf-8", "replace"), variables):
                found.append(finding("error", "template", f.id, f"{rel(path, root)} line {line}: {message}"))
            for stmt in statements:
                for line, message in objects.database_problems(stmt.text, database):
                    if (path, message) not in seen:
                        seen.add((path, message))
                        found.append(finding("warning", "database", f.id,
                                             f"{rel(path, root)} line {stmt.line + line - 1}: {message}"))
    return found


def renderable(files: list[MigrationFile], findings: list[dict[str, str]]) -> list[MigrationFile]:
    """``files`` less those with a ``template`` finding: rendering them would stop at the first bad placeholder,
    which the finding reports already."""
    bad = {x["migration"] for x in findings if x["check"] == "template"}
    return [f for f in files if f.id not in bad]


def located(files: list[MigrationFile]) -> list[Located]:
    """Every statement of the apply files of ``files``."""
    return [(f.id, f.path, i, stmt) for f in files for i, stmt in enumerate(f.statements)]


def located_rollback(f: MigrationFile, statements: list[Any] | None = None) -> list[Located]:
    """The statements of ``f``'s rollback file (or those of them in ``statements``, at their places in the file)."""
    if f.rollback_path is None:
        return []
    chosen = f.rollback_statements if statements is None else statements
    return [(f.id, f.rollback_path, next((i for i, s in enumerate(f.rollback_statements) if s is stmt), n), stmt)
            for n, stmt in enumerate(chosen)]


def unparsable(db, statements: list[Located], render: Callable[[Any, Path], str],
               root: Path) -> list[tuple[str, str]]:
    """``(migration id, message)`` for each of ``statements`` (rendered by ``render``) the engine cannot parse.
    All are parsed in one query (``formatQueryOrNull``: parsed, never run); only the ones that fail are parsed
    again, with ``EXPLAIN AST``, for ClickHouse's message."""
    if not statements:
        return []
    rendered = [render(stmt, path) for _, path, _, stmt in statements]
    bad = db.query("SELECT i FROM (SELECT arrayJoin(arrayEnumerate({s:Array(String)})) AS i, {s:Array(String)} AS s) "
                   "WHERE formatQueryOrNull(s[i]) IS NULL", {"s": rendered}).result_rows
    problems = []
    for (index,) in bad:
        mid, path, i, stmt = statements[index - 1]
        try:
            db.query(f"EXPLAIN AST {rendered[index - 1]}")
            continue  # formatQuery refused what the full parser accepts: not a syntax error
        except Exception as exc:  # only a parse error counts; EXPLAIN AST resolves nothing else
            if not SYNTAX_ERROR.search(str(exc.__cause__ or exc)):
                continue
            problems.append((mid, f"{rel(path, root)} statement {i + 1} (line {stmt.line}): {clean_error(exc)}"))
    return problems


def refuse_empty_rollbacks(plan: list[tuple[MigrationFile, list[Any]]], states: dict[str, State]) -> None:
    """A rollback whose file runs nothing, though the migration did something, is refused (``BadInput``) unless
    the file says it has nothing to undo: reporting "rolled back" while every table stays would be a lie."""
    for f, stmts in plan:
        if not stmts and f.statements and not f.nothing_to_undo and states[f.id].state != "dirty":
            raise BadInput(empty_rollback_message(f) + "; nothing was rolled back",
                           hint=f"write the statements that undo it in {f.id}.rollback.sql, or run again with "
                                "--allow-empty to record it rolled back anyway")
