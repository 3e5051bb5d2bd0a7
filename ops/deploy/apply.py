"""Deploys as releases on a target over ssh and rsync: apply a plan, verify, and roll back when unhealthy.

On the target (see ``ops.deploy.helper`` for the layout): ``releases/<UTC time>-<sha>/`` per deploy, a ``current``
symlink switched atomically, ``shared/`` for ``.env`` and ``var/`` (logs, pid files, the embedded database), and
virtualenvs keyed by the target's Python and requirements.txt, built there and reused while those are unchanged.

A deploy is seven steps, in the order that leaves the running release alone until the switch:

1. **preflight and lock**: validate the target, read the work tree (``git ls-files``; a dirty tree refuses unless
   allowed), one ssh round trip gathers the target's facts, then the deploy lock (refused with its holder named; a
   holder that is provably gone is stale and taken over, its deploy audited as killed); a dirty database is refused
   here, before anything is shipped (``ops.deploy.database``). The same commit already current and healthy: a no-op
   that only re-verifies health (and installs cron entries a killed deploy left paused).
2. **sync**: rsync of the tracked files into a new release, unchanged files hard-linked from ``current``.
3. **provision**: links to ``shared/`` and the venv (built only when missing), ``.env`` created if missing (never
   overwritten), its key names reported against ``config/.env.example``.
4. **migrate**: ``db.setup`` + ``db.migrate --undo-on-failure`` of the new release: a failing migration is undone,
   and the error says whether the database is clean or dirty (and the repair).
5. **test**: the new release's smoke check (``deploy.smoke``: imports, configuration, database, migrations,
   pipelines) and ``inv test --smoke``.
6. **switch and schedule**: pause cron (``deploy.drain``: the project's entries removed, running chops processes
   given up to ``deploy.drain_timeout`` to finish), stop the rest (``proc.kill --all --grace``), switch ``current``,
   install the entries again from ``current``.
7. **verify**: ``proc.check`` on the target (a check that could not run fails it; warnings are said). Unhealthy:
   switch back, restore the previous entries, mark the release BAD, check the restored release again, exit 1.

What is about to change is recorded before it changes (``cron_touched``, ``switched``), so Ctrl-C or SIGTERM at any
point puts ``current`` and the cron entries back as they were.

A rollback is the same :class:`Deployer` in its rollback mode (:meth:`Deployer.for_rollback`): preflight and lock,
switch and schedule to an earlier release, verify; unhealthy, it switches back. Several hosts (batches, a canary,
hosts in parallel, the way back after a failure) are ``ops.deploy.fleet``'s, which runs one Deployer per host.

Every deploy that held the lock appends one JSON line to ``audit.log`` on the target, and its whole log and an index
line here (``ops.deploy.history``). Remote commands are built
with :func:`shlex.quote` per argument; ``.env`` values never leave the target (only key names do). The deployer
talks to a release on the target only through ``inv TASK --json`` (:meth:`ops.deploy.transport.Remote.inv_json`).
"""

from __future__ import annotations

import dataclasses
import subprocess
from typing import Any, Callable, NoReturn

from ops.core import pidfile
from ops.core.errors import BadInput, ChopsError, WorkFailed
from ops.core.output import plural
from ops.core.process import Holder
from ops.core.threads import shielded
from ops.deploy import database
from ops.deploy.actions import Action, Result
from ops.deploy.facts import Facts, gather
from ops.deploy.history import DeployLog
from ops.deploy.lock import acquire, describe_holder, holder_id, new_holder
from ops.deploy.plan import Plan, choose_rollback, env_report, make_plan, rollback_plan
from ops.deploy.report import ROLLBACK_STEPS, STEPS, Outcome, Steps, audit_record, health, hint_flags
from ops.deploy.source import Source
from ops.deploy.targets import Target
from ops.deploy.transport import Notify, Remote, SshOptions, as_text, last_line, need_ok, rsync_argv


class Unhealthy(Exception):
    def __init__(self, result: dict[str, Any]):
        super().__init__(result["summary"])
        self.result = result


def error_line(exc: BaseException) -> str:
    if isinstance(exc, ChopsError):
        return exc.line()
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"


