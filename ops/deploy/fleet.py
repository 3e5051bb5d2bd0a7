"""Fleet rollouts: one deploy (or rollback) over every host a command names, in batches, the way back included.

The hosts come from :func:`ops.deploy.targets.resolve_fleet`, by target. Each target rolls out in order
(:func:`rollout_order`): a canary batch of ``canary`` hosts first, then batches of ``parallel`` hosts, each host
deployed by its own :class:`ops.deploy.apply.Deployer` (``parallel`` of them at once, in threads). The first host
that fails (its own Deployer already switched it back, or never switched it) stops the rollout: no further batch
starts, and with ``rollback_on_failure`` (the default) every host this rollout switched to the new release is rolled
back to the release it had, so the fleet does not stay on mixed versions. Ctrl-C or SIGTERM stops it the same way.

``before`` hooks run before anything changes (a failing one stops the deploy there); ``after`` hooks once the rollout
ended, with its result in ``CHOPS_DEPLOY_RESULT``. ``--wait SECONDS`` waits that long for a deploy lock another
deploy holds, polling it quietly, instead of refusing at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait as wait_for
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, TypeVar

from ops.core.errors import BadInput, ChopsError, WorkFailed
from ops.core.threads import interruptible, pause
from ops.deploy.actions import LockState, Result
from ops.deploy.apply import Deployer, error_line
from ops.deploy.facts import gather
from ops.deploy.lock import LockHeld, describe_holder, lock_state
from ops.deploy.report import Outcome
from ops.deploy.source import Source
from ops.deploy.targets import Fleet, Group, Hook, Target, Where
from ops.deploy.transport import Notify, Remote, SshOptions, as_text, last_line, quote_command

T = TypeVar("T")


class HostResult(StrEnum):
    """Where a host of a rollout ended."""

    DEPLOYED = "deployed"  # the new release is current and healthy
    NO_OP = "no-op"  # already current and healthy
    REVERIFIED = "reverified"  # already current; verified healthy again
    FAILED = "failed"  # its deploy failed (its Deployer switched it back, or it never switched)
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C or SIGTERM while deploying (cleaned up by its Deployer)
    ROLLED_BACK = "rolled back"  # deployed, then rolled back because another host failed
    LEFT = "left on the new release"  # deployed, and could not (or was not to) be rolled back
    NOT_ATTEMPTED = "not attempted"


@dataclass(frozen=True)
class Batch:
    """Hosts deployed together (at most ``parallel`` at once); the rollout stops after a batch with a failure."""

    number: int
    group: str
    targets: tuple[Target, ...]
    parallel: int
    canary: bool = False

    def label(self) -> str:
        hosts = ", ".join(t.host for t in self.targets)
        at_once = f", {min(self.parallel, len(self.targets))} at once" if len(self.targets) > 1 else ""
        return f"batch {self.number}{' (canary)' if self.canary else ''}: {hosts}{at_once}"

    def as_dict(self) -> dict[str, Any]:
        return {"batch": self.number, "target": self.group, "hosts": [t.host for t in self.targets],
                "parallel": self.parallel, "canary": self.canary}


@dataclass
class HostReport:
    target: Target
    batch: int
    result: HostResult = HostResult.NOT_ATTEMPTED
    outcome: Outcome | None = None
    error: str | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        o = self.outcome
        return {"host": self.target.host, "target": self.target.as_dict(), "batch": self.batch, "result": self.result,
                "release": o.release if o else None, "previous": o.previous if o else None,
                "seconds": o.seconds if o else None, "health": (o.health or {}).get("summary") if o else None,
                "error": self.error, "note": self.note}


def rollout_order(fleet: Fleet, parallel: int | None = None, canary: int | None = None) -> list[Batch]:
    """The batches of a rollout, target by target: ``canary`` hosts first (when more follow), then ``parallel`` at a
    time. ``parallel``/``canary`` given here win over each target's. Pure."""
    batches: list[Batch] = []
    for g in fleet.groups:
        size = parallel or g.parallel
        first = g.canary if canary is None else canary
        hosts = list(g.targets)
        if first and len(hosts) > first:
            batches.append(Batch(len(batches) + 1, g.name, tuple(hosts[:first]), size, canary=True))
            hosts = hosts[first:]
        for i in range(0, len(hosts), size):
            batches.append(Batch(len(batches) + 1, g.name, tuple(hosts[i:i + size]), size))
    return batches


