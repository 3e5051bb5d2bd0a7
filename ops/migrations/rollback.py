"""Rolling back: applied migrations newest first (those the database is ahead with from the rollback the journal
stored when they were applied, ``ops.migrations.stored``), and the undo of a dirty migration, paired statement by
statement with what ran (``ops.migrations.effects``).

A mixin of :class:`ops.migrations.migrator.Migrations`, which provides ``settings``, ``db``, ``files``, ``states``,
``render``, ``notify``, ``_resolve``, ``_applied``, ``_locked``, ``_event_row``, ``_write`` and
``statement_settings``.
"""

from __future__ import annotations

import uuid
from typing import Any

from ops.clickhouse.client import brief
from ops.core import pidfile
from ops.core.errors import BadInput, WorkFailed
from ops.migrations import checks, effects, stored
from ops.migrations.checks import clean_error as _clean_error, ways_out
from ops.migrations.files import MigrationFile, created_objects, rel, sha
from ops.migrations.journal import State
from ops.migrations.stored import StoredMigration


class Rollbacks:
    def rollback_plan(self, count: int | None = None, to: str | None = None, files: list[MigrationFile] | None = None,
                      states: dict[str, State] | None = None,
                      statements: list[int] | None = None) -> list[tuple[MigrationFile, list[Any]]]:
        """What a rollback would run: (migration, rollback statements in order) newest first, from :meth:`states`
        (or ``states``): a dirty migration first (its undo; ``statements``: the rollback statements that undo it,
        chosen by number), then applied ones, each once: those the database is ahead with first (their rollback as
        the journal stored it, ``ops.migrations.stored``), then this tree's."""
        if count is not None and to is not None:
            raise BadInput("give --count or --to, not both")
        if count is not None and count < 1:
            raise BadInput(f"--count must be at least 1, got {count}")
        files = self.files() if files is None else files
        by_id = {f.id: f for f in files}
        states = self.states(files) if states is None else states
        target = self._rollback_target(files, states, to)
        dirty = [st for st in states.values() if st.state == "dirty"]
        chosen: list[tuple[MigrationFile, list[Any]]] = []
        for st in dirty:
            f = by_id.get(st.id) or stored.from_state(st)  # a newer release's: as the journal stored it
            if f is None:
                raise BadInput(f"{st.id} is dirty, its file is not in this release and it was begun before chops "
                               "stored rollback SQL", hint="run inv db.rollback in a release that has it")
            chosen.append((f, self._undo_statements(f, st, statements)))
        if statements and len(dirty) != 1:
            raise BadInput("--statements chooses the rollback statements that undo the dirty migration, and "
                           + ("none is dirty" if not dirty else f"{len(dirty)} are"), hint="see: inv db.status")
        if dirty and count is None and to is None:
            return chosen
        # ahead ones (applied, no file here: a newer release's) first, newest applied first; then the files'
        applied = [st.id for st in sorted((st for st in states.values() if st.state == "ahead"),
                                          key=lambda st: st.applied_time, reverse=True)]
        applied += [f.id for f in self._applied(files, states)]
        if target is not None:
            if target not in applied:
                raise BadInput(f"{target} is not applied; nothing to roll back to")
            applied = applied[: applied.index(target)]
        else:
            applied = applied[: max(0, (count or 1) - len(chosen))]
        chosen += [self._rollback_of(by_id[mid]) if mid in by_id else self._stored_rollback_of(states[mid])
                   for mid in applied]
        if not chosen:
            raise BadInput("nothing to roll back: no migration is applied" if target is None
                           else f"nothing is applied after {target}")
        return chosen

    @staticmethod
    def _rollback_of(f: MigrationFile) -> tuple[MigrationFile, list[Any]]:
        if f.rollback_path is None:
            raise BadInput(f"{f.id} has no rollback file; write {f.id}.rollback.sql or run: inv db.unmark {f.id}")
        return f, list(f.rollback_statements)

    @staticmethod
    def _stored_rollback_of(st: State) -> tuple[StoredMigration, list[Any]]:
        """The rollback of an ahead migration, from what the journal stored when it was applied."""
        f = stored.from_state(st)
        if f is None:
            raise BadInput(stored.not_stored_message(st.id))
        if f.error:
            raise BadInput(f"{st.id}: its rollback file could not be rendered when it was applied ({f.error}); "
                           "roll back from a release that has it")
        if f.rollback_path is None:
            raise BadInput(f"{st.id} had no rollback file when it was applied; undo it by hand, then run: "
                           f"inv db.unmark {st.id}")
        return f, list(f.rollback_statements)

    def _rollback_target(self, files: list[MigrationFile], states: dict[str, State], ident: str | None) -> str | None:
        """The id ``--to`` names: a migration of this tree, or one the database is ahead with (id or number)."""
        if ident is None:
            return None
        ident = ident.strip()
        try:
            return self._resolve(files, ident).id
        except BadInput:
            ahead = [st.id for st in states.values() if st.state == "ahead"
                     and (st.id == ident or (ident.isdigit() and stored.id_number(st.id) == int(ident)))]
            if not ahead:
                raise
            return ahead[0]

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

    # --- a migration that failed, undone at once (db.migrate --undo-on-failure) ------------------------------------

    def undo_failed(self, f: MigrationFile, failure: WorkFailed, files: list[MigrationFile]) -> WorkFailed:
        """Under the migration lock, right after statement ``failure.details["statement"]`` of ``f`` failed: undo
        the statements of it that ran (:meth:`_undo_statements`, paired by effect) so that ``f`` is pending again
        and the database as it was before it. Returns the error to raise, whose ``details`` say whether it was
        undone, the state ``f`` is in (``clean`` or ``dirty``) and the one command that repairs it. Where the
        undo cannot be made (no rollback file, statements that cannot be paired, a rollback statement failing),
        ``f`` stays dirty and the error says so."""
        details = dict(failure.details)
        st = self.states(files)[f.id]
        ran = sorted(st.done)
        numbers = f"statement{'s' if len(ran) > 1 else ''} {', '.join(str(i + 1) for i in ran)}"
        try:
            undo = self._undo_statements(f, st)
            self._refuse_bad_rollback_sql([(f, undo)])
        except BadInput as exc:  # nothing of the undo ran: still dirty from the apply, as the failure said
            details.update(undo_error=exc.line(), repair="inv db.migrate --resume")  # db.rollback would refuse too
            return _with_details(WorkFailed(f"{failure.message} ({numbers} of it ran and stay); it could not be "
                                            f"undone: {exc.message}", hint=details["ways_out"]), details)
        try:
            self._rollback_one(f, undo, st)
        except WorkFailed as exc:  # dirty from the rollback now
            details.update(undo_error=exc.message, repair="inv db.rollback", ways_out=exc.hint or "")
            return _with_details(WorkFailed(f"{failure.message}; its undo failed too: {exc.message}", hint=exc.hint),
                                 details)
        what = "none of its statements had run"
        if ran:
            what = f"undid what ran ({numbers}, with {len(undo)} rollback statement{'' if len(undo) == 1 else 's'})"
        message = failure.message.replace(f"{f.id} is now dirty", f"{what}: {f.id} is not applied and nothing is dirty")
        details.update(undone=True, state="clean", repair="inv db.migrate", ways_out="")
        return _with_details(WorkFailed(message, hint=f"fix {rel(f.path, self.settings.root)} and run: inv db.migrate"),
                             details)


def _with_details(error: WorkFailed, details: dict[str, Any]) -> WorkFailed:
    """``error`` carrying ``details``: the fields a ``--json`` failure adds to ``{"error": …}`` (``ops.cli.base``)."""
    error.details = details
    return error
