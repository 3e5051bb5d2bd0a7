"""Alerts: when a run or a backfill ends with failed runs, the user's ``[alerts] on_failure`` command is told.

The command runs once per invocation of ``inv pipeline.run`` or ``inv backfill`` (a cron run is one of those), through
``/bin/sh -c`` exactly as the user wrote it, in the project root, for at most ``alerts.timeout`` seconds. It gets the
facts of the failure twice:

* on stdin, as one JSON object: ``test``, ``project`` (root, env, database), ``host``, ``command`` (the command line
  that failed), ``invocation`` (``pipeline.run`` or ``backfill``), ``count``, ``summary`` and ``failures``: one
  object per failed run with ``pipeline``, ``day``, ``run_id``, ``status`` (``failed`` or ``killed``), ``signal``
  (SIGTERM, SIGINT: set when a signal ended it), ``error``, ``log``, ``host``, ``trigger``, ``attempt``, ``plan_id``,
  ``started_at`` and ``finished_at``;
* as ``CHOPS_ALERT_*`` variables: those of the first failure (``PIPELINE``, ``DAY``, ``RUN_ID``, ``STATUS``,
  ``SIGNAL``, ``ERROR``, ``LOG``, ``HOST``, ``TRIGGER``, ``ATTEMPT``, ``PLAN_ID``, ``STARTED``, ``FINISHED``), and
  ``COUNT``, ``SUMMARY``, ``COMMAND``, ``INVOCATION``, ``PROJECT``, ``ENV``, ``TEST`` (``1`` for ``inv
  pipeline.alert-test``).

A run refused before an attempt began (an upstream that has not succeeded, inputs missing) is a failure too; it has
no run id. Bad input (exit 2) alerts only for a cron run: a person at a terminal sees it. No secret reaches the
command: the database URL is not among the facts, and its password is blanked from every error text.

The alert never changes the invocation's outcome: a command that fails, cannot start or times out (it is killed,
with its process group) is one line on stderr and in the failed run's log, and the run's own error and exit code
follow as they would have.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Callable, Iterable, Iterator, Mapping
from urllib.parse import quote

from ops.clickhouse.client import connect
from ops.core.errors import BadInput, ChopsError, ConfigError
from ops.core.output import info
from ops.core.process import create_time
from ops.core.timefmt import aware, stamp, utc_now
from ops.core.urls import target
from ops.pipelines import ledger
from ops.pipelines.definition import load_pipelines, parse_day
from ops.pipelines.interrupt import Interrupted, Stopped

ENV_PREFIX = "CHOPS_ALERT_"
# The facts of one failure, and the variable each is also given as.
FIELDS = {"pipeline": "PIPELINE", "day": "DAY", "run_id": "RUN_ID", "status": "STATUS", "signal": "SIGNAL",
          "error": "ERROR", "log": "LOG", "host": "HOST", "trigger": "TRIGGER", "attempt": "ATTEMPT",
          "plan_id": "PLAN_ID", "started_at": "STARTED", "finished_at": "FINISHED"}
# Variables that may hold the database password: not passed on to the command.
_SECRET_VARIABLES = frozenset({"CLICKHOUSE_URL", "CHOPS_CLICKHOUSE__URL"})
_SHOWN = 2000  # characters of the command's output kept (alert-test prints them)


@dataclass(frozen=True)
class Sent:
    """How the alert command ended: ``exit_code`` (None when it timed out or could not start), its output."""

    command: str
    exit_code: int | None
    seconds: float
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    problem: str = ""  # why it could not start

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def line(self) -> str:
        """One line saying how it went."""
        if self.ok:
            return f"alert sent: the on_failure command exited 0 in {self.seconds:.1f}s"
        if self.problem:
            return f"alert not sent: the on_failure command could not start: {self.problem}"
        if self.timed_out:
            return f"alert not sent: the on_failure command timed out after {self.seconds:.0f}s and was killed"
        last = _last_line(self.stderr) or _last_line(self.stdout)
        return f"alert not sent: the on_failure command exited {self.exit_code}" + (f": {last}" if last else "")

    def as_dict(self) -> dict[str, Any]:
        return {"command": self.command, "exit_code": self.exit_code, "ok": self.ok, "seconds": round(self.seconds, 3),
                "timed_out": self.timed_out, "problem": self.problem or None, "stdout": self.stdout,
                "stderr": self.stderr}


# --- settings -------------------------------------------------------------------------------------------------------

def command_of(settings) -> str:
    """The ``on_failure`` command, or "" when none is configured."""
    return str(settings.get("alerts.on_failure") or "").strip()


def timeout_of(settings) -> float:
    value = settings.get("alerts.timeout")
    if not isinstance(value, (int, float)) or not 0 < float(value) < float("inf"):
        raise ConfigError(f"alerts.timeout must be a positive number of seconds, got {value!r} "
                          f"({settings.sources.get('alerts.timeout', 'config')})")
    return float(value)


# --- the facts ------------------------------------------------------------------------------------------------------

def _secrets(settings) -> list[str]:
    """Texts that must never reach the command: the database password (and its URL-encoded form)."""
    try:
        password = target(settings).password or ""
    except ChopsError:
        password = ""
    return [s for s in {password, quote(password, safe="")} if len(s) >= 3]


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "********")
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    return value


def _text(value: Any) -> Any:
    if isinstance(value, datetime):
        return aware(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def failure(pipeline: str, day: Any, error: str, *, status: str = "failed", run_id: str = "", log: str = "",
            trigger: str = "", attempt: int = 0, plan_id: str = "", signal_name: str = "", host: str | None = None,
            started_at: Any = None, finished_at: Any = None) -> dict[str, Any]:
    """The facts of one failed run (see the module's doc)."""
    return {"pipeline": pipeline, "day": _text(day), "run_id": run_id, "status": status, "signal": signal_name,
            "error": error, "log": log, "host": host or socket.gethostname(), "trigger": trigger, "attempt": attempt,
            "plan_id": plan_id, "started_at": _text(started_at), "finished_at": _text(finished_at)}


def from_attempt(row: Mapping[str, Any], signal_name: str = "") -> dict[str, Any]:
    """The facts of a failed run from its ledger row (``ledger.attempts``)."""
    return failure(row["pipeline"], row["partition"], row.get("error") or "", status=str(row["status"]),
                   run_id=str(row["run_id"]), log=row.get("log_path") or "", trigger=str(row.get("trigger") or ""),
                   attempt=int(row.get("attempt") or 0), plan_id=row.get("plan_id") or "", signal_name=signal_name,
                   host=row.get("host") or None, started_at=row.get("started_at"), finished_at=row.get("finished_at"))


def payload(settings, failures: list[dict[str, Any]], *, invocation: str, command: str,
            test: bool = False) -> dict[str, Any]:
    """The JSON object the command reads on stdin (secrets blanked)."""
    by_status: dict[str, int] = {}
    for f in failures:
        by_status[f["status"]] = by_status.get(f["status"], 0) + 1
    first = failures[0] if failures else {}
    counted = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
    summary = (f"{'TEST: ' if test else ''}{invocation}: {counted} on {socket.gethostname()}; first: "
               f"{first.get('pipeline')} {first.get('day')}: {_first_line(first.get('error', ''))}")
    data = {"test": test, "project": {"root": str(settings.root), "env": settings.env,
                                      "database": _database(settings)},
            "host": socket.gethostname(), "invocation": invocation, "command": command, "sent_at": stamp(),
            "count": len(failures), "summary": summary, "failures": failures}
    return _scrub(data, _secrets(settings))


def _database(settings) -> str:
    try:
        return target(settings).database
    except ChopsError:
        return ""


def environment(data: Mapping[str, Any]) -> dict[str, str]:
    """The ``CHOPS_ALERT_*`` variables of a payload: the first failure's facts, and the invocation's."""
    first = data["failures"][0] if data["failures"] else {}
    env = {ENV_PREFIX + name: _env_text(first.get(key)) for key, name in FIELDS.items()}
    env.update({f"{ENV_PREFIX}COUNT": str(data["count"]), f"{ENV_PREFIX}SUMMARY": data["summary"],
                f"{ENV_PREFIX}COMMAND": data["command"], f"{ENV_PREFIX}INVOCATION": data["invocation"],
                f"{ENV_PREFIX}PROJECT": data["project"]["root"], f"{ENV_PREFIX}ENV": data["project"]["env"],
                f"{ENV_PREFIX}TEST": "1" if data["test"] else "0"})
    return env


def _env_text(value: Any) -> str:
    return "" if value is None else str(value).replace("\0", "")


# --- sending --------------------------------------------------------------------------------------------------------

def send(settings, data: dict[str, Any], command: str | None = None) -> Sent:
    """Run the alert command with ``data`` on stdin and in its environment. Never raises for the command's sake."""
    command = command if command is not None else command_of(settings)
    timeout = timeout_of(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX) and k not in _SECRET_VARIABLES}
    env.update(environment(data))
    started = time.monotonic()
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=str(settings.root), env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        return Sent(command, None, time.monotonic() - started, problem=exc.strerror or str(exc))
    try:
        out, err = proc.communicate(json.dumps(data, default=str).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        return Sent(command, None, time.monotonic() - started, _decode(out), _decode(err), timed_out=True)
    return Sent(command, proc.returncode, time.monotonic() - started, _decode(out), _decode(err))


def _kill_group(proc: subprocess.Popen) -> None:
    """The command and what it started (its own session: ``start_new_session``) end, so no pipe stays open."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _decode(raw: bytes | None) -> str:
    text = (raw or b"").decode(errors="replace")
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def _first_line(text: str) -> str:
    return (str(text or "").strip().splitlines() or [""])[0][:300]


def notify(settings, failures: list[dict[str, Any]], *, invocation: str, command: str | None = None,
           say: Callable[[str], None] = info) -> Sent | None:
    """Send the alert of ``failures`` when a command is configured (else None): one line on stderr and in each
    failed run's log says how it went. Whatever happens here, nothing is raised."""
    try:
        if not failures or not command_of(settings):
            return None
        data = payload(settings, failures, invocation=invocation, command=command or invocation_line())
        sent = send(settings, data)
    except Exception as exc:  # noqa: BLE001 - an alert must never hide the run's own error
        sent = Sent(command_of(settings), None, 0.0, problem=f"{type(exc).__name__}: {exc}")
    say(sent.line())
    for f in failures:
        _log_line(f.get("log"), sent.line())
    return sent


def _log_line(path: str | None, line: str) -> None:
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{utc_now():%Y-%m-%d %H:%M:%S} ALERT {line}\n")
    except OSError:
        pass  # the log is gone or its disk is full: the stderr line stands


def invocation_line() -> str:
    """This process's command line, as typed (``inv pipeline.run events --date 2026-01-01``)."""
    args = list(sys.argv)
    if args:
        args[0] = os.path.basename(args[0])
    return " ".join(shlex.quote(a) for a in args)


# --- what failed ----------------------------------------------------------------------------------------------------

@contextmanager
def on_run_failure(settings, name: str, day_text: str, trigger: str = "manual", dry_run: bool = False
                   ) -> Iterator[None]:
    """Around ``inv pipeline.run``: when the body fails (a failed or killed run, or a refusal), alert, then let the
    error go on unchanged."""
    try:
        yield
    except (ChopsError, Interrupted) as exc:
        if not dry_run and (not isinstance(exc, BadInput) or trigger == "cron"):
            facts = _run_facts(settings, name, day_text, trigger, exc, lambda: _day(settings, name, day_text))
            notify(settings, [facts], invocation="pipeline.run")
        raise


def _day(settings, name: str, day_text: str) -> date:
    """The day a run of ``name`` meant (``yesterday`` in the pipeline's time zone), as the runner parses it."""
    p = load_pipelines(settings, only=[name]).get(name)
    return parse_day(day_text, p.tz(), allow_future=True)


def _run_facts(settings, name: str, day_text: str, trigger: str, exc: BaseException,
               day_of: Callable[[], Any] | None) -> dict[str, Any]:
    """This run's attempt in the ledger, when it began one; else the refusal's facts."""
    signal_name = _signal_of(exc)
    message = exc.line() if isinstance(exc, ChopsError) else getattr(exc, "message", str(exc))
    day: Any = day_text
    try:
        day = day_of() if day_of else day_text
        row = _newest_attempt_of_this_process(settings, name, day) if isinstance(day, date) else None
    except Exception:  # noqa: BLE001 - the facts we have will do
        row = None
    if row is not None:
        facts = from_attempt(row, signal_name)
        facts["error"] = facts["error"] or message
        return facts
    return failure(name, day, message, status="killed" if signal_name else "failed", trigger=trigger,
                   signal_name=signal_name, finished_at=utc_now())


def _signal_of(exc: BaseException) -> str:
    if isinstance(exc, Interrupted):
        return exc.signal
    if isinstance(exc, Stopped):
        try:
            return signal.Signals(exc.exit_code - 128).name
        except ValueError:
            return ""
    return ""


def _newest_attempt_of_this_process(settings, name: str, day: date) -> dict[str, Any] | None:
    db = connect(settings)
    try:
        tries = ledger.attempts(db, name, day, limit=1)
    finally:
        db.close()
    started = create_time(os.getpid())
    if not tries or tries[0]["pid"] != os.getpid():
        return None
    if started is not None and aware(tries[0]["started_at"]).timestamp() < started - 1:
        return None
    return tries[0] if str(tries[0]["status"]) in ledger.FAILURES else None


def backfill_failures(db, outcomes: Iterable[Any], plan_id: str = "", limit: int = 50) -> list[dict[str, Any]]:
    """The facts of a backfill's failed and killed partitions (their ledger attempts under the plan), oldest day
    first; blocked and not-started ones are counted in the summary of the backfill's own output, not alerted."""
    bad = [o for o in outcomes if str(o.status) in ("failed", "killed")]
    facts = []
    for o in sorted(bad, key=lambda o: (o.day, o.pipeline))[:limit]:
        row = None
        try:
            tries = ledger.attempts(db, o.pipeline, o.day, limit=1)
            row = tries[0] if tries and (not plan_id or tries[0].get("plan_id") == plan_id) else None
        except Exception:  # noqa: BLE001 - the outcome's own facts will do
            pass
        if row is not None and str(row["status"]) in ledger.FAILURES:
            facts.append(from_attempt(row, o.signal or ""))
        else:
            facts.append(failure(o.pipeline, o.day, o.error or "", status=str(o.status), trigger="backfill",
                                 plan_id=plan_id, signal_name=o.signal or ""))
    if len(bad) > limit:
        facts[-1]["error"] += f" (and {len(bad) - limit} more failures not listed)"
    return facts


def after_backfill(settings, db, plan, outcomes: list[Any]) -> Sent | None:
    """After a backfill: alert when any partition failed or was killed."""
    try:
        facts = backfill_failures(db, outcomes, plan.id)
    except Exception as exc:  # noqa: BLE001 - never hide the backfill's own result
        facts = [failure("?", plan.start, f"the failures could not be read: {exc}", plan_id=plan.id)]
        if not any(str(o.status) in ("failed", "killed") for o in outcomes):
            facts = []
    return notify(settings, facts, invocation="backfill")


# --- a test alert ---------------------------------------------------------------------------------------------------

def sample_payload(settings, pipeline: str = "example") -> dict[str, Any]:
    """Realistic facts, marked as a test: a failed run of ``pipeline`` yesterday."""
    day = (utc_now() - timedelta(days=1)).date()
    log = settings.path("paths.logs") / "pipelines" / pipeline / f"{day}_test.log"
    now = utc_now()
    facts = failure(pipeline, day, "TEST: this is a test alert from inv pipeline.alert-test; no run failed",
                    run_id=str(uuid.uuid4()), log=str(log), trigger="cron", attempt=1,
                    started_at=now - timedelta(seconds=42), finished_at=now)
    return payload(settings, [facts], invocation="pipeline.run", test=True,
                   command=f"inv pipeline.run {pipeline} --date yesterday --trigger cron")


def require_command(settings) -> str:
    command = command_of(settings)
    if not command:
        raise BadInput("no alert command is configured, so there is nothing to test",
                       hint=f"set [alerts] on_failure = \"...\" in config/{settings.env}.toml (or "
                            "CHOPS_ALERTS__ON_FAILURE in .env); it gets the facts as JSON on stdin")
    return command