def describe_rollout(fleet: Fleet, batches: list[Batch], rollback_on_failure: bool | None = None) -> list[str]:
    """The rollout order as lines (what ``--dry-run`` prints)."""
    hosts = len(fleet.targets)
    lines = [f"rollout: {hosts} host{'s' if hosts != 1 else ''} in {len(batches)} batch"
             f"{'es' if len(batches) != 1 else ''}; stops at the first failure"]
    for g in fleet.groups:
        back = g.rollback_on_failure if rollback_on_failure is None else rollback_on_failure
        name = g.name or "--host"
        why = "--no-rollback" if rollback_on_failure is False else "rollback_on_failure = false"
        lines.append(f"  {name}: " + ("then rolls back the hosts it switched" if back else
                                      f"leaves the hosts it switched ({why})"))
        lines += [f"    before: {h.label()}" for h in g.before]
        lines += [f"    after: {h.label()}" for h in g.after]
    lines += [f"  {b.label()}" for b in batches]
    return lines


def run_many(jobs: list[tuple[Target, Callable[[], T]]], parallel: int, notify: Notify,
             stop: Callable[[Any], bool] = lambda r: isinstance(r, BaseException),
             ) -> tuple[list[tuple[Target, Any]], bool]:
    """Run the jobs, at most ``parallel`` at once: their results in the jobs' order (a ChopsError or an interrupt is a
    result) and whether Ctrl-C or SIGTERM stopped them. No new job starts once ``stop(result)`` said so. An interrupt
    (it reaches the main thread) is passed on to the running jobs, at their next step; each cleans up as a deploy
    does, and all are waited for."""
    results: dict[int, Any] = {}
    if parallel <= 1 or len(jobs) <= 1:
        for i, (_, job) in enumerate(jobs):
            results[i] = _result(job)
            if isinstance(results[i], KeyboardInterrupt):
                return [(jobs[i][0], results[i]) for i in sorted(results)], True
            if stop(results[i]):
                break
        return [(jobs[i][0], results[i]) for i in sorted(results)], False
    stopping = threading.Event()  # each job stops at its next stop point once set (ops.core.threads)

    def tracked(job: Callable[[], T]) -> Callable[[], Any]:
        def body() -> Any:
            with interruptible(stopping):
                return _result(job)
        return body

    pending = list(enumerate(jobs))
    running: dict[Future, int] = {}
    stopped = interrupted = False
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        try:
            while running or (pending and not stopped):
                while pending and not stopped and len(running) < parallel:
                    i, (_, job) = pending.pop(0)
                    running[pool.submit(tracked(job))] = i
                finished, _ = wait_for(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
                for future in finished:
                    i = running.pop(future)
                    results[i] = future.result()
                    stopped = stopped or stop(results[i])
        except KeyboardInterrupt:
            interrupted = True
            stopping.set()
            notify(f"interrupted: stopping {_count(len(running), 'running host')} at their next step")
            wait_for(list(running))
            for future, i in running.items():
                results[i] = future.exception() or future.result()
    return [(jobs[i][0], results[i]) for i in sorted(results)], interrupted


def _result(job: Callable[[], T]) -> Any:
    """What a job returned, or the expected failure or interrupt that ended it."""
    try:
        return job()
    except (ChopsError, KeyboardInterrupt) as exc:
        return exc


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# --- hooks ------------------------------------------------------------------------------------------------------------

def _stream(argv: list[str], cwd: Path, env: dict[str, str], timeout: float, say: Notify) -> tuple[int, str, bool]:
    """Run ``argv`` here (no shell), each output line said as it comes: its exit code, last line, whether it timed
    out. It runs in a session of its own, killed as a whole on timeout or interrupt."""
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)
    except OSError as exc:
        raise WorkFailed(f"cannot run {argv[0]}: {exc.strerror}") from None
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        _kill_group(proc)

    timer = threading.Timer(timeout, kill)
    timer.start()
    last = ""
    try:
        for line in proc.stdout:
            if line.strip():
                last = line.strip()
                say(f"  | {line.rstrip()}")
        code = proc.wait()
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        timer.cancel()
    return code, last, timed_out.is_set()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the hook's own session (start_new_session), started here
    except ProcessLookupError:
        pass


