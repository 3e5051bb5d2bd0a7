"""Migrations: yoyo for files, dependencies and ordering; chops for what ClickHouse needs on top.

ClickHouse DDL is not transactional, so an attempt is journaled statement by statement in
``_chops_migration_log`` (see ``ops.migrations.yoyo_backend``): ``begin``, one ``statement`` event after each statement
that ran, then ``done`` (or ``failed``). From that journal every migration is:

* ``applied``: its latest completed operation applied or marked it, and the file's checksum is unchanged;
* ``drifted``: applied, but the file on disk is not what was applied (or it is gone);
* ``dirty``: an attempt began and did not finish (a statement failed, or the process died). ``db.migrate``
  refuses to go on; ``db.migrate --resume`` continues from the first unfinished statement once the file is fixed
  (statements that already ran must be unchanged), and ``db.rollback`` undoes the statements that ran;
* ``pending``: never applied, or rolled back.

On a server, journal writes are batched so that each migration costs one insert beyond its own statements: a
statement's ``statement`` event, the migration's ``done`` and the next migration's ``begin`` travel in one INSERT.
On the embedded engine a run's events go through a write-ahead file and reach the journal in one INSERT at the
end (``ops.migrations.yoyo_backend.PendingEvents``); a run killed mid-way leaves the file, which readers merge and the
next writer replays.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import os
import re
import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable

from ops.core.errors import BadInput, WorkFailed
from ops.core.graph import find_cycle
from ops.migrations.yoyo_backend import LOG_TABLE, ClickHouseBackend, PendingEvents, utc_now_text
from ops.core import pidfile

FILE_NAME = re.compile(r"^(?P<number>\d{4,})_(?P<name>[a-z0-9][a-z0-9_]*)\.sql$")
NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
SYNTAX_ERROR = re.compile(r"Code: 62\b|SYNTAX_ERROR")

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
    yoyo: Any = None  # the yoyo Migration

    def statement_sha(self, index: int) -> str:
        return _sha(self.statements[index].text)


@dataclass
class State:
    """What the journal says about one migration."""

    id: str
    state: str = "pending"  # pending | applied | drifted | dirty
    applied_at: str | None = None
    applied_by: str | None = None
    checksum: str | None = None
    # the attempt in progress (dirty): its operation, statements done {index: sha}, and what failed
    operation: str | None = None
    attempt_id: str | None = None
    done: dict[int, str] = field(default_factory=dict)
    failed_statement: int | None = None
    error: str | None = None


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file_checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


class Migrations:
    """The migrations of one directory against one database."""

    def __init__(self, settings, db=None, notify: Callable[[str], None] | None = None):
        self.settings = settings
        self.directory = settings.path("migrations.dir")
        self._db = db
        self._backend = None
        self._events: PendingEvents | None = None
        self.notify = notify or (lambda message: None)

    # --- files -----------------------------------------------------------------------------------------------------

    def files(self) -> list[MigrationFile]:
        """Every migration file, in file order. Names are checked; duplicate numbers are reported by validate."""
        from yoyo import read_migrations

        from ops.migrations.sqlsplit import split_statements

        if not self.directory.is_dir():
            raise BadInput(f"migrations directory {_rel(self.directory, self.settings.root)} does not exist",
                           hint="create it, or set migrations.dir")
        bad = [p.name for p in self.directory.iterdir() if p.suffix == ".sql" and not p.name.endswith(".rollback.sql")
               and not FILE_NAME.match(p.name)]
        if bad:
            raise BadInput(f"migration file names must be NNNN_name.sql (lowercase, digits, _): {', '.join(sorted(bad))}")
        result = []
        migrations = list(read_migrations(str(self.directory)))
        by_id = {m.id: m for m in migrations}
        for migration in migrations:
            path = Path(migration.path)
            rollback = path.with_name(f"{migration.id}.rollback.sql")
            text = path.read_text(encoding="utf-8")
            result.append(MigrationFile(
                id=migration.id,
                number=int(FILE_NAME.match(path.name)["number"]),
                path=path,
                rollback_path=rollback if rollback.exists() else None,
                checksum=file_checksum(path),
                depends=_depends(text),
                statements=self._split(path, text),
                rollback_statements=self._split(rollback, rollback.read_text(encoding="utf-8")) if rollback.exists() else [],
                yoyo=migration,
            ))
        for f in result:
            # yoyo would load each file again (splitting it with sqlparse, which does not know ClickHouse's
            # heredocs) just to read `-- depends:`; hand it what we parsed. Unknown ids are left to validate().
            f.yoyo.steps = []
            f.yoyo._depends = {by_id[d] for d in f.depends if d in by_id}
        return result

    def _split(self, path: Path, text: str):
        from ops.migrations.sqlsplit import split_statements

        try:
            return split_statements(text)
        except BadInput as exc:
            raise BadInput(f"{_rel(path, self.settings.root)}: {exc.message}") from None

    def render(self, statement_text: str, path: Path) -> str:
        from ops.migrations.sqlsplit import render

        try:
            return render(statement_text, self.cluster)
        except BadInput as exc:
            raise BadInput(f"{_rel(path, self.settings.root)}: {exc.message}") from None

    @property
    def cluster(self) -> str | None:
        from ops.clickhouse.client import target

        if target(self.settings).kind != "server":
            return None  # the embedded engine has no cluster: ON CLUSTER {cluster} is removed
        return self.settings.get("clickhouse.cluster") or None

    def statement_settings(self) -> dict[str, int]:
        """Settings each migration statement runs with: wait for ALTERs and mutations everywhere they apply."""
        from ops.clickhouse.client import target

        if target(self.settings).kind != "server":
            return {}  # chDB runs mutations synchronously already
        level = 2 if self.cluster else 1
        return {"alter_sync": level, "mutations_sync": level}

    def new(self, name: str, dry_run: bool = False) -> list[Path]:
        """Write the next-numbered NNNN_name.sql and NNNN_name.rollback.sql from the template (``dry_run``: only
        say which)."""
        if not name or "/" in name or "\\" in name or ".." in name or any(c.isspace() for c in name):
            raise BadInput(f"migration name {name!r} must be a plain name: no paths, no spaces (e.g. add_events_table)")
        if not NAME.match(name):
            raise BadInput(f"migration name {name!r} may hold only lowercase letters, digits and _ (e.g. add_events_table)")
        if not self.directory.is_dir():
            raise BadInput(f"migrations directory {_rel(self.directory, self.settings.root)} does not exist")
        numbers = [int(m["number"]) for p in self.directory.iterdir()
                   if (m := re.match(r"^(?P<number>\d{4,})_", p.name))]
        mid = f"{max(numbers, default=0) + 1:04d}_{name}"
        path = self.directory / f"{mid}.sql"
        rollback = self.directory / f"{mid}.rollback.sql"
        if dry_run:
            return [path, rollback]
        title = name.replace("_", " ")
        path.write_text(TEMPLATE.format(id=mid, title=title))
        rollback.write_text(ROLLBACK_TEMPLATE.format(id=mid))
        return [path, rollback]

    # --- the journal ---------------------------------------------------------------------------------------------

    @property
    def db(self):
        if self._db is None:
            from ops.clickhouse.client import connect

            self._db = connect(self.settings)
        return self._db

    @property
    def backend(self) -> ClickHouseBackend:
        if self._backend is None:
            self._backend = ClickHouseBackend(self.db, cluster=self.settings.get("clickhouse.cluster") or None,
                                              lock_timeout=self.settings.get("migrations.lock_timeout"))
        return self._backend

    @property
    def pending_events(self) -> PendingEvents:
        if self._events is None:
            self._events = PendingEvents(self.db)
        return self._events

    @contextmanager
    def _locked(self):
        """The migration lock, with the journal table created, leftovers of a killed run replayed, and this run's
        events written through ``pending_events``: only for operations that write."""
        self.backend.ensure_internal_schema_updated()
        with self.backend.lock():
            pending = self.pending_events
            pending.start()
            try:
                yield
            except BaseException:
                try:
                    pending.finish()
                except Exception:
                    pending.abandon()  # the journal is unreachable: the next writer replays the file
                raise
            pending.finish()

    def journal(self) -> list[dict[str, Any]]:
        if not self.backend._internal_schema_updated and not self.backend.journal_exists():
            return []  # nothing ever ran here; reading creates nothing
        rows = self.db.rows(
            f"SELECT toString(id) AS id, attempt_id, migration_id, operation, event, statement, statement_sha, "
            f"checksum, error, username, hostname, pid, command, created_at_utc FROM {LOG_TABLE} "
            "ORDER BY created_at_utc, statement"
        )
        unflushed = self.pending_events.leftover()
        if unflushed:
            seen = {r["id"] for r in rows}
            rows += [{k: v for k, v in e.items() if k != "migration_hash"}
                     | {"created_at_utc": datetime.strptime(e["created_at_utc"], "%Y-%m-%d %H:%M:%S.%f")}
                     for e in unflushed if e["id"] not in seen]
            rows.sort(key=lambda r: (r["created_at_utc"], r["statement"]))
        return rows

    def states(self, files: list[MigrationFile] | None = None) -> dict[str, State]:
        """The state of every migration known to the journal or on disk."""
        files = self.files() if files is None else files
        states: dict[str, State] = {f.id: State(f.id) for f in files}
        for e in self.journal():
            if e["event"] == "log":
                continue
            st = states.setdefault(e["migration_id"], State(e["migration_id"]))
            if e["event"] == "begin":
                if not (st.operation == e["operation"] and st.state == "dirty"):
                    st.done = {}  # a new attempt; a resumed one keeps what ran before
                st.state, st.operation, st.attempt_id = "dirty", e["operation"], e["attempt_id"]
                st.failed_statement, st.error = None, None
            elif e["event"] == "statement":
                st.done[int(e["statement"])] = e["statement_sha"]
            elif e["event"] == "failed":
                st.failed_statement, st.error = int(e["statement"]), e["error"]
            elif e["event"] == "done":
                if e["operation"] in ("apply", "mark"):
                    st.state, st.checksum = "applied", e["checksum"] or None
                    st.applied_at = e["created_at_utc"].strftime("%Y-%m-%d %H:%M:%S UTC")
                    st.applied_by = f"{e['username']}@{e['hostname']}"
                else:
                    st.state, st.checksum, st.applied_at, st.applied_by = "pending", None, None, None
                st.operation, st.attempt_id, st.done = None, None, {}
                st.failed_statement, st.error = None, None
        by_id = {f.id: f for f in files}
        for st in states.values():
            f = by_id.get(st.id)
            if st.state == "applied" and (f is None or (st.checksum and st.checksum != f.checksum)):
                st.state = "drifted"
        return states

    def status(self) -> list[dict[str, Any]]:
        files = self.files()
        states = self.states(files)
        rows = []
        for mid in [f.id for f in files] + sorted(set(states) - {f.id for f in files}):
            st = states[mid]
            f = next((x for x in files if x.id == mid), None)
            note = ""
            if st.state == "dirty":
                total = len(f.statements) if f else "?"
                note = (f"{st.operation} stopped after {len(st.done)} of {total} statements"
                        + (f"; statement {st.failed_statement + 1} failed: {st.error}" if st.failed_statement is not None
                           else "; the process was interrupted"))
            elif st.state == "drifted":
                note = "file missing" if f is None else "file changed after it was applied"
            rows.append({"id": mid, "state": st.state, "applied_at": st.applied_at, "applied_by": st.applied_by,
                         "statements": len(f.statements) if f else None,
                         "rollback": bool(f and f.rollback_path), "note": note})
        return rows

    def _event_row(self, f: MigrationFile | str, operation: str, event: str, attempt: str, statement: int = 0,
                   statement_sha: str = "", error: str = "") -> list[Any]:
        mid = f if isinstance(f, str) else f.id
        checksum = "" if isinstance(f, str) else f.checksum
        user, host, pid, command = _who()
        return [str(uuid.uuid4()), attempt, mid, hashlib.sha256(mid.encode()).hexdigest(), operation, event,
                statement, statement_sha, checksum, error[:2000], user, host, pid, command, utc_now_text()]

    def _write(self, rows: list[list[Any]]) -> None:
        """Record journal events: in one INSERT (atomic: a MergeTree part), or appended to the run's write-ahead
        file. Values travel as JSONEachRow data, never spliced into SQL."""
        self.pending_events.write([dict(zip(_COLUMNS, row)) for row in rows])

    # --- checks ------------------------------------------------------------------------------------------------

    def validate(self, check_sql: bool = True, files: list[MigrationFile] | None = None) -> list[dict[str, str]]:
        """Every problem found: ``{"level": "error"|"warning", "check", "migration", "message"}``."""
        files = self.files() if files is None else files
        findings: list[dict[str, str]] = []

        def add(level, check, migration, message):
            findings.append({"level": level, "check": check, "migration": migration, "message": message})

        by_number: dict[int, list[str]] = {}
        for f in files:
            by_number.setdefault(f.number, []).append(f.id)
        for number, ids in sorted(by_number.items()):
            if len(ids) > 1:
                add("error", "duplicate", ids[0], f"number {number:04d} is used by {' and '.join(ids)}; renumber one")
        ids = {f.id for f in files}
        for f in files:
            for dep in f.depends:
                if dep not in ids:
                    add("error", "depends", f.id, f"{f.id} depends on {dep}, which does not exist")
            if f.rollback_path is None:
                add("warning", "rollback", f.id, f"{f.id} has no rollback file ({f.id}.rollback.sql)")
            if not f.statements:
                add("warning", "empty", f.id, f"{f.id} has no statements")
        cycle = find_cycle({f.id: [d for d in f.depends if d in ids] for f in files})
        if cycle:
            add("error", "cycle", cycle[0], "dependency cycle: " + " -> ".join(cycle + [cycle[0]]))

        states = self.states(files)
        applied_numbers = [f.number for f in files if states[f.id].state in ("applied", "drifted")]
        for st in states.values():
            if st.state == "drifted":
                f = next((x for x in files if x.id == st.id), None)
                what = "is missing on disk" if f is None else "changed after it was applied"
                add("error", "drift", st.id, f"{st.id} {what} (restore it, or write a new migration for the change)")
            elif st.state == "dirty":
                add("error", "dirty", st.id, f"{st.id} is dirty: {st.operation} did not finish"
                    + (f" (statement {st.failed_statement + 1}: {st.error})" if st.failed_statement is not None else ""))
        for f in files:
            if states[f.id].state == "pending" and applied_numbers and f.number < max(applied_numbers):
                later = max((x for x in files if states[x.id].state in ("applied", "drifted")), key=lambda x: x.number)
                add("error", "conflict", f.id, f"{f.id} is pending but {later.id}, numbered after it, is already "
                    "applied (two branches claimed the same place?); renumber it after the newest applied one")
        if check_sql:
            pending = [f for f in files if states[f.id].state == "pending"]
            for migration, problem in self.syntax_problems(pending):
                add("error", "syntax", migration, problem)
        return findings

    def syntax_problems(self, files: list[MigrationFile]) -> list[tuple[str, str]]:
        """The statements of ``files`` that the engine cannot parse. All are parsed in one query
        (``formatQueryOrNull``: parsed, never run); only the ones that fail are parsed again, with ``EXPLAIN AST``,
        for ClickHouse's message."""
        located = [(f, i, stmt, self.render(stmt.text, f.path)) for f in files for i, stmt in enumerate(f.statements)]
        if not located:
            return []
        bad = self.db.query("SELECT i FROM (SELECT arrayJoin(arrayEnumerate({s:Array(String)})) AS i, {s:Array(String)} AS s) "
                            "WHERE formatQueryOrNull(s[i]) IS NULL", {"s": [sql for *_, sql in located]}).result_rows
        problems = []
        for (index,) in bad:
            f, i, stmt, sql = located[index - 1]
            try:
                self.db.query(f"EXPLAIN AST {sql}")
                continue  # formatQuery refused what the full parser accepts: not a syntax error
            except Exception as exc:  # only a parse error counts; EXPLAIN AST resolves nothing else
                if not SYNTAX_ERROR.search(str(exc.__cause__ or exc)):
                    continue
                problems.append((f.id, f"{_rel(f.path, self.settings.root)} statement {i + 1} (line {stmt.line}): "
                                       f"{_clean_error(exc)}"))
        return problems

    # --- apply -------------------------------------------------------------------------------------------------

    def _resolve(self, files: list[MigrationFile], ident: str | None) -> MigrationFile | None:
        if ident is None:
            return None
        ident = ident.strip()
        for f in files:
            if f.id == ident or (ident.isdigit() and f.number == int(ident)):
                return f
        raise BadInput(f"unknown migration {ident!r} (see: inv db.status)")

    def plan(self, to: str | None = None, files: list[MigrationFile] | None = None) -> list[MigrationFile]:
        """The pending migrations in the order they would apply (yoyo's order: files, then -- depends:)."""
        files = self.files() if files is None else files
        target = self._resolve(files, to)
        pending = self._pending(files)
        if target is not None:
            if target.id not in {f.id for f in pending}:
                return []
            index = [f.id for f in pending].index(target.id)
            pending = pending[: index + 1]
        return pending

    def _pending(self, files: list[MigrationFile]) -> list[MigrationFile]:
        from yoyo import exceptions as yoyo_exceptions
        from yoyo.migrations import MigrationList
        from yoyo.topologicalsort import CycleError

        by_id = {f.id: f for f in files}
        try:
            ordered = self.backend.to_apply(MigrationList([f.yoyo for f in files]))
        except yoyo_exceptions.BadMigration as exc:
            raise BadInput(f"a migration depends on one that does not exist: {exc.args[0]}") from None
        except CycleError as exc:
            raise BadInput(f"dependency cycle among migrations: {', '.join(m.id for m in exc.args[1])}") from None
        return [by_id[m.id] for m in ordered]

    def migrate(self, to: str | None = None, dry_run: bool = False, resume: bool = False,
                progress: Callable[[MigrationFile, int, int], None] | None = None) -> dict[str, Any]:
        """Apply pending migrations in order (up to and including ``to``). Returns what was (or would be) done."""
        files = self.files()
        self._refuse_on_errors(files, allow_dirty=resume)
        dirty = [st for st in self.states(files).values() if st.state == "dirty"]
        if resume and not dirty:
            raise BadInput("nothing to resume: no migration is dirty")
        plan = self.plan(to, files)
        if resume:
            dirty_apply = [d for d in dirty if d.operation == "apply"]
            if not dirty_apply:
                raise BadInput(f"{dirty[0].id} is dirty from a {dirty[0].operation}; finish it with: inv db.rollback")
            first = next(f for f in files if f.id == dirty_apply[0].id)
            plan = [first] + [f for f in plan if f.id != first.id]
        for _, problem in self.syntax_problems(plan):
            raise BadInput(problem, hint="nothing was applied")
        rendered = [{"id": f.id, "statements": [self.render(s.text, f.path) for s in f.statements]} for f in plan]
        if dry_run or not plan:
            return {"applied": [], "plan": rendered, "dry_run": dry_run}
        applied = []
        with self._locked():
            # Another applier may have finished while we waited for the lock: plan again under it.
            if not resume:
                self._refuse_on_errors(files, allow_dirty=False)
                plan = self.plan(to, files)

            pending_event: list[list[Any]] = []
            for n, f in enumerate(plan):
                pidfile.working(self.settings, "db.migrate", f.id, progress=f"{n}/{len(plan)}")
                if progress:
                    progress(f, n, len(plan))
                pending_event = self._apply_one(f, pending_event, resume=resume and n == 0)
                applied.append(f.id)
            self._write(pending_event)
        return {"applied": applied, "plan": rendered, "dry_run": False}

    def _refuse_on_errors(self, files, allow_dirty: bool) -> None:
        findings = [x for x in self.validate(check_sql=False, files=files) if x["level"] == "error"
                    and not (allow_dirty and x["check"] == "dirty")]
        if not findings:
            return
        first = findings[0]
        if first["check"] == "dirty":
            raise WorkFailed(f"{first['message']}; refusing to go on",
                             hint="fix the file and run: inv db.migrate --resume, or undo it with: inv db.rollback")
        more = f" (and {len(findings) - 1} more: inv db.validate)" if len(findings) > 1 else ""
        raise BadInput(first["message"] + more, hint="nothing was applied")

    def _apply_one(self, f: MigrationFile, carry: list[list[Any]], resume: bool) -> list[list[Any]]:
        """Run one migration's statements, journaling each; returns the ``done`` row still to be written."""
        attempt = str(uuid.uuid4())
        done: dict[int, str] = {}
        if resume:
            st = self.states()[f.id]
            done = st.done
            for index, sha in sorted(done.items()):
                if index >= len(f.statements) or f.statement_sha(index) != sha:
                    raise BadInput(f"{f.id}: statement {index + 1} already ran and has changed since; "
                                   "restore it (only statements that did not run may be fixed)")
        self._write(carry + [self._event_row(f, "apply", "begin", attempt)])
        settings = self.statement_settings()
        for index, stmt in enumerate(f.statements):
            if index in done:
                continue
            sql = self.render(stmt.text, f.path)
            try:
                self.db.command(sql, settings=settings or None)
            except Exception as exc:
                error = _clean_error(exc)
                self._write([self._event_row(f, "apply", "failed", attempt, index, f.statement_sha(index), error)])
                raise WorkFailed(
                    f"{_rel(f.path, self.settings.root)} statement {index + 1} of {len(f.statements)} "
                    f"(line {stmt.line}) failed: {error}; {f.id} is now dirty",
                    hint="fix it and run: inv db.migrate --resume, or undo it with: inv db.rollback",
                ) from None
            row = self._event_row(f, "apply", "statement", attempt, index, f.statement_sha(index))
            if index < len(f.statements) - 1:
                self._write([row])  # must be durable before the next statement runs
            else:
                carry = [row]
        return (carry if f.statements else []) + [self._event_row(f, "apply", "done", attempt)]

    # --- rollback ------------------------------------------------------------------------------------------------

    def rollback_plan(self, count: int | None = None, to: str | None = None) -> list[tuple[MigrationFile, list[Any]]]:
        """What a rollback would run: (migration, rollback statements in order) newest first."""
        if count is not None and to is not None:
            raise BadInput("give --count or --to, not both")
        if count is not None and count < 1:
            raise BadInput(f"--count must be at least 1, got {count}")
        files = self.files()
        by_id = {f.id: f for f in files}
        states = self.states(files)
        target = self._resolve(files, to)
        dirty = [st for st in states.values() if st.state == "dirty"]
        chosen: list[tuple[MigrationFile, list[Any]]] = []
        for st in dirty:
            f = by_id.get(st.id)
            if f is None:
                raise BadInput(f"{st.id} is dirty but its file is gone; repair with: inv db.unmark {st.id}")
            chosen.append((f, self._undo_statements(f, st)))
        if dirty and count is None and to is None:
            return chosen
        from yoyo.migrations import MigrationList

        applied = [by_id[m.id] for m in self.backend.to_rollback(MigrationList([f.yoyo for f in files]))]
        missing = [st.id for st in states.values() if st.state == "drifted" and st.id not in by_id]
        if missing:
            raise BadInput(f"{missing[0]} is applied but its file is gone; restore it or run: inv db.unmark {missing[0]}")
        if target is not None:
            if target.id not in [f.id for f in applied]:
                raise BadInput(f"{target.id} is not applied; nothing to roll back to")
            applied = applied[: [f.id for f in applied].index(target.id)]
        else:
            applied = applied[: max(0, (count or 1) - len(chosen))]
        for f in applied:
            if f.rollback_path is None:
                raise BadInput(f"{f.id} has no rollback file; write {f.id}.rollback.sql or run: inv db.unmark {f.id}")
            chosen.append((f, list(f.rollback_statements)))
        if not chosen:
            raise BadInput("nothing to roll back: no migration is applied" if target is None
                           else f"nothing is applied after {target.id}")
        return chosen

    def _undo_statements(self, f: MigrationFile, st: State) -> list[Any]:
        """For a dirty migration: the rollback statements of the statements that ran, paired by position."""
        if st.operation == "rollback":  # finish an interrupted rollback: what is left of the rollback file
            return list(f.rollback_statements)
        ran = sorted(st.done)
        if not ran:
            return []
        if f.rollback_path is None:
            raise BadInput(f"{f.id} is dirty and has no rollback file; undo statements {', '.join(str(i + 1) for i in ran)} "
                           f"by hand, then run: inv db.unmark {f.id}")
        n = len(f.statements)
        if len(f.rollback_statements) != n:
            raise BadInput(f"{f.id} has {n} statements but its rollback file has {len(f.rollback_statements)}; "
                           "they pair by position, so undo by hand and run: inv db.unmark " + f.id)
        # The rollback file undoes the last statement first: statement i pairs with rollback statement n-1-i.
        return [f.rollback_statements[n - 1 - i] for i in reversed(ran)]

    def rollback(self, count: int | None = None, to: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        plan = self.rollback_plan(count, to)
        rendered = [{"id": f.id, "statements": [self.render(s.text, f.rollback_path or f.path) for s in stmts]}
                    for f, stmts in plan]
        if dry_run:
            return {"rolled_back": [], "plan": rendered, "dry_run": True}
        done = []

        pidfile.working(self.settings, "db.rollback", ", ".join(f.id for f, _ in plan))
        with self._locked():
            states = self.states()
            for f, statements in plan:
                st = states.get(f.id)
                already = st.done if st and st.state == "dirty" and st.operation == "rollback" else {}
                attempt = str(uuid.uuid4())
                self._write([self._event_row(f, "rollback", "begin", attempt)])
                for index, stmt in enumerate(statements):
                    if index in already:
                        continue
                    try:
                        self.db.command(self.render(stmt.text, f.rollback_path or f.path),
                                        settings=self.statement_settings() or None)
                    except Exception as exc:
                        error = _clean_error(exc)
                        self._write([self._event_row(f, "rollback", "failed", attempt, index, _sha(stmt.text), error)])
                        raise WorkFailed(f"rollback of {f.id} failed at statement {index + 1}: {error}; "
                                         f"{f.id} is dirty", hint="fix the rollback file and run inv db.rollback again")
                    self._write([self._event_row(f, "rollback", "statement", attempt, index, _sha(stmt.text))])
                self._write([self._event_row(f, "rollback", "done", attempt)])
                done.append(f.id)
        return {"rolled_back": done, "plan": rendered, "dry_run": False}

    # --- repairs -------------------------------------------------------------------------------------------------

    def mark(self, ident: str, dry_run: bool = False) -> bool:
        """Record a migration as applied without running it. False when it already was."""
        files = self.files()
        f = self._resolve(files, ident)
        st = self.states(files)[f.id]
        if st.state == "applied":
            return False
        if dry_run:
            return True
        with self._locked():
            self._write([self._event_row(f, "mark", "done", str(uuid.uuid4()))])
        return True

    def unmark(self, ident: str, dry_run: bool = False) -> bool:
        """Record a migration as not applied without running anything. False when it was not applied or dirty."""
        files = self.files()
        states = self.states(files)
        f = next((x for x in files if x.id == ident.strip()), None)
        mid = f.id if f else (ident.strip() if ident.strip() in states else self._resolve(files, ident).id)
        if states[mid].state == "pending":
            return False
        if dry_run:
            return True
        with self._locked():
            self._write([self._event_row(f or mid, "unmark", "done", str(uuid.uuid4()))])
        return True

    def break_lock(self, dry_run: bool = False) -> dict | None:
        """Remove the migration lock (``dry_run``: leave it); returns who held it."""
        holder = self.backend.holder()
        if holder and not dry_run:
            self.backend.break_lock()
        return holder

    def history(self, ident: str | None = None) -> list[dict[str, Any]]:
        rows = self.journal()
        if ident:
            rows = [r for r in rows if r["migration_id"] == ident or r["migration_id"].split("_")[0] == ident]
        return [{**r, "statement": r["statement"] + 1 if r["event"] in ("statement", "failed") else None,
                 "created_at_utc": r["created_at_utc"].strftime("%Y-%m-%d %H:%M:%S.%f")} for r in rows
                if r["event"] != "log"]


_COLUMNS = ("id", "attempt_id", "migration_id", "migration_hash", "operation", "event", "statement",
            "statement_sha", "checksum", "error", "username", "hostname", "pid", "command", "created_at_utc")


@functools.lru_cache(maxsize=1)
def _who() -> tuple[str, str, int, str]:
    """This process, as the journal records it: user, host, pid, command line."""
    from ops.core.process import command_line

    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry (containers): the uid will do
        user = str(os.getuid())
    return user, socket.gethostname(), os.getpid(), command_line()


def _depends(text: str) -> list[str]:
    from yoyo.migrations import parse_metadata_from_sql_comments

    directives, _, _ = parse_metadata_from_sql_comments(text)
    return directives.get("depends", "").split()


def _clean_error(exc: Exception) -> str:
    from ops.clickhouse.client import first_line

    text = first_line(exc.__cause__ or exc)
    text = re.sub(r"^ClickHouse refused `.*?`: ", "", text)
    return re.sub(r"\s*FORMAT Native\.?", "", text)
