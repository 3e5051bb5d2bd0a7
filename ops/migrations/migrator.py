"""Migrations: yoyo finds the files and orders them; chops adds what ClickHouse needs on top.

:class:`Migrations` is the migrations of one directory against one database: apply (and ``--resume``), rollback
(and the undo of a dirty migration), mark/unmark, validate, status and history. It is built on

* ``ops.migrations.files``: the files, their statements, checksums and cluster templating;
* ``ops.migrations.journal``: the journal table, its write-ahead file, and the one fold that decides whether a
  migration is applied, drifted, dirty or pending;
* ``ops.migrations.yoyo_backend``: yoyo's order and the migration lock;
* ``ops.migrations.checks``: what validate finds, status in words, and the ways out of a dirty migration;
* ``ops.migrations.interrupts``: SIGTERM and Ctrl-C stop a run between two statements.

One truth: every decision (what migrate applies, what ``--resume`` continues, what rollback and its dry run undo,
status, validate, the health check) reads :meth:`Migrations.states`, the fold over the journal table *and* a
killed run's write-ahead file; an operation that writes reads it again under the lock, after the file is replayed.

A dirty migration stops ``db.migrate``; ``db.migrate --resume`` continues from the first unfinished statement once
the file is fixed (statements that already ran must be unchanged), ``db.rollback`` undoes the statements that ran,
and ``db.mark`` records it as applied when its effect is there.

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
from ops.migrations import checks, effects
from ops.migrations.checks import clean_error as _clean_error, ways_out
from ops.migrations.files import (MigrationFile, check_files, cluster_of, created_objects, finding, new_files,
                                  read_files, rel, render, sha)
from ops.migrations.interrupts import StopRequest, Stopped
from ops.migrations.repairs import Repairs
from ops.migrations.journal import PendingEvents, State, event_row, fold, read_events
from ops.migrations.yoyo_backend import ClickHouseBackend, ordered_files

__all__ = ["MigrationFile", "Migrations", "State", "Stopped"]


class Migrations(Repairs):
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
        mid, checksum = (f, "") if isinstance(f, str) else (f.id, f.checksum)
        return event_row(mid, checksum, operation, event, attempt, statement, statement_sha, error)

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
                progress: Callable[[MigrationFile, int, int], None] | None = None) -> dict[str, Any]:
        """Apply pending migrations in order (up to and including ``to``). Returns what was (or would be) done.
        The plan is made again under the lock (after a replay; another applier may have finished meanwhile)."""
        files = self.files()
        plan = self._migrate_plan(files, self.states(files), to, resume)
        self._refuse_bad_sql(plan)
        checked = {f.id for f in plan}
        if dry_run or not plan:
            return {"applied": [], "plan": self._rendered(plan), "dry_run": dry_run}
        applied = []
        with self._locked():
            plan = self._migrate_plan(files, self.states(files), to, resume)
            self._refuse_bad_sql([f for f in plan if f.id not in checked])
            pending_event: list[dict[str, Any]] = []
            for n, f in enumerate(plan):
                pidfile.working(self.settings, "db.migrate", f.id, progress=f"{n}/{len(plan)}")
                if progress:
                    progress(f, n, len(plan))
                pending_event = self._apply_one(f, pending_event, resume=resume and n == 0)
                applied.append(f.id)
            self._write(pending_event)
        return {"applied": applied, "plan": self._rendered(plan), "dry_run": False}

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
        return WorkFailed(f"{rel(f.path, self.settings.root)} statement {index + 1} of {len(f.statements)} "
                          f"(line {f.statements[index].line}) failed: {short}; {f.id} is now dirty",
                          hint=ways_out(f.id, "apply", f.rollback_path is not None, range(index)) + whole)

    def _refuse_on_errors(self, files: list[MigrationFile], states: dict[str, State], allow_dirty: bool) -> None:
        findings = [x for x in self.validate(check_sql=False, files=files, states=states) if x["level"] == "error"
                    and not (allow_dirty and x["check"] == "dirty")]
        if not findings:
            return
        first = findings[0]
        if first["check"] == "dirty":
            raise WorkFailed(f"{first['message']}; refusing to go on",
                             hint=self._ways_out(first["migration"], files, states))
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

    # --- rollback ------------------------------------------------------------------------------------------------

    def rollback_plan(self, count: int | None = None, to: str | None = None, files: list[MigrationFile] | None = None,
                      states: dict[str, State] | None = None,
                      statements: list[int] | None = None) -> list[tuple[MigrationFile, list[Any]]]:
        """What a rollback would run: (migration, rollback statements in order) newest first, from :meth:`states`
        (or ``states``): a dirty migration first (its undo; ``statements``: the rollback statements that undo it,
        chosen by number), then applied ones, each once."""
        if count is not None and to is not None:
            raise BadInput("give --count or --to, not both")
        if count is not None and count < 1:
            raise BadInput(f"--count must be at least 1, got {count}")
        files = self.files() if files is None else files
        by_id = {f.id: f for f in files}
        states = self.states(files) if states is None else states
        target = self._resolve(files, to)
        dirty = [st for st in states.values() if st.state == "dirty"]
        chosen: list[tuple[MigrationFile, list[Any]]] = []
        for st in dirty:
            f = by_id.get(st.id)
            if f is None:
                raise BadInput(f"{st.id} is dirty but its file is gone; repair with: inv db.unmark {st.id}")
            chosen.append((f, self._undo_statements(f, st, statements)))
        if statements and len(dirty) != 1:
            raise BadInput("--statements chooses the rollback statements that undo the dirty migration, and "
                           + ("none is dirty" if not dirty else f"{len(dirty)} are"), hint="see: inv db.status")
        if dirty and count is None and to is None:
            return chosen
        applied = self._applied(files, states)
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

    # long: one decision read top to bottom: chosen statements, an interrupted rollback, then pairing what ran
    def _undo_statements(self, f: MigrationFile, st: State, chosen: list[int] | None = None) -> list[Any]:
        """For a dirty migration, the rollback statements that undo what ran (``ops.migrations.effects.pair_undo``):
        those that reverse a statement that ran, newest first; the statement a killed run left unrecorded counts as
        ran when its change is in the catalog (one that failed did not: ClickHouse said so). ``chosen``
        (rollback-file numbers from 1, run in that order) picks them instead. An interrupted rollback goes on with
        what is left of its file, less what is in effect.
        Refuses, listing the rollback statements, when they cannot be paired."""
        told = vars(self).setdefault("_undo_told", set())  # the plan is made twice: before the lock and under it

        def tell(message: str) -> None:
            if message not in told:
                told.add(message)
                self.notify(message)

        path, undo, n = f.rollback_path or f.path, f.rollback_statements, len(f.statements)
        shown = rel(path, self.settings.root)
        if chosen is not None:
            wrong = [k for k in chosen if not 1 <= k <= len(undo) or chosen.count(k) > 1]
            if wrong:
                raise BadInput(f"--statements {wrong[0]}: name each of the {len(undo)} statements of {shown} at most "
                               "once, by its number")
            return [undo[k - 1] for k in chosen]
        if st.operation == "rollback":  # finish an interrupted rollback: the rest of the file, less what is in effect
            left = [i for i in range(len(undo)) if i not in st.done]
            keep = []
            for i, found in zip(left, effects.read_effects(self.db, [self.render(undo[i], path) for i in left])):
                state, why = effects.presence(self.db, found)
                if state is effects.Presence.IN_EFFECT:
                    tell(f"{shown} statement {i + 1} is in effect already ({why}): not run")
                else:
                    keep.append(undo[i])
            return keep
        found = effects.read_effects(self.db, [self.render(s, f.path) for s in f.statements]
                                     + [self.render(s, path) for s in undo])
        applied, reverse, ran = found[:n], found[n:], set(st.done)
        unfinished = min(set(range(n)) - ran, default=None)
        if unfinished is not None and st.failed_statement is None:  # killed, not failed: it may have taken effect
            state, why = effects.presence(self.db, applied[unfinished])
            if state in (effects.Presence.IN_EFFECT, effects.Presence.PARTLY):
                ran.add(unfinished)
                tell(f"{rel(f.path, self.settings.root)} statement {unfinished + 1} has no journal record but is "
                     f"{state.value} ({why}): undone as if it ran")
        if not ran:
            return []
        if f.rollback_path is None:
            raise BadInput(f"{f.id} is dirty and has no rollback file; undo statements "
                           f"{', '.join(str(i + 1) for i in sorted(ran))} by hand, then run: inv db.unmark {f.id}")
        try:
            plan = effects.pair_undo(applied, reverse, ran)
        except effects.Unpaired as exc:
            for line in effects.listing(f.id, shown, [s.text for s in undo], applied, reverse, ran):
                self.notify(line)
            raise BadInput(f"{f.id}: cannot tell which rollback statements undo the statements that ran: "
                           f"{exc.reasons[0]}", hint="choose them from the list above, in the order to run: "
                           "inv db.rollback --statements N,M") from None
        for i in plan.unreversed:
            tell(f"{rel(f.path, self.settings.root)} statement {i + 1} ran and no statement of {shown} undoes it: "
                 "it stays")
        return [undo[j] for j in plan.order]

    def rollback(self, count: int | None = None, to: str | None = None, dry_run: bool = False,
                 statements: list[int] | None = None, allow_empty: bool = False) -> dict[str, Any]:
        """Roll back applied migrations newest first, or undo what ran of a dirty one (:meth:`rollback_plan`). The
        plan is made again under the lock from the journal as it is then, so the dry run shows what runs.
        ``ran_nothing`` names the migrations whose rollback file has no statements, and the objects they leave; one
        that does not say it has nothing to undo (``-- chops: nothing to undo``) is refused without ``allow_empty``."""
        files = self.files()
        states = self.states(files)
        plan = self.rollback_plan(count, to, files, states, statements)
        self._refuse_bad_rollback_sql(plan)
        if not (dry_run or allow_empty):
            checks.refuse_empty_rollbacks(plan, states)
        checked = {f.id for f, _ in plan}
        if dry_run:
            return self._rollback_result(plan, states, [], dry_run=True)
        done = []
        with self._locked():
            states = self.states(files)
            plan = self.rollback_plan(count, to, files, states, statements)
            self._refuse_bad_rollback_sql([(f, stmts) for f, stmts in plan if f.id not in checked])
            pidfile.working(self.settings, "db.rollback", ", ".join(f.id for f, _ in plan))
            for f, undo in plan:
                self._rollback_one(f, undo, states[f.id])
                done.append(f.id)
        return self._rollback_result(plan, states, done, dry_run=False)

    def _rollback_one(self, f: MigrationFile, statements: list[Any], st: State) -> None:
        """Run ``statements`` of ``f``'s rollback file, journaling each by its place in the file (the statements an
        interrupted rollback already ran are skipped)."""
        already = st.done if st.state == "dirty" and st.operation == "rollback" else {}
        path = f.rollback_path or f.path
        attempt = str(uuid.uuid4())
        self._write([self._event_row(f, "rollback", "begin", attempt)])
        settings = self.statement_settings() or None
        ran = set(already)
        for n, stmt in enumerate(statements):
            index = next((i for i, s in enumerate(f.rollback_statements) if s is stmt), n)
            if index in already:
                continue
            try:
                self.db.command(self.render(stmt, path), settings=settings)
            except Exception as exc:
                error = _clean_error(exc)
                self._write([self._event_row(f, "rollback", "failed", attempt, index, sha(stmt.text), error)])
                whole = "" if brief(error) == error else f"; the whole message: inv db.history {f.id}"
                raise WorkFailed(f"{rel(path, self.settings.root)} statement {index + 1} of "
                                 f"{len(f.rollback_statements)} (line {stmt.line}) failed: {brief(error)}; "
                                 f"the rollback of {f.id} did not finish, {f.id} is dirty",
                                 hint=ways_out(f.id, "rollback", ran=ran) + whole) from None
            self._write([self._event_row(f, "rollback", "statement", attempt, index, sha(stmt.text))])
            ran.add(index)
        self._write([self._event_row(f, "rollback", "done", attempt)])

    def _refuse_bad_rollback_sql(self, plan: list[tuple[MigrationFile, list[Any]]]) -> None:
        for _, problem in self.rollback_syntax_problems(plan):
            raise BadInput(problem, hint="nothing was rolled back; fix it (inv db.validate checks every rollback file)")

    def _rollback_result(self, plan: list[tuple[MigrationFile, list[Any]]], states: dict[str, State],
                         done: list[str], dry_run: bool) -> dict[str, Any]:
        """What ``rollback`` answers: the plan as it runs (rendered), what was rolled back, and the migrations
        whose rollback ran (or would run) nothing although they are applied, with what they leave behind."""
        rendered = [{"id": f.id, "statements": [self.render(s, f.rollback_path or f.path) for s in stmts]}
                    for f, stmts in plan]
        nothing = [{"id": f.id, "stays": created_objects(f)} for f, stmts in plan
                   if not stmts and f.statements and states[f.id].state != "dirty"]
        return {"rolled_back": done, "plan": rendered, "dry_run": dry_run, "ran_nothing": nothing}
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