def run_hook(hook: Hook, group: Group, env: dict[str, str], root: Path, options: SshOptions, notify: Notify,
             many: bool) -> None:
    """One hook: here (in ``root``), or on each host of ``group`` (of its roles) over ssh, in ``<path>/current`` (in
    ``<path>`` before the first deploy). Its output is shown line by line; a failure is a WorkFailed naming it."""
    if hook.where is Where.LOCAL:
        notify(f"hook {env['CHOPS_DEPLOY_STAGE']}: {hook.label()}")
        code, last, timed_out = _stream(list(hook.argv), root, env, hook.timeout, notify)
        _hook_result(hook, code, last, timed_out, "here")
        return
    for t in group.targets:
        if hook.roles and not set(hook.roles) & set(t.roles):
            continue
        prefix = f"{t.host}: " if many else ""
        notify(f"{prefix}hook {env['CHOPS_DEPLOY_STAGE']}: {hook.label()}")
        assignments = [f"{k}={v}" for k, v in {**env, "CHOPS_DEPLOY_HOST": t.host, "CHOPS_DEPLOY_PATH": t.path}.items()]
        command = (f"cd {quote_command([t.path + '/current'])} 2>/dev/null || cd {quote_command([t.path])} 2>/dev/null"
                   f" || cd; exec {quote_command(['env', *assignments, *hook.argv])}")
        remote = Remote(t, options)
        try:
            done = remote.run(command, timeout=hook.timeout, what=f"the hook {hook.label()}")
        except WorkFailed as exc:
            timed_out = "did not finish within" in exc.message
            _hook_result(hook, 1, exc.message, timed_out, t.host)
            return
        finally:
            remote.close()
        for line in (as_text(done.stdout) + as_text(done.stderr)).splitlines():
            if line.strip():
                notify(f"{prefix}  | {line.rstrip()}")
        _hook_result(hook, done.returncode, last_line(done.stderr) or last_line(done.stdout), False, t.host)


def _hook_result(hook: Hook, code: int, last: str, timed_out: bool, where: str) -> None:
    if timed_out:
        raise WorkFailed(f"the hook {hook.label()} did not finish within {hook.timeout:g}s on {where}",
                         hint="raise its timeout in config/deploy.toml")
    if code != 0:
        raise WorkFailed(f"the hook {hook.label()} failed on {where} (exit {code})" + (f": {last}" if last else ""))


# --- the rollout ------------------------------------------------------------------------------------------------------

