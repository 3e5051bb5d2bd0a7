"""What a deploy tells: its steps as they run (step n of N, timed, one line each on stderr), the audit line it leaves
on the target, the health verdict of ``current`` (the gate a deploy and a rollback pass, and what ``deploy.status``
shows) and the Outcome it returns."""

from __future__ import annotations

import dataclasses
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ops.core.errors import BadInput, ChopsError
from ops.core.process import user_name
from ops.core.timefmt import stamp
from ops.deploy.actions import Action, Result
from ops.deploy.targets import Target
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
            mark = "" if step.status == "ok" else " FAILED"
            if not (step.status == "failed" and isinstance(sys.exc_info()[1], BadInput)):  # its one line says it all
                self.notify(f"{self.prefix}[{step.number}/{len(self.items)}] {step.name}{mark}: {step.detail} "
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


def health(remote: Remote, target: Target) -> dict[str, Any]:
    """``proc.check --json`` of ``current`` on the target: the verdict, and the failed checks' reasons."""
    done, verdict = remote.inv_json(f"{target.path}/current", target.environment, "proc.check", timeout=600,
                                    check=False)
    if not isinstance(verdict, dict) or "healthy" not in verdict:
        return {"healthy": False, "failed": [f"proc.check did not run: {last_line(done.stderr) or done.returncode}"],
                "summary": "proc.check did not run", "checks": []}
    failed = [f"{c['name']}: {c['reason']}" for c in verdict.get("checks", []) if c.get("status") == "fail"]
    healthy = bool(verdict["healthy"]) and done.returncode == 0
    summary = (f"{'healthy' if healthy else 'UNHEALTHY'}: {verdict.get('passed', 0)} passed, "
               f"{verdict.get('warnings', 0)} warning(s), {verdict.get('failed', 0)} failed")
    return {"healthy": healthy, "failed": failed, "summary": summary, "checks": verdict.get("checks", [])}


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
