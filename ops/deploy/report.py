"""What a deploy tells: its steps as they run (step n of N, timed, one line each on stderr), the audit line it leaves
on the target, the health verdict of ``current`` (the gate a deploy and a rollback pass, and what ``deploy.status``
shows) and the Outcome it returns."""

from __future__ import annotations

import dataclasses
import shlex
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ops.core.errors import BadInput, ChopsError
from ops.core.output import plural
from ops.core.process import user_name
from ops.core.threads import stop_point
from ops.core.timefmt import stamp
from ops.deploy.actions import Action, Result
from ops.deploy.targets import Target, read_targets
from ops.deploy.transport import Notify, Remote, last_line

STEPS = ("preflight and lock", "sync", "provision", "migrate", "test", "switch and schedule", "verify")
ROLLBACK_STEPS = ("preflight and lock", "switch and schedule", "verify")


@dataclass
class Step:
    number: int
    name: str
    status: str = "pending"  # ok | skipped | failed
    seconds: float = 0.0
    detail: str = ""


class Steps:
    """Step n of N, each timed, one line per step on stderr."""

    def __init__(self, names: Iterable[str], notify: Notify, prefix: str = ""):
        self.items = [Step(i + 1, n) for i, n in enumerate(names)]
        self.notify, self.prefix = notify, prefix
        self.started = time.monotonic()

    def __getitem__(self, name: str) -> Step:
        return next(s for s in self.items if s.name == name)

    def run(self, name: str, body: Callable[[], str]) -> str:
        stop_point()  # a fleet's host asked to stop does not start its next step
        step = self[name]
        began = time.monotonic()
        try:
            step.detail = body() or ""
            step.status = "ok"
            return step.detail
        except BaseException as exc:
            step.status = "failed"
            step.detail = exc.line() if isinstance(exc, ChopsError) else (str(exc) or type(exc).__name__)
            raise
        finally:
            step.seconds = round(time.monotonic() - began, 2)
            failed = sys.exc_info()[1]
            if step.status == "ok":
                self.notify(f"{self.prefix}[{step.number}/{len(self.items)}] {step.name}: {step.detail} "
                            f"({step.seconds:.1f}s)")
            elif not isinstance(failed, BadInput):  # a ChopsError's one line is printed once, at the end
                said = "" if isinstance(failed, ChopsError) else f": {step.detail}"
                self.notify(f"{self.prefix}[{step.number}/{len(self.items)}] {step.name} FAILED{said} "
                            f"({step.seconds:.1f}s)")

    def skip(self, names: Iterable[str], why: str) -> None:
        names = list(names)
        for name in names:
            self[name].status, self[name].detail = "skipped", why
        if names:
            first, last = self[names[0]].number, self[names[-1]].number
            span = f"{first}-{last}" if last != first else f"{first}"
            self.notify(f"{self.prefix}[{span}/{len(self.items)}] {', '.join(names)}: skipped, {why}")

    def as_list(self) -> list[dict[str, Any]]:
        return [{"step": s.name, "status": s.status, "seconds": s.seconds, "detail": s.detail} for s in self.items]

    @property
    def seconds(self) -> float:
        return round(time.monotonic() - self.started, 2)


def who() -> str:
    return f"{user_name()}@{socket.gethostname()}"


def audit_record(action: Action, target: Target, result: Result, steps: Steps | None = None, frm: str | None = None,
                 to: str | None = None, revision: str | None = None, error: str | None = None,
                 note: str | None = None) -> dict[str, Any]:
    """One line of the target's ``audit.log``: when, who, what, from which release to which, how it ended."""
    return {"at": stamp(), "who": who(), "action": action, "host": target.host, "from": frm, "to": to,
            "revision": revision, "result": result, "seconds": steps.seconds if steps else None,
            "steps": [f"{s.name}:{s.status}:{s.seconds:g}" for s in steps.items] if steps else [],
            "error": error, "note": note}


def health(remote: Remote, target: Target, strict: bool = True, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """``proc.check --json`` of ``current`` on the target: the verdict, the failed checks' reasons and the warnings.
    ``strict`` (a deploy's gate): a check that could not run ("not checked: …") counts as failed, not as a warning."""
    done, verdict = remote.inv_json(f"{target.path}/current", target.environment, "proc.check", timeout=600,
                                    extra_env=extra_env, check=False)
    if not isinstance(verdict, dict) or "healthy" not in verdict:
        return {"healthy": False, "failed": [f"proc.check did not run: {last_line(done.stderr) or done.returncode}"],
                "warnings": [], "summary": "proc.check did not run", "checks": []}
    checks = verdict.get("checks", [])
    unrun = [c for c in checks if strict and c.get("status") == "warn" and str(c.get("reason", "")).startswith("not checked")]
    failed = [f"{c['name']}: {c['reason']}" for c in checks if c.get("status") == "fail" or c in unrun]
    warnings = [f"{c['name']}: {c['reason']}" for c in checks if c.get("status") == "warn" and c not in unrun]
    healthy = bool(verdict["healthy"]) and done.returncode == 0 and not unrun
    summary = (f"{'healthy' if healthy else 'UNHEALTHY'}: {verdict.get('passed', 0)} passed, "
               f"{plural(len(warnings), 'warning')}, {verdict.get('failed', 0) + len(unrun)} failed"
               + (f" ({len(unrun)} could not run)" if unrun else ""))
    return {"healthy": healthy, "failed": failed, "warnings": warnings, "summary": summary, "checks": checks}


def hint_flags(target: Target, root=None) -> str:
    """The flags that name ``target`` again in a hint: ``--target NAME`` or ``--host H``, plus each of user, port,
    path and environment that differs from what that name alone gives (so a copied hint reaches the same place); a
    user or port ssh decides (~/.ssh/config) is left to it again."""
    config = read_targets(root) if root else read_targets()
    base: dict[str, Any] = {"user": None, "port": 22, "path": None, "environment": "prod", **config["defaults"]}
    if target.name and target.name in config["targets"]:
        base.update({k: v for k, v in config["targets"][target.name].items() if k in base})
        out = [f"--target {target.name}"]
        if len(_hosts_of(config["targets"][target.name])) > 1:
            out = [f"--host {target.host}"] + [f"--{k} {shlex.quote(str(getattr(target, k)))}"
                                               for k in ("user", "port", "path", "environment")
                                               if k not in target.implicit]
            return " ".join(out)
    else:
        out = [f"--host {target.host}"]
    for key in ("user", "port", "path", "environment"):
        if key in target.implicit:
            continue
        value = getattr(target, key)
        if base.get(key) is None or str(base[key]) != str(value):
            out.append(f"--{key} {shlex.quote(str(value))}")
    return " ".join(out)


def _hosts_of(body: dict[str, Any]) -> list[Any]:
    listed = body.get("hosts")
    return listed if isinstance(listed, list) else [body.get("host")]


@dataclass
class Outcome:
    target: Target
    action: Action
    result: Result  # deployed | no-op | reverified | rolled back (a failure raises)
    release: str | None
    previous: str | None
    steps: list[dict[str, Any]]
    seconds: float
    health: dict[str, Any] | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["target"] = self.target.as_dict()
        return d