class Rollout:
    """One deploy over a fleet: hooks, batches, the stop at the first failure and the way back (see the module)."""

    def __init__(self, settings, fleet: Fleet, source: Source, options: SshOptions, notify: Notify, *,
                 force: bool = False, wait: float = 0.0, parallel: int | None = None, canary: int | None = None,
                 rollback_on_failure: bool | None = None):
        self.settings, self.fleet, self.source, self.options = settings, fleet, source, options
        self.notify, self.force, self.wait = notify, force, wait
        self.parallel, self.rollback_on_failure = parallel, rollback_on_failure
        self.batches = rollout_order(fleet, parallel, canary)
        self.reports = {t: HostReport(t, b.number) for b in self.batches for t in b.targets}
        self.errors: dict[Target, BaseException] = {}
        self.many = len(self.reports) > 1

    def prefix(self, target: Target) -> str:
        return f"{target.host}: " if self.many else ""

    def run(self) -> list[Outcome]:
        """Before hooks, the batches, the way back after a failure, after hooks. Returns every host's Outcome, or
        raises once the fleet is as consistent as it can be made (KeyboardInterrupt again after an interrupt)."""
        self._hooks("before")
        interrupted = False
        try:
            for batch in self.batches:
                if self.many:
                    self.notify(batch.label())
                jobs = [(t, self._deploy_job(t)) for t in batch.targets]
                results, interrupted = run_many(jobs, batch.parallel, self.notify)
                for target, result in results:
                    self._record(target, result)
                if interrupted or self._failed():
                    break
        except KeyboardInterrupt:  # between two hosts: nothing of a host half done
            interrupted = True
        if interrupted or self._failed():
            self._undo()
        result = "interrupted" if interrupted else "failed" if self._failed() else "ok"
        after = self._hooks("after", result)
        if interrupted:
            self.notify(f"interrupted; {self.summary()}")
            raise KeyboardInterrupt
        if self._failed():
            raise self._failure(after)
        if after:
            failure = WorkFailed(f"deployed, but {after}", hint="the release is current and healthy on every host")
            failure.details = self.as_dict()
            raise failure
        return [r.outcome for r in self.reports.values() if r.outcome is not None]

    def as_dict(self) -> dict[str, Any]:
        return {"batches": [b.as_dict() for b in self.batches], "hosts": [r.as_dict() for r in self.reports.values()]}

    def _failed(self) -> list[HostReport]:
        return [r for r in self.reports.values() if r.result in (HostResult.FAILED, HostResult.INTERRUPTED)]

    def _deploy_job(self, target: Target) -> Callable[[], Outcome]:
        def job() -> Outcome:
            return with_lock_wait(self.settings, target, self.options, self.notify, self.wait, self.prefix(target),
                                  lambda: Deployer(self.settings, target, self.source, self.options, self.notify,
                                                   self.force, self.prefix(target)).deploy())
        return job

    def _record(self, target: Target, result: Any) -> None:
        report = self.reports[target]
        if isinstance(result, Outcome):
            report.outcome = result
            report.result = {Result.NO_OP: HostResult.NO_OP, Result.REVERIFIED: HostResult.REVERIFIED}.get(
                result.result, HostResult.DEPLOYED)
            return
        self.errors[target] = result
        report.error = error_line(result)
        report.result = HostResult.INTERRUPTED if isinstance(result, KeyboardInterrupt) else HostResult.FAILED

    def _undo(self) -> None:
        """Roll back every host this rollout switched (where its target says so and it had a release before)."""
        switched = [r for r in self.reports.values() if r.result is HostResult.DEPLOYED]
        jobs = []
        for report in switched:
            t = report.target
            group = next(g for g in self.fleet.groups if t in g.targets)
            back = group.rollback_on_failure if self.rollback_on_failure is None else self.rollback_on_failure
            if not back:
                report.result, report.note = HostResult.LEFT, ("--no-rollback" if self.rollback_on_failure is False
                                                               else "rollback_on_failure is off")
            elif report.outcome.previous is None:
                report.result, report.note = HostResult.LEFT, "it had no release before"
            else:
                jobs.append((t, self._rollback_job(t, report.outcome.previous)))
        if not jobs:
            return
        self.notify(f"rolling back {_count(len(jobs), 'host')} this rollout switched, so the fleet does not stay on "
                    f"mixed versions: {', '.join(t.host for t, _ in jobs)}")
        parallel = self.parallel or max(g.parallel for g in self.fleet.groups)
        results, _ = run_many(jobs, parallel, self.notify, stop=lambda r: False)
        for target, result in results:
            report = self.reports[target]
            if isinstance(result, Outcome):
                report.result, report.note = HostResult.ROLLED_BACK, f"back to {result.release}"
            else:
                report.result, report.note = HostResult.LEFT, f"its rollback failed: {error_line(result)}"

    def _rollback_job(self, target: Target, to: str) -> Callable[[], Outcome]:
        prefix = self.prefix(target)

        def say(line: str) -> None:
            self.notify(prefix + line)

        def attempt() -> Outcome:
            return Deployer.for_rollback(self.settings, target, self.options, say, to=to).rollback()

        return lambda: with_lock_wait(self.settings, target, self.options, self.notify, self.wait, prefix, attempt)

    def _hooks(self, stage: str, result: str | None = None) -> str | None:
        """Run the ``stage`` hooks of every target. A failing before hook raises (nothing was deployed); a failing
        after hook is said and returned (the rollout is over)."""
        for g in self.fleet.groups:
            for hook in g.before if stage == "before" else g.after:
                env = {"CHOPS_DEPLOY_STAGE": stage, "CHOPS_DEPLOY_TARGET": g.name,
                       "CHOPS_DEPLOY_HOSTS": ",".join(t.host for t in g.targets),
                       "CHOPS_DEPLOY_REVISION": self.source.revision}
                if result:
                    env["CHOPS_DEPLOY_RESULT"] = result
                try:
                    run_hook(hook, g, env, self.settings.root, self.options, self.notify, self.many)
                except ChopsError as exc:
                    if stage == "before":
                        raise WorkFailed(f"{exc.message}; nothing was deployed", hint=exc.hint) from None
                    self.notify(f"after hook failed: {exc.line()}")
                    return exc.message
        return None

    def summary(self) -> str:
        """Each result with its hosts, e.g. ``deployed: a; rolled back: b; not attempted: c, d``."""
        by: dict[HostResult, list[str]] = {}
        for r in self.reports.values():
            by.setdefault(r.result, []).append(r.target.host + (f" ({r.note})" if r.result is HostResult.LEFT
                                                               and r.note else ""))
        return "; ".join(f"{result}: {', '.join(hosts)}" for result, hosts in by.items())

    def _failure(self, after: str | None) -> ChopsError:
        first = self._failed()[0]
        exc = self.errors[first.target]
        if not self.many and isinstance(exc, ChopsError):  # one host: its own error, as it was
            if after:
                exc.message += f"; and {after}"
            if getattr(exc, "details", None) is None:
                exc.details = self.as_dict()
            return exc
        message = exc.message if isinstance(exc, ChopsError) else error_line(exc)
        if self.many and first.target.host not in message:
            message = f"{first.target.host}: {message}"
        if self.many:
            message += f" [{self.summary()}]"
        if after:
            message += f"; and {after}"
        changed = any(r.result in (HostResult.DEPLOYED, HostResult.ROLLED_BACK, HostResult.LEFT, HostResult.FAILED)
                      for r in self.reports.values() if r is not first)
        kind = BadInput if isinstance(exc, BadInput) and not changed else WorkFailed
        failure = kind(message, hint=getattr(exc, "hint", None))
        failure.details = self.as_dict()
        return failure


