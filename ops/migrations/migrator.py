"""Migrations: yoyo finds the files and orders them; chops adds what ClickHouse needs on top.

:class:`Migrations` is the migrations of one directory against one database: apply (and ``--resume``), rollback
(and the undo of a dirty migration), mark/unmark, validate, status and history. It is built on

* ``ops.migrations.files``: the files, their statements, checksums and cluster templating;
* ``ops.migrations.journal``: the journal table, its write-ahead file, and the one fold that decides whether a
  migration is applied, drifted, ahead (applied, no file here), dirty or pending;
* ``ops.migrations.stored``: what the journal stores of each applied migration, so a release without its file
  can undo it;
* ``ops.migrations.rollback``: rollbacks, the undo of a dirty migration, and of a failed one (``undo_on_failure``);
* ``ops.migrations.yoyo_backend``: yoyo's order and the migration lock;
* ``ops.migrations.checks``: what validate finds, status in words, and the ways out of a dirty migration;
* ``ops.migrations.interrupts``: SIGTERM and Ctrl-C stop a run between two statements.

One truth: every decision (what migrate applies, what ``--resume`` continues, what rollback and its dry run undo,
status, validate, the health check) reads :meth:`Migrations.states`, the fold over the journal table *and* a
killed run's write-ahead file; an operation that writes reads it again under the lock, after the file is replayed.

A dirty migration stops ``db.migrate``; ``db.migrate --resume`` continues from the first unfinished statement once
the file is fixed (statements that already ran must be unchanged), ``db.rollback`` undoes the statements that ran,
and ``db.mark`` records it as applied when its effect is there. ``db.migrate --undo-on-failure`` runs that undo
at once, under the same lock, when a statement fails. A migration the database is ahead with stays applied and
warns; ``db.rollback`` undoes it from what the journal stored.

On a server, journal writes are batched so that each migration costs one insert beyond its own statements: a
statement's ``statement`` event, the migration's ``done`` and the next migration's ``begin`` travel in one INSERT.
On the embedded engine a run's events go through a write-ahead file and reach the journal in one INSERT at the
end (``ops.migrations.journal.PendingEvents``).
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from ops.clickhouse.client import brief, connect, target
from ops.core import pidfile
from ops.core.errors import BadInput, WorkFailed
from ops.core.timefmt import stamp_micro
from ops.migrations import checks, effects, stored
from ops.migrations.checks import clean_error as _clean_error, ways_out
from ops.migrations.files import (MigrationFile, check_files, cluster_of, finding, new_files, read_files, rel,
                                  render)
from ops.migrations.interrupts import StopRequest, Stopped
from ops.migrations.repairs import Repairs
from ops.migrations.rollback import Rollbacks
from ops.migrations.stored import StoredStatement
from ops.migrations.journal import PendingEvents, State, event_row, fold, read_events
from ops.migrations.yoyo_backend import ClickHouseBackend, ordered_files

__all__ = ["MigrationFile", "Migrations", "State", "Stopped"]


class Migrations(Rollbacks, Repairs):
    """The migrations of one directory against one database."""

    def __init__(self, settings, db=None, notify: Callable[[str], None] | None = None):
        self.settings = settings
        self.directory = settings.path("migrations.dir")
        self._db = db
        self._backend = None
        self._events: PendingEvents | None = None
        self.notify = notify or (lambda message: None)
        self._stop = StopRequest(self.notify)  # SIGTERM / Ctrl-C while statements run (ops.migrations.interrupts)

    # --- files -----------------------------------------------------------------------------------------------------

    def files(self) -> list[MigrationFile]:
        """Every migration file, in file order. Names are checked; duplicate numbers are reported by validate."""
        return read_files(self.directory, self.settings.root)

    def render(self, statement: Any, path: Path) -> str:
        """A statement of the file at ``path`` as it runs here (one the journal stored ran rendered already)."""
        if isinstance(statement, StoredStatement):
            return statement.text
        return render(statement, self.cluster, path, self.settings.root, embedded=self.embedded,
                      variables=self.settings.get("migrations.variables"))

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
        events written through ``pending_events``: only for operations that write. Whatever decides what to do
        reads :meth:`states` again inside it (after the replay), so it acts on what the journal says now."""
        self.backend.ensure_internal_schema_updated()
        with self.backend.lock():
            pending = self.pending_events
            pending.start()
            try:
                with self._stop.watching():
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

    def status(self, files: list[MigrationFile] | None = None,
               states: dict[str, State] | None = None) -> list[dict[str, Any]]:
        """Every migration with its state (:meth:`states`, or ``states`` when the caller already folded)."""
        files = self.files() if files is None else files
        return checks.status_rows(files, self.states(files) if states is None else states)

    def _event_row(self, f: MigrationFile | str, operation: str, event: str, attempt: str, statement: int = 0,
                   statement_sha: str = "", error: str = "") -> dict[str, Any]:
        """One journal event about ``f``; the ``begin`` of an apply and the ``done`` of a mark store ``f`` and its
        rollback as they run here (``ops.migrations.stored``), so a release without the file can undo it."""
        mid, checksum = (f, "") if isinstance(f, str) else (f.id, f.checksum)
        sql = rollback_sql = ""
        if (operation, event) in (("apply", "begin"), ("mark", "done")) and isinstance(f, MigrationFile):
            sql, rollback_sql = stored.record(f, self.render, self.settings.root)
        return event_row(mid, checksum, operation, event, attempt, statement, statement_sha, error, sql, rollback_sql)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        """Record journal events (``ops.migrations.journal.PendingEvents.write``). Every statement's event is
        written before the next statement starts, so this is also where a run stops on SIGTERM or Ctrl-C
        (``ops.migrations.interrupts``): what ran is written, the ``begin`` of what would run next is not."""
        rows, held, stop = self._stop.split(rows)
        self.pending_events.write(rows)
        if stop:
            raise self._stop.stopped(rows, held, self._ways_out)

    def _ways_out(self, mid: str, files: list[MigrationFile] | None = None,
                  states: dict[str, State] | None = None) -> str:
        """The hint naming every way out of dirty migration ``mid`` (``ops.migrations.checks.ways_out``)."""
        files = self.files() if files is None else files
        st = (self.states(files) if states is None else states)[mid]
        f = next((x for x in files if x.id == mid), None)
        return ways_out(mid, st.operation or "apply", bool(f and f.rollback_path), st.done)

    # --- checks ------------------------------------------------------------------------------------------------

    def validate(self, check_sql: bool = True, files: list[MigrationFile] | None = None,
                 states: dict[str, State] | None = None) -> list[dict[str, str]]:
        """Every problem found: ``{"level": "error"|"warning", "check", "migration", "message"}``: the files' own
        (``ops.migrations.files.check_files``), then drift, dirt and conflicts (from :meth:`states`, or ``states``
        when the caller already folded), literal cluster names, then (``check_sql``) the syntax of the pending
        migrations and of every rollback file (``ops.migrations.checks``)."""
        unreadable: list[dict[str, str]] = []  # a file that cannot be read is one finding among the others
        files = read_files(self.directory, self.settings.root, unreadable) if files is None else files
        states = self.states(files) if states is None else states
        findings = unreadable + check_files(files) + checks.state_findings(files, states) + self.cluster_problems(files)
        findings += checks.text_problems(files, self.settings, self.db.name)
        if check_sql:
            files = checks.renderable(files, findings)
            pending = [f for f in files if states[f.id].state == "pending"]
            statements = checks.located(pending) + [x for f in files for x in checks.located_rollback(f)]
            findings += [finding("error", "syntax", migration, problem)
                         for migration, problem in checks.unparsable(self.db, statements, self.render, self.settings.root)]
        return findings

    def cluster_problems(self, files: list[MigrationFile]) -> list[dict[str, str]]:
        """On a server with ``clickhouse.cluster`` set: every literal ``ON CLUSTER name`` naming another cluster."""
        return checks.cluster_problems(files, self.cluster, self.settings.root)

    def syntax_problems(self, files: list[MigrationFile]) -> list[tuple[str, str]]:
        """The statements of ``files`` that the engine cannot parse: ``(migration id, message)``."""
        return checks.unparsable(self.db, checks.located(files), self.render, self.settings.root)

    def rollback_syntax_problems(self, plan: list[tuple[MigrationFile, list[Any]]]) -> list[tuple[str, str]]:
        """The rollback statements of a rollback plan (:meth:`rollback_plan`) the engine cannot parse."""
        statements = [x for f, chosen in plan for x in checks.located_rollback(f, chosen)]
        return checks.unparsable(self.db, statements, self.render, self.settings.root)

    # --- apply -------------------------------------------------------------------------------------------------

    def _resolve(self, files: list[MigrationFile], ident: str | None) -> MigrationFile | None:
        if ident is None:
            return None
        ident = ident.strip()
        for f in files:
            if f.id == ident or (ident.isdigit() and f.number == int(ident)):
                return f
        raise BadInput(f"unknown migration {ident!r} (see: inv db.status)")

    def plan(self, to: str | None = None, files: list[MigrationFile] | None = None,
             states: dict[str, State] | None = None) -> list[MigrationFile]:
        """The pending migrations in the order they would apply (yoyo's order: files, then -- depends:), as the
        journal's one fold says (:meth:`states`: the journal table and a killed run's write-ahead file)."""
        files = self.files() if files is None else files
        states = self.states(files) if states is None else states
        target = self._resolve(files, to)
        pending = ordered_files([f for f in files if states[f.id].state == "pending"])
        if target is not None:
            if target.id not in {f.id for f in pending}:
                return []
            index = [f.id for f in pending].index(target.id)
            pending = pending[: index + 1]
        return pending

    @staticmethod
    def _applied(files: list[MigrationFile], states: dict[str, State]) -> list[MigrationFile]:
        """The applied (and drifted) migrations, newest first; not a dirty one (a rollback plans it once, first)."""
        return ordered_files([f for f in files if states[f.id].state in ("applied", "drifted")])[::-1]

    def migrate(self, to: str | None = None, dry_run: bool = False, resume: bool = False,
                progress: Callable[[MigrationFile, int, int], None] | None = None,
                undo_on_failure: bool = False) -> dict[str, Any]:
        """Apply pending migrations in order (up to and including ``to``). Returns what was (or would be) done,
        and the migrations the database is ahead with (applied, no file here: they stay). The plan is made again
        under the lock (after a replay; another applier may have finished meanwhile). ``undo_on_failure``: a
        migration whose statement fails is undone at once (:meth:`undo_failed`), so the database ends clean."""
        files = self.files()
        states = self.states(files)
        plan = self._migrate_plan(files, states, to, resume)
        self._refuse_bad_sql(plan)
        ahead = self._tell_ahead(plan, states)
        checked = {f.id for f in plan}
        if dry_run or not plan:
            return {"applied": [], "plan": self._rendered(plan), "dry_run": dry_run, "ahead": ahead}
        applied: list[str] = []
        with self._locked():
            plan = self._migrate_plan(files, self.states(files), to, resume)
            self._refuse_bad_sql([f for f in plan if f.id not in checked])
            pending_event: list[dict[str, Any]] = []
            for n, f in enumerate(plan):
                pidfile.working(self.settings, "db.migrate", f.id, progress=f"{n}/{len(plan)}")
                if progress:
                    progress(f, n, len(plan))
                try:
                    pending_event = self._apply_one(f, pending_event, resume=resume and n == 0)
                except WorkFailed as exc:
                    details = getattr(exc, "details", None)
                    if details is None:
                        raise
                    details["applied"] = list(applied)
                    if undo_on_failure:
                        raise self.undo_failed(f, exc, files) from None
                    raise
                applied.append(f.id)
            self._write(pending_event)
        return {"applied": applied, "plan": self._rendered(plan), "dry_run": False, "ahead": ahead}

    def _tell_ahead(self, plan: list[MigrationFile], states: dict[str, State]) -> list[str]:
        """Say which migrations the database is ahead with (they stay applied), and which pending ones are
        numbered below one of them (they are applied all the same); returns the ahead ones."""
        ahead = sorted(st.id for st in states.values() if st.state == "ahead")
        if not ahead:
            return []
        self.notify(checks.ahead_message(ahead) + ("; it stays applied" if len(ahead) == 1 else "; they stay applied"))
        top = max(ahead, key=lambda mid: (stored.id_number(mid), mid))
        below = [f.id for f in plan if f.number <= stored.id_number(top)]
        if below:
            self.notify(f"{', '.join(below)} {'is' if len(below) == 1 else 'are'} pending and not numbered after "
                        f"{top}, which is applied already: applied all the same")
        return ahead

    def _migrate_plan(self, files: list[MigrationFile], states: dict[str, State], to: str | None,
                      resume: bool) -> list[MigrationFile]:
        """What ``migrate`` runs given ``states``: the pending migrations, after the dirty one with ``resume``;
        refused while anything is wrong (dirty, without ``resume``)."""
        self._refuse_on_errors(files, states, allow_dirty=resume)
        plan = self.plan(to, files, states)
        if not resume:
            return plan
        dirty = [st for st in states.values() if st.state == "dirty"]
        if not dirty:
            raise BadInput("nothing to resume: no migration is dirty")
        dirty_apply = [d for d in dirty if d.operation == "apply"]
        if not dirty_apply:
            d = dirty[0]
            raise BadInput(f"{d.id} is dirty from a {d.operation}; --resume continues an apply",
                           hint=ways_out(d.id, d.operation, ran=d.done))
        first = next((f for f in files if f.id == dirty_apply[0].id), None)
        if first is None:
            raise BadInput(f"{dirty_apply[0].id} is dirty but its file is gone; restore it, or after undoing what "
                           f"ran by hand: inv db.unmark {dirty_apply[0].id}")
        return [first] + [f for f in plan if f.id != first.id]

    def _refuse_bad_sql(self, plan: list[MigrationFile]) -> None:
        for _, problem in self.syntax_problems(plan):
            raise BadInput(problem, hint="nothing was applied")  # the first one: db.validate lists them all

    def _rendered(self, plan: list[MigrationFile]) -> list[dict[str, Any]]:
        return [{"id": f.id, "statements": [self.render(s, f.path) for s in f.statements]} for f in plan]

    def _statement_failed(self, f: MigrationFile, index: int, error: str) -> WorkFailed:
        """The one-line error of statement ``index`` of ``f`` failing with ClickHouse's ``error``: its first sentence
        and the sentences that name a fix (the journal keeps it whole), and every way out."""
        short = brief(error)
        whole = "" if short == error else f"; the whole message: inv db.history {f.id}"
        hint = ways_out(f.id, "apply", f.rollback_path is not None, range(index))
        failed = WorkFailed(f"{rel(f.path, self.settings.root)} statement {index + 1} of {len(f.statements)} "
                            f"(line {f.statements[index].line}) failed: {short}; {f.id} is now dirty",
                            hint=hint + whole)
        failed.details = {"migration": f.id, "statement": index + 1, "undone": False, "state": "dirty",
                          "repair": checks.repair("apply", f.rollback_path is not None), "ways_out": hint}
        return failed

    def _refuse_on_errors(self, files: list[MigrationFile], states: dict[str, State], allow_dirty: bool) -> None:
        findings = [x for x in self.validate(check_sql=False, files=files, states=states) if x["level"] == "error"
                    and not (allow_dirty and x["check"] == "dirty")]
        if not findings:
            return
        first = findings[0]
        if first["check"] == "dirty":
            row = next(r for r in checks.status_rows(files, states) if r["id"] == first["migration"])
            hint = self._ways_out(row["id"], files, states)
            refused = WorkFailed(f"{first['message']}; refusing to go on", hint=hint)
            refused.details = {"migration": row["id"], "statement": None, "undone": False, "state": "dirty",
                               "repair": row["repair"], "ways_out": hint, "applied": []}
            raise refused
        more = f" (and {len(findings) - 1} more: inv db.validate)" if len(findings) > 1 else ""
        raise BadInput(first["message"] + more, hint="nothing was applied")

    def _apply_one(self, f: MigrationFile, carry: list[dict[str, Any]], resume: bool) -> list[dict[str, Any]]:
        """Run one migration's statements, journaling each; returns the ``done`` row still to be written."""
        attempt = str(uuid.uuid4())
        done: dict[int, str] = {}
        resumed: dict[int, effects.Effects | None] = {}  # resume: what each statement left to run changes
        if resume:
            st = self.states()[f.id]
            done = st.done
            for index, digest in sorted(done.items()):
                if index >= len(f.statements) or f.statement_sha(index) != digest:
                    raise BadInput(f"{f.id}: statement {index + 1} already ran and has changed since; "
                                   "restore it (only statements that did not run may be fixed)")
            left = [i for i in range(len(f.statements)) if i not in done]
            resumed = dict(zip(left, effects.read_effects(self.db, [self.render(f.statements[i], f.path)
                                                                    for i in left])))
        self._write(carry + [self._event_row(f, "apply", "begin", attempt)])
        settings = self.statement_settings()
        for index, stmt in enumerate(f.statements):
            if index in done:
                continue
            sql = self.render(stmt, f.path)
            # Resuming, a statement whose change is in the catalog already (a run killed after it took effect and
            # before its journal record; a change made by hand) is recorded as done, not run again.
            state, why = effects.presence(self.db, resumed[index]) if index in resumed else (None, "")
            where = f"{rel(f.path, self.settings.root)} statement {index + 1} (line {stmt.line})"
            if state is effects.Presence.IN_EFFECT:
                self.notify(f"{where} is in effect already ({why}): recorded as done, not run again")
            elif state is effects.Presence.ROWS and index == min(resumed) and st.failed_statement is None:
                self.notify(f"{where} changes rows and its run was interrupted: chops cannot tell whether it "
                            "finished, so it runs again")
            try:
                if state is not effects.Presence.IN_EFFECT:
                    self.db.command(sql, settings=settings or None)
            except Exception as exc:
                error = _clean_error(exc)
                self._write([self._event_row(f, "apply", "failed", attempt, index, f.statement_sha(index), error)])
                raise self._statement_failed(f, index, error) from None
            row = self._event_row(f, "apply", "statement", attempt, index, f.statement_sha(index))
            if index < len(f.statements) - 1:
                self._write([row])  # must be durable before the next statement runs
            else:
                carry = [row]
        return (carry if f.statements else []) + [self._event_row(f, "apply", "done", attempt)]

    # --- repairs -------------------------------------------------------------------------------------------------

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