def _reason(verdict: dict[str, Any]) -> str:
    return "; ".join(verdict["failed"]) or verdict["summary"]


# --- the deployer ---------------------------------------------------------------------------------------------------------

class Deployer:
    """Applies a plan to one target: a deploy (:meth:`deploy`) or, made by :meth:`for_rollback`, a rollback
    (:meth:`rollback`). Either returns an Outcome or raises (after cleaning up) with the lock released and an audit
    line written."""

    def __init__(self, settings, target: Target, source: Source | None, options: SshOptions, notify: Notify,
                 force: bool = False, prefix: str = "", *, action: Action = Action.DEPLOY, to: str | None = None,
                 with_migrations: bool = False):
        self.settings, self.target, self.source, self.options = settings, target, source, options
        self.force, self.action, self.to, self.with_migrations = force, action, to, with_migrations
        self.log = DeployLog(settings, action, target)
        self.notify = self.log.tee(notify)
        self.flags = hint_flags(target, settings.root)  # what a hint needs to reach this target again
        self.remote = Remote(target, options)
        self.steps = Steps(STEPS if action is Action.DEPLOY else ROLLBACK_STEPS, self.notify, prefix)
        self.holder: Holder | None = None
        self.plan: Plan | None = None
        self.facts: Facts | None = None
        self.notes: list[str] = []
        self.paused = False  # the project's cron entries were removed and not yet installed again
        self.switched = False
        self.cron_touched = False  # entries were removed or replaced: a rollback installs the previous ones again
        self.ended = False  # the lock was given back (with its audit line): nothing is left to clean up

    @classmethod
    def for_rollback(cls, settings, target: Target, options: SshOptions, notify: Notify,
                     to: str | None = None, with_migrations: bool = False) -> "Deployer":
        """A Deployer that makes an earlier release current again: ``to``, or the one :func:`choose_rollback` picks.
        It ships nothing and never marks the release it rolls back to BAD. ``with_migrations``: the migrations that
        release lacks are undone first."""
        return cls(settings, target, None, options, notify, action=Action.ROLLBACK, to=to,
                   with_migrations=with_migrations)

    # the steps --------------------------------------------------------------------------------------------------------

    def preflight(self) -> str:
        t = self.target
        self.holder = new_holder(Action.DEPLOY)
        self.facts, took = acquire(self.remote, self.holder, self.settings.get("deploy.stale_lock_after"),
                                   self.options, self.notify, self.flags)
        if took is not None:
            self.notes.append(f"took over the stale lock of {describe_holder(took)}")
            self.log.killed(took)
        self.plan = make_plan(t, self.source, self.facts, float("inf"), force=self.force)
        if took is not None and self.plan.action is Action.NO_OP:
            self.plan = dataclasses.replace(self.plan, action=Action.REVERIFY)
        p = self.plan
        if p.release:  # say in the lock what is being deployed (the holder is us: replaced in place)
            self.holder = self.holder.with_extra(release=p.release)
            self.remote.helper("lock", path=t.path, holder=self.holder.as_dict(), takeover=holder_id(self.holder))
        if p.action is Action.DEPLOY:
            deps = "dependencies unchanged" if not p.dependencies_change else (
                "new dependencies: venv ready" if p.venv_ready else "new dependencies: venv to build")
            db = ""
            if p.current:  # a dirty database is refused before anything is shipped
                database.announce_lock(self.remote, self.settings, self.notify, self.steps.prefix, "reading its state",
                                       self.facts.raw.get("db_lock"), ask=False)
                db = "; " + database.refuse_dirty(self.remote, self.settings, t, f"{t.path}/current", self.flags)
            return (f"{t.label()}: {p.current or 'no release yet'} -> {p.release} "
                    f"({p.revision}{', dirty tree' if p.dirty else ''}); {deps}{db}")
        return f"{t.label()}: {p.revision} is already current ({p.current})"

    def rollback_preflight(self) -> str:
        t = self.target
        facts = gather(self.remote)
        if not facts.raw.get("exists") or not facts.releases:
            raise BadInput(f"nothing is deployed at {t.destination}:{t.path}")
        choose_rollback(facts, self.to)  # bad input is refused before the lock
        self.holder = new_holder(Action.ROLLBACK)
        self.facts, _ = acquire(self.remote, self.holder, self.settings.get("deploy.stale_lock_after"), self.options,
                                self.notify, self.flags)
        chosen = choose_rollback(self.facts, self.to)
        self.plan = rollback_plan(t, self.facts, chosen)
        if chosen.get("bad"):
            self.notify(f"{self.steps.prefix}      note: {chosen['name']} was marked BAD: {chosen['bad']}")
        pidfile.working(self.settings, "deploy", f"{t.host} rollback to {chosen['name']}")
        return f"{t.label()}: current {self.facts.current} -> {chosen['name']} ({chosen['revision']})"

    def sync(self) -> str:
        p, t = self.plan, self.target
        link_dest = f"{t.path}/releases/{p.current}/" if p.current else None
        files = b"\0".join(f.encode("utf-8", errors="surrogateescape") for f in self.source.files) + b"\0"
        argv = rsync_argv(t, self.options, self.release_dir(), link_dest)
        try:
            done = subprocess.run(argv, cwd=self.source.root, input=files, capture_output=True,
                                  timeout=self.options.command_timeout)
        except FileNotFoundError:
            raise WorkFailed("rsync is not installed here", hint="apt-get install rsync") from None
        except subprocess.TimeoutExpired:
            raise WorkFailed(f"rsync to {t.host} did not finish within {self.options.command_timeout:g}s") from None
        if done.returncode != 0:
            raise WorkFailed(f"rsync to {t.host} failed (exit {done.returncode}): {last_line(done.stderr)}")
        sent = sum(1 for line in as_text(done.stdout).splitlines() if line[:2] in (">f", "<f"))
        total = len(self.source.files)
        linked = f", {total - sent} hard-linked from {p.current}" if p.current else ""
        return f"{total} files: {sent} sent{linked}"

    def provision(self) -> str:
        p, t = self.plan, self.target
        answer = self.remote.helper("prepare", path=t.path, release=p.release, revision=p.revision, venv=p.venv,
                                    files=list(self.source.files))
        parts = []
        if answer["venv_ready"]:
            parts.append(f"venv {p.venv} reused")
        else:
            self.notify(f"{self.steps.prefix}      building the virtualenv {p.venv} on {t.host} "
                        "(python -m venv + pip install -r requirements.txt; a few minutes at most)")
            built = self.remote.helper("venv", timeout=self.options.command_timeout, path=t.path, venv=p.venv,
                                       release=p.release, python=self.options.python)
            if built.get("failed"):
                raise WorkFailed(f"building the virtualenv on {t.host} failed (exit {built.get('exit')}): "
                                 f"{' / '.join(built.get('tail') or [])}", hint=f"the whole log: {built.get('log')}")
            parts.append(f"venv {p.venv} built in {built['seconds']:.0f}s")
        env = env_report(answer.get("env_keys"), answer.get("example"), self.facts.raw.get("env_example_current")
                         if p.current else None)
        self.plan = dataclasses.replace(p, env=env)
        bits = [f"{plural(env['set'], 'key')} set"]
        if answer.get("env_created"):
            bits.append("created empty (mode 0600)")
        if answer.get("env_mode_fixed"):
            bits.append(f"mode {answer['env_mode_fixed']} -> 0600")
        if env["missing"]:
            bits.append("MISSING required: " + ", ".join(env["missing"]))
            self.notes.append(f"{t.host}: .env lacks required keys {', '.join(env['missing'])}")
        if env["added"]:
            bits.append("new in .env.example: " + ", ".join(env["added"]))
        if env["extra"]:
            bits.append("not in .env.example: " + ", ".join(env["extra"]))
        parts.append("shared/.env: " + "; ".join(bits))
        return "; ".join(parts)

    def release_dir(self) -> str:
        """The release the plan makes current (a new one, or the one a rollback goes back to)."""
        return f"{self.target.path}/releases/{self.plan.release}"

    def migrate(self) -> str:
        database.announce_lock(self.remote, self.settings, self.notify, self.steps.prefix, "migrate")
        return database.migrate(self.remote, self.settings, self.target, self.release_dir(), self.flags)

    def test(self) -> str:
        t = self.target
        _, smoke = self.remote.inv_json(self.release_dir(), t.environment, "deploy.smoke",
                                        extra_env=database.lock_env(self.settings))
        tests = need_ok(self.remote.inv(self.release_dir(), t.environment, "test", "--smoke", what="inv test --smoke"),
                        "inv test --smoke", t.host)
        summary = next((line for line in reversed(as_text(tests.stdout).splitlines()) if " passed" in line), "passed")
        return f"{len(smoke)} smoke checks passed; inv test --smoke: {summary.strip()}"

    def _has_crontab(self) -> bool:
        return bool((self.facts.raw.get("crontab") or {}).get("available"))

    def pause(self, directory: str) -> str:
        """Remove the project's cron entries and let running chops processes finish (``deploy.drain`` of the release
        in ``directory``); stop the rest."""
        t = self.target
        timeout = self.settings.get("deploy.drain_timeout")
        keep = [] if self._has_crontab() else ["--keep-cron"]
        # recorded before it happens: interrupted from here on, the entries of current are installed again
        self.paused = self.cron_touched = True
        _, answer = self.remote.inv_json(directory, t.environment, "deploy.drain", "--timeout", str(timeout), *keep,
                                         timeout=timeout + 120)
        words = [f"cron paused ({answer.get('unscheduled', 0)} entries removed)"]
        running = answer.get("running") or []
        if answer.get("waited"):
            words.append(f"waited {answer['waited']:.0f}s for running chops processes")
        if running:
            grace = self.settings.get("deploy.kill_grace")
            self.notify(f"{self.steps.prefix}      {len(running)} chops process(es) still running after "
                        f"{timeout}s: proc.kill --all --grace {grace}")
            need_ok(self.remote.inv(directory, t.environment, "proc.kill", "--all", "--grace", str(grace),
                                    what="proc.kill"), "proc.kill", t.host)
            words.append(f"stopped {len(running)} with proc.kill")
        return ", ".join(words)

    def schedule(self) -> str:
        """Install the entries of ``current`` (or remove them all for a target that does not run cron)."""
        t = self.target
        if not self._has_crontab():
            return "no crontab on the target"
        task = "pipeline.schedule" if t.cron else "pipeline.unschedule"
        _, out = self.remote.inv_json(f"{t.path}/current", t.environment, task, "--all")
        self.paused = False
        return f"cron: {out.get('summary', 'done')}" if t.cron else "cron: this target runs no cron entries"

    def switch_and_schedule(self) -> str:
        t, p = self.target, self.plan
        # The drain runs in the newer code: the new release of a deploy, but the live release (``current``) of a
        # rollback, since the release a rollback goes back to may predate ``deploy.drain``.
        newer = f"{t.path}/current" if self.action is Action.ROLLBACK and self.facts.current else self.release_dir()
        paused = self.pause(newer)
        if self.with_migrations and self.facts.current:
            paused += "; " + database.undo_ahead(self.remote, self.settings, t, self.release_dir(), newer)
        self.switched = True  # recorded before it happens: interrupted now, current is switched back (idempotent)
        answer = self.remote.helper("switch", path=t.path, release=p.release)
        if not answer.get("switched"):
            self.switched = False
            raise WorkFailed(f"switching current on {t.host} failed: {answer.get('error')}")
        return f"{paused}; current -> {p.release}; {self.schedule()}"

    def verify(self) -> dict[str, Any]:
        """The health gate, as the step ``verify``: the verdict of ``proc.check`` on the target, or Unhealthy."""
        verdict: dict[str, Any] = {}

        def gate() -> str:
            verdict.update(health(self.remote, self.target, extra_env=database.lock_env(self.settings)))
            if not verdict["healthy"]:
                raise Unhealthy(verdict)
            return verdict["summary"]

        database.announce_lock(self.remote, self.settings, self.notify, self.steps.prefix, "the health check",
                               self.facts.raw.get("db_lock"), ask=self.plan.action not in (Action.NO_OP,))
        try:
            self.steps.run("verify", gate)
        finally:
            for warning in verdict.get("warnings", []):
                self.notify(f"{self.steps.prefix}      warning: {warning}")
        return verdict

    # the whole --------------------------------------------------------------------------------------------------------

    def deploy(self) -> Outcome:
        """Preflight and lock, sync, provision, migrate, test, switch and schedule, verify; only the health check
        (and the schedule, for a release not known healthy) when the revision is already current."""
        return self._guarded(self._deploy)

    def rollback(self) -> Outcome:
        """Make the chosen earlier release current again: pause cron (undo the migrations it lacks, with
        ``with_migrations``), switch, schedule from it, verify. Unhealthy: switch back and raise WorkFailed (exit 1)."""
        return self._guarded(self._rollback)

    def _guarded(self, body: Callable[[], Outcome]) -> Outcome:
        """``body()``; an interrupt that lands between two steps (outside their own handlers) is cleaned up here as
        in a step; the ssh connection is ended in every case."""
        try:
            return body()
        except BaseException as exc:
            if not self.ended and self.holder is not None:
                self._abort(exc) if self.plan is not None else self._release_quietly(exc)
            raise
        finally:
            self._close()

    def _deploy(self) -> Outcome:
        t = self.target
        pidfile.working(self.settings, "deploy", f"{t.host} (preflight)")
        self._first_step(self.preflight)
        p = self.plan
        pidfile.working(self.settings, "deploy", f"{t.host} {p.release or p.current}")
        if p.action in (Action.NO_OP, Action.REVERIFY):
            return self._verify_only()
        try:
            for name, body in (("sync", self.sync), ("provision", self.provision), ("migrate", self.migrate),
                               ("test", self.test), ("switch and schedule", self.switch_and_schedule)):
                self.steps.run(name, body)
            verdict = self.verify()
        except Unhealthy as bad:
            self._back_out(bad.result)
        except BaseException as exc:
            self._abort(exc)
            raise
        out = self._finish(Result.OK, marks=[{"release": p.release, "status": "healthy"}], prune=True,
                           note="; ".join(self.notes) or None)
        pruned = out.get("pruned", {})
        if pruned.get("releases") or pruned.get("venvs"):
            self.notify(f"{self.steps.prefix}      removed old releases: {', '.join(pruned['releases']) or 'none'}; "
                        f"old venvs: {', '.join(pruned['venvs']) or 'none'}")
        return Outcome(t, Action.DEPLOY, Result.DEPLOYED, p.release, p.current, self.steps.as_list(),
                       self.steps.seconds, verdict, notes=self.notes)

    def _rollback(self) -> Outcome:
        t = self.target
        self._first_step(self.rollback_preflight)
        p = self.plan
        try:
            self.steps.run("switch and schedule", self.switch_and_schedule)
            verdict = self.verify()
        except Unhealthy as bad:
            reason = _reason(bad.result)
            restored = self._restore()
            found = self._reverify()
            restored += f"; {found}" if found else ""
            self._finish(Result.FAILED, error=f"unhealthy: {reason}", note=restored)
            raise WorkFailed(f"{t.host}: {p.release} is unhealthy ({reason}); switched back: {restored}") from None
        except BaseException as exc:
            self._abort(exc)
            raise
        self._finish(Result.OK, marks=[{"release": p.release, "status": "healthy"}])
        return Outcome(t, Action.ROLLBACK, Result.ROLLED_BACK, p.release, p.current, self.steps.as_list(),
                       self.steps.seconds, verdict)

    def _first_step(self, body: Callable[[], str]) -> None:
        """Preflight and lock; on any failure the lock, if it was taken, is released again."""
        try:
            self.steps.run(self.steps.items[0].name, body)
        except BaseException as exc:
            self._release_quietly(exc)
            raise

    def _finish(self, result: Result, marks: list[dict[str, Any]] | None = None, prune: bool = False,
                error: str | None = None, note: str | None = None) -> dict[str, Any]:
        """One round trip at the end: mark releases, prune old ones (``prune``), append the audit line, unlock."""
        p = self.plan
        self.ended = True
        self.log.record(result, p.release or p.current, p.current, error)
        return self.remote.helper("finish", path=self.target.path, id=holder_id(self.holder), marks=marks or [],
                                  keep=self.settings.get("deploy.keep_releases") if prune else None,
                                  audit=audit_record(self.action, self.target, result, self.steps, p.current,
                                                     p.release or p.current, p.revision, error=error, note=note))

    def _verify_only(self) -> Outcome:
        p, t = self.plan, self.target
        why = f"{p.revision} is already current" if p.action is Action.NO_OP else \
            f"{p.revision} is current; its cron entries were left paused" if self.facts.raw.get("cron_paused") else \
            f"{p.revision} is current but was not verified healthy"
        skipped = list(STEPS[1:6]) if p.action is Action.NO_OP else list(STEPS[1:5])
        self.steps.skip(skipped, why)
        try:
            if p.action is Action.REVERIFY:
                self.steps.run("switch and schedule", lambda: "current already -> " + p.current + "; " + self.schedule())
            verdict = self.verify()
        except Unhealthy as bad:
            self._finish(Result.UNHEALTHY, error="; ".join(bad.result["failed"]))
            raise WorkFailed(f"{t.host}: {p.current} is current and UNHEALTHY: {'; '.join(bad.result['failed'])}",
                             hint=f"inv deploy.status {self.flags}; inv deploy.rollback {self.flags}") from None
        except BaseException as exc:
            self._release_quietly(exc)
            raise
        result = Result.NO_OP if p.action is Action.NO_OP else Result.REVERIFIED
        self._finish(result, marks=[{"release": p.current, "status": "healthy"}], prune=True,
                     note="; ".join(self.notes) or None)
        return Outcome(t, Action.DEPLOY, result, p.current, p.current, self.steps.as_list(), self.steps.seconds,
                       verdict, notes=self.notes)

    def _back_out(self, verdict: dict[str, Any]) -> NoReturn:
        """The new release is unhealthy after the switch: back to the previous one, its cron entries again, the new
        one marked BAD. Raises WorkFailed (exit 1) once done."""
        p, t = self.plan, self.target
        reason = _reason(verdict)
        self.notify(f"{self.steps.prefix}      {p.release} is unhealthy: {reason}")
        self.notify(f"{self.steps.prefix}      rolling back to {p.current or 'no release'}")
        restored = self._restore()
        found = self._reverify()
        if found:
            restored += f"; {found}"
        self._finish(Result.ROLLED_BACK, prune=True, error=f"unhealthy: {reason}", note=restored,
                     marks=[{"release": p.release, "status": "bad", "reason": f"failed its health check: {reason}"}])
        raise WorkFailed(f"{t.host}: {p.release} failed its health check ({reason}); rolled back: {restored}",
                         hint=f"the release is marked BAD; inv deploy.status {self.flags}")

    def _reverify(self) -> str:
        """The health of the release a rollback restored, in words (its warnings said): what was found, not assumed."""
        p = self.plan
        if p.current is None or self.switched:
            return ""
        try:
            verdict = health(self.remote, self.target, extra_env=database.lock_env(self.settings))
        except ChopsError as exc:
            return f"{p.current} could not be checked again ({exc.line()})"
        for warning in verdict["warnings"]:
            self.notify(f"{self.steps.prefix}      warning ({p.current}): {warning}")
        if verdict["healthy"]:
            return f"{p.current} re-verified: {verdict['summary']}"
        return f"{p.current} is UNHEALTHY too: {'; '.join(verdict['failed']) or verdict['summary']}"

    def _restore(self) -> str:
        """Switch back to the previous release (none: no current) and put its cron entries back."""
        p, t = self.plan, self.target
        done = []
        if self.switched:
            if p.current is None and self._has_crontab():
                # no previous release: remove the entries while current still names this one (their project id)
                self.remote.inv(f"{t.path}/current", t.environment, "pipeline.unschedule", "--all", what="unschedule")
                self.paused = False
            answer = self.remote.helper("switch", path=t.path, release=p.current)
            self.switched = False
            done.append(f"current -> {answer.get('to') or 'none (there was no release before)'}")
        if self.cron_touched and p.current:
            try:
                done.append(self.schedule().replace("cron:", "cron restored:"))
            except ChopsError as exc:
                done.append(f"cron NOT restored ({exc.line()}): run inv pipeline.schedule --all in {t.path}/current")
        elif p.current is None:
            done.append("no cron entries (there was no release before)")
        return "; ".join(done) or "nothing to undo"

    @shielded()  # a fleet's host asked to stop meanwhile cleans up whole
    def _abort(self, exc: BaseException) -> None:
        """A step failed or was interrupted before the health check: undo what was done, mark a new release BAD,
        audit, unlock. Best effort: the original error is what the user sees."""
        p, t = self.plan, self.target
        error = error_line(exc)
        restored = None
        try:
            if self.switched or self.cron_touched:
                restored = self._restore()
        except BaseException as again:  # noqa: BLE001 - reported, the original error wins
            restored = f"could not restore: {error_line(again)}"
        said = restored or "current was not touched"
        if isinstance(exc, ChopsError):  # its one line, printed at the end, says what happened to the target
            exc.message += f"; {said}"
        else:
            self.notify(f"{self.steps.prefix}      {self.action} of {p.release} stopped ({error}): {said}")
        marks = [{"release": p.release, "status": "bad", "reason": error}] \
            if p.release and self.action is Action.DEPLOY else []  # a rollback never marks the release it goes to
        result = Result.INTERRUPTED if isinstance(exc, KeyboardInterrupt) else Result.FAILED
        try:
            self._finish(result, marks=marks, prune=True, error=error, note=restored)
        except BaseException:  # noqa: BLE001 - interrupted again, or the connection is gone: unlock at least
            if not self._unlock(result, p.current, error):
                self.notify(f"{self.steps.prefix}      could not release the deploy lock on {t.host}: the next "
                            f"deploy takes it over (or: inv deploy.unlock {self.flags})")

    @shielded()
    def _release_quietly(self, exc: BaseException) -> None:
        """Preflight failed: unlock (with an audit line when the lock was ours) and record it here. Also when the
        first round trip never answered: it may have taken the lock before it was cut (an unlock of a lock that is
        not ours changes nothing)."""
        current = self.facts.current if self.facts else None
        result = Result.INTERRUPTED if isinstance(exc, KeyboardInterrupt) else Result.FAILED
        self.ended = True
        self.log.record(result, self.plan.release if self.plan else None, current, error_line(exc))
        if self.holder is not None and (self.remote.connected or not isinstance(exc, ChopsError)):
            self._unlock(result, current, error_line(exc))  # not after ssh itself failed: it would fail again

    def _unlock(self, result: Result, current: str | None, error: str, attempts: int = 2) -> bool:
        """Give back the lock this deploy holds (the helper removes it only if its id is ours), with its audit line.
        A second interrupt during the unlock gets one more try; a target that cannot be reached, none. Whether the
        lock is known to be given back."""
        for _ in range(attempts):
            try:
                self.remote.helper("unlock", timeout=self.options.connect_timeout + 30, path=self.target.path,
                                   id=holder_id(self.holder),
                                   audit=audit_record(self.action, self.target, result, self.steps, current, None,
                                                      self.plan.revision if self.plan else None, error=error))
                return True
            except KeyboardInterrupt:
                continue
            except BaseException:  # noqa: BLE001 - the original error is what the user sees
                return False
        return False

    def _close(self) -> None:
        """The end of this deploy: its log closed, the shared ssh connection ended (not left for ControlPersist)."""
        self.log.close()
        self.remote.close()


# --- the commands ---------------------------------------------------------------------------------------------------------

def rollback(settings, target: Target, options: SshOptions, notify: Notify, to: str | None = None,
             with_migrations: bool = False) -> Outcome:
    """Make an earlier release current again: pause cron, switch, schedule from it, verify. Unhealthy: switch back."""
    return Deployer.for_rollback(settings, target, options, notify, to=to, with_migrations=with_migrations).rollback()