def with_lock_wait(settings, target: Target, options: SshOptions, notify: Notify, wait: float, prefix: str,
                   attempt: Callable[[], T]) -> T:
    """``attempt()``; while it finds the deploy lock held by someone else, wait (up to ``wait`` seconds in all) for
    the lock to be free or stale, polling it quietly, and try again."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return attempt()
        except LockHeld as held:
            left = deadline - time.monotonic()
            if left <= 0:
                if wait:
                    held.message += f" (still held after --wait {wait:g})"
                raise
            notify(f"{prefix}waiting up to {left:.0f}s for the deploy lock (--wait): held by "
                   f"{describe_holder(held.holder)}")
            remote = Remote(target, options)
            try:
                _until_free(remote, settings.get("deploy.stale_lock_after"), deadline)
            finally:
                remote.close()


def _until_free(remote: Remote, stale_after: float, deadline: float) -> None:
    while time.monotonic() < deadline:
        state, _ = lock_state(gather(remote, tag=False).raw.get("lock"), stale_after)
        if state is not LockState.HELD:
            return
        pause(max(0.0, min(2.0, deadline - time.monotonic())))


class Terminated(KeyboardInterrupt):
    """SIGTERM (``inv proc.kill`` of a deploy): stopped and cleaned up like Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _with_sigterm(body: Callable[[], T]) -> T:
    if threading.current_thread() is not threading.main_thread():
        return body()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return body()
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- the commands -----------------------------------------------------------------------------------------------------

