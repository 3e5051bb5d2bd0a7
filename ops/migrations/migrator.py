"""Migrations: yoyo finds the files and orders them; chops adds what ClickHouse needs on top.

:class:`Migrations` is the migrations of one directory against one database: apply (and ``--resume``), rollback
(and the undo of a dirty migration), mark/unmark, validate, status and history. It is built on

* ``ops.migrations.files``: the files, their statements, checksums and cluster templating;
* ``ops.migrations.journal``: the journal table, its write-ahead file, and the one fold that decides whether a
  migration is applied, drifted, dirty or pending;
* ``ops.migrations.yoyo_backend``: yoyo's order and the migration lock.

A dirty migration stops ``db.migrate``; ``db.migrate --resume`` continues from the first unfinished statement once
the file is fixed (statements that already ran must be unchanged), and ``db.rollback`` undoes the statements that ran.

On a server, journal writes are batched so that each migration costs one insert beyond its own statements: a
statement's ``statement`` event, the migration's ``done`` and the next migration's ``begin`` travel in one INSERT.
On the embedded engine a run's events go through a write-ahead file and reach the journal in one INSERT at the
end (``ops.migrations.journal.PendingEvents``).
"""

from __future__ import annotations

import re
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from ops.clickhouse.client import connect, first_line, target
from ops.core import pidfile
from ops.core.errors import BadInput, WorkFailed
from ops.core.timefmt import stamp_micro
from ops.migrations.files import (MigrationFile, check_files, cluster_of, finding, new_files, read_files, rel,
                                  render, sha)
from ops.migrations import sqlsplit
from ops.migrations.journal import PendingEvents, State, event_row, fold, read_events
from ops.migrations.yoyo_backend import ClickHouseBackend, in_order

__all__ = ["MigrationFile", "Migrations", "State"]