def deploy(settings, fleet: Fleet, source: Source, options: SshOptions, notify: Notify, force: bool = False,
           wait: float = 0.0, parallel: int | None = None, canary: int | None = None,
           rollback_on_failure: bool | None = None) -> list[Outcome]:
    """Deploy to every host of ``fleet`` (see :class:`Rollout`); the Outcome of each host, or an error naming where
    each host ended (its ``details``: the batches and every host's result)."""
    rollout = Rollout(settings, fleet, source, options, notify, force=force, wait=wait, parallel=parallel,
                      canary=canary, rollback_on_failure=rollback_on_failure)
    return _with_sigterm(rollout.run)


def rollback(settings, fleet: Fleet, options: SshOptions, notify: Notify, to: str | None = None, wait: float = 0.0,
             parallel: int | None = None, with_migrations: bool = False) -> list[Outcome]:
    """Roll every host of ``fleet`` back (``parallel`` at once): each to ``to`` or its newest healthy earlier release
    (``with_migrations``: undoing first the migrations that release lacks). Every host is tried; a failure of one is
    reported once all were tried."""
    many = len(fleet.targets) > 1
    hosts = fleet.targets

    def job(t: Target) -> Callable[[], Outcome]:
        prefix = f"{t.host}: " if many else ""

        def attempt() -> Outcome:
            return Deployer.for_rollback(settings, t, options, lambda line: notify(prefix + line), to=to,
                                         with_migrations=with_migrations).rollback()

        return lambda: with_lock_wait(settings, t, options, notify, wait, prefix, attempt)

    size = parallel or max(g.parallel for g in fleet.groups)
    results, interrupted = _with_sigterm(lambda: run_many([(t, job(t)) for t in hosts], size, notify,
                                                          stop=lambda r: False))
    if interrupted:
        raise KeyboardInterrupt
    failed = [(t, r) for t, r in results if not isinstance(r, Outcome)]
    if failed:
        t, first = failed[0]
        if not many:
            raise first
        done = [t.host for t, r in results if isinstance(r, Outcome)]
        kind = BadInput if isinstance(first, BadInput) and not done and len(failed) == 1 else WorkFailed
        raise kind(f"{t.host}: {first.message} [rolled back: {', '.join(done) or 'none'}; failed: "
                   f"{', '.join(t.host for t, _ in failed)}]", hint=first.hint)
    return [r for _, r in results]


def each_host(fleet: Fleet, read: Callable[[Target], T], notify: Notify,
              parallel: int = 8) -> list[tuple[Target, T | ChopsError]]:
    """``read(target)`` of every host (read-only work: a plan, a status), ``parallel`` at once, in order; a host that
    cannot be read gives its error."""
    results, interrupted = run_many([(t, (lambda t=t: read(t))) for t in fleet.targets], parallel, notify,
                                    stop=lambda r: False)
    if interrupted:
        raise KeyboardInterrupt
    return results