SYNTAX_ERROR = re.compile(r"Code: 62\b|SYNTAX_ERROR")


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
        return read_files(self.directory, self.settings.root)

    def render(self, statement_text: str, path: Path) -> str:
        return render(statement_text, self.cluster, path, self.settings.root, embedded=self.embedded)

    @property
    def embedded(self) -> bool:
        return target(self.settings).kind == "embedded"

    @property
    def cluster(self) -> str | None:
        return cluster_of(self.settings)

    def statement_settings(self) -> dict[str, int]:
        """Settings each migration statement runs with: wait for ALTERs and mutations everywhere they apply."""
        if target(self.settings).kind != "server":
            return {}  # chDB runs mutations synchronously already
        level = 2 if self.cluster else 1
        return {"alter_sync": level, "mutations_sync": level}

    def new(self, name: str, dry_run: bool = False) -> list[Path]:
        """Write the next-numbered NNNN_name.sql and NNNN_name.rollback.sql from the template (``dry_run``: only
        say which)."""
        return new_files(self.directory, self.settings.root, name, dry_run)

    # --- the journal ---------------------------------------------------------------------------------------------

    @property
    def db(self):
        if self._db is None:
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
        """Every journal event in order, a killed run's write-ahead events included."""
        if not self.backend.journal_exists():
            return []  # nothing ever ran here; reading creates nothing
        return read_events(self.db, self.pending_events.leftover())

    def states(self, files: list[MigrationFile] | None = None) -> dict[str, State]:
        """The state of every migration known to the journal or on disk (``ops.migrations.journal.fold``)."""
        files = self.files() if files is None else files
        return fold(self.journal(), {f.id: f.checksum for f in files})

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
                   statement_sha: str = "", error: str = "") -> dict[str, Any]:
        mid, checksum = (f, "") if isinstance(f, str) else (f.id, f.checksum)
        return event_row(mid, checksum, operation, event, attempt, statement, statement_sha, error)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        """Record journal events (``ops.migrations.journal.PendingEvents.write``)."""
        self.pending_events.write(rows)

    # --- checks ------------------------------------------------------------------------------------------------

    def validate(self, check_sql: bool = True, files: list[MigrationFile] | None = None) -> list[dict[str, str]]:
        """Every problem found: ``{"level": "error"|"warning", "check", "migration", "message"}``: the files' own
        (``ops.migrations.files.check_files``), then drift, dirt and conflicts, then (``check_sql``) the syntax of
        pending migrations."""
        files = self.files() if files is None else files
        findings = check_files(files)

        def add(level, check, migration, message):
            findings.append(finding(level, check, migration, message))

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
        findings += self.cluster_problems(files)
        if check_sql:
            pending = [f for f in files if states[f.id].state == "pending"]
            for migration, problem in self.syntax_problems(pending):
                add("error", "syntax", migration, problem)
        return findings

    def cluster_problems(self, files: list[MigrationFile]) -> list[dict[str, str]]:
        """On a server with ``clickhouse.cluster`` set: every literal ``ON CLUSTER name`` naming another cluster (the
        embedded engine removes every clause, so there is nothing to check there)."""
        if not self.cluster:
            return []
        found = []
        for f in files:
            for path, statements in ((f.path, f.statements), (f.rollback_path, f.rollback_statements)):
                for stmt in statements:
                    for name, line in sqlsplit.literal_clusters(stmt.text):
                        if name != self.cluster:
                            found.append(finding(
                                "error", "cluster", f.id,
                                f"{rel(path, self.settings.root)} line {stmt.line + line - 1}: ON CLUSTER {name}, but "
                                f"clickhouse.cluster is {self.cluster} (write ON CLUSTER {{cluster}})"))
        return found

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
                problems.append((f.id, f"{rel(f.path, self.settings.root)} statement {i + 1} (line {stmt.line}): "
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
        # Applied as the journal *table* says (backend.applied_ids), before the lock is taken: events of a killed run
        # still in its write-ahead file are not seen (issue 13: plan from self.states(), under the lock).
        pending = self._pending(files)
        if target is not None:
            if target.id not in {f.id for f in pending}:
                return []
            index = [f.id for f in pending].index(target.id)
            pending = pending[: index + 1]
        return pending

    def _pending(self, files: list[MigrationFile]) -> list[MigrationFile]:
        """What yoyo's ``to_apply`` answers: the migrations not applied, in yoyo's order."""
        applied = set(self.backend.applied_ids())
        return _in_order([f for f in files if f.id not in applied])

    def _applied(self, files: list[MigrationFile]) -> list[MigrationFile]:
        """What yoyo's ``to_rollback`` answers: the applied migrations, newest first."""
        applied = set(self.backend.applied_ids())
        return _in_order([f for f in files if f.id in applied])[::-1]

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

            pending_event: list[dict[str, Any]] = []
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

    def _apply_one(self, f: MigrationFile, carry: list[dict[str, Any]], resume: bool) -> list[dict[str, Any]]:
        """Run one migration's statements, journaling each; returns the ``done`` row still to be written."""
        attempt = str(uuid.uuid4())
        done: dict[int, str] = {}
        if resume:
            st = self.states()[f.id]
            done = st.done
            for index, digest in sorted(done.items()):
                if index >= len(f.statements) or f.statement_sha(index) != digest:
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
                    f"{rel(f.path, self.settings.root)} statement {index + 1} of {len(f.statements)} "
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
        applied = self._applied(files)  # the journal table's view, as in plan()
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
                        self._write([self._event_row(f, "rollback", "failed", attempt, index, sha(stmt.text), error)])
                        raise WorkFailed(f"rollback of {f.id} failed at statement {index + 1}: {error}; "
                                         f"{f.id} is dirty", hint="fix the rollback file and run inv db.rollback again")
                    self._write([self._event_row(f, "rollback", "statement", attempt, index, sha(stmt.text))])
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
        """The journal's events (of one migration, by id or number), statements numbered from 1."""
        rows = self.journal()
        if ident:
            rows = [r for r in rows if r["migration_id"] == ident or r["migration_id"].split("_")[0] == ident]
        return [{**r, "statement": r["statement"] + 1 if r["event"] in ("statement", "failed") else None,
                 "created_at_utc": stamp_micro(r["created_at_utc"])} for r in rows
                if r["event"] != "log"]


def _in_order(files: list[MigrationFile]) -> list[MigrationFile]:
    """``files`` in yoyo's order: file order, each after the ones among them it depends on."""
    by_id = {f.id: f for f in files}
    return [by_id[mid] for mid in in_order([f.id for f in files], {f.id: f.depends for f in files})]


def _clean_error(exc: Exception) -> str:
    text = first_line(exc.__cause__ or exc)
    text = re.sub(r"^ClickHouse refused `.*?`: ", "", text)
    return re.sub(r"\s*FORMAT Native\.?", "", text)
