"""chops' own processes as their pid files show them: listed, named and stopped safely.

Every chops process that does work (a pipeline run, a backfill, migrations, a deploy) writes
``<paths.var>/run/<pid>.json`` (``ops.core.pidfile``): the pid, the process's start time (to recognise a reused
pid), its command line, what it is working on and, where known, its progress. A pid file whose process is gone,
or whose pid now belongs to another process, is stale: never signalled, only cleaned (``ops.runtime.janitor``).
Whether a pid is still the process of its pid file is decided by :func:`ops.core.process.liveness`.

:func:`processes` reads them, :func:`select` says which ones a name or pid means, and :func:`kill` stops them
(SIGTERM, a grace period, SIGKILL; only processes whose pid file is still theirs).
"""

from __future__ import annotations

import difflib
import json
import os
import signal as signals
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Iterable

from ops.core.errors import BadInput
from ops.core.pidfile import run_dir
from ops.core.process import Liveness, liveness


class State(StrEnum):
    """A pid file's state: its process runs, or the file is stale (the process is gone or the pid reused)."""

    RUNNING = "running"
    STALE = "stale"


@dataclass
class Process:
    """One pid file and what is known of its process."""

    path: Path
    pid: int
    kind: str
    what: str
    since: str
    command: str
    progress: str | None
    host: str
    create_time: float | None
    state: State

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "kind": self.kind, "what": self.what, "since": self.since, "progress": self.progress,
                "command": self.command, "host": self.host, "state": self.state.value, "pid_file": str(self.path)}


def _ours(host: str | None, pid: int, create_time: float | None) -> bool:
    """Whether ``pid`` is still the process that wrote the pid file: same host, same start time, still running (a
    zombie has exited). A pid file without a start time cannot be told from a reused pid: never ours."""
    return create_time is not None and liveness(host, pid, started=create_time) is Liveness.ALIVE


def processes(settings) -> list[Process]:
    """Every pid file, with its process running or stale."""
    out = []
    directory = run_dir(settings)
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            pid = int(data["pid"])
            if pid <= 0:
                raise ValueError(pid)  # 0 and -1 would signal whole process groups: never a pid of ours
        except (OSError, ValueError, KeyError, TypeError):
            out.append(Process(path, 0, "?", "unreadable pid file", "?", "?", None, "?", None, State.STALE))
            continue
        state = State.RUNNING if _ours(data.get("host") or None, pid, data.get("create_time")) else State.STALE
        out.append(Process(path, pid, data.get("kind", "?"), data.get("what", ""), data.get("since", "?"),
                           data.get("command", "?"), data.get("progress"), data.get("host", "?"),
                           data.get("create_time"), state))
    return out


# --- which processes a name or pid means ------------------------------------------------------------------------------

# The kinds of work that write pid files (``working(settings, kind, …)``).
KINDS = ("pipeline.run", "backfill", "db.migrate", "db.rollback", "deploy")


def labels(p: Process) -> set[str]:
    """The names a process answers to: its kind, what it works on, and for a run its pipeline, for a backfill its
    plan id (``pipeline.run`` writes ``"events_ingest 2026-11-25"``, a backfill ``"plan 3f2a…"``)."""
    names = {p.kind, p.what}
    words = p.what.split()
    if p.kind == "pipeline.run" and words:
        names.add(words[0])
    if p.kind == "backfill" and len(words) == 2 and words[0] == "plan":
        names.add(words[1])
    return names


def select(settings, name: str | None = None, everything: bool = False, known: Iterable[str] = ()) -> list[Process]:
    """The running chops processes that ``name`` (a pid, a pipeline, a kind or a backfill plan id) or
    ``everything`` means. Only processes with a pid file that still belongs to them are ever returned: a pid
    that is not chops', or whose pid file is stale, is refused (``BadInput``), whoever asks."""
    if name is not None and not str(name).strip():
        name = None
    if name and everything:
        raise BadInput("name one process (--name NAME|PID) or use --all, not both")
    if not name and not everything:
        raise BadInput("name a process (--name NAME|PID) or use --all", hint="inv proc.list shows what runs")
    found = processes(settings)
    running = [p for p in found if p.state is State.RUNNING and p.pid != os.getpid()]
    if everything:
        return running
    name = str(name).strip()
    if name.lstrip("-").isdigit():
        pid = int(name)
        mine = [p for p in found if p.pid == pid]
        if not mine:
            raise BadInput(f"pid {pid} is not a chops process (no pid file); refusing to signal it",
                           hint="inv proc.list shows chops' processes")
        if not any(p.state is State.RUNNING for p in mine):
            raise BadInput(f"pid {pid} is not a chops process (its pid file is stale: the process is gone or the pid "
                           "was reused); refusing to signal it", hint="inv proc.clean removes the stale pid file")
        return [p for p in mine if p.state is State.RUNNING and p.pid != os.getpid()]
    matching = [p for p in running if name in labels(p)]
    if matching:
        return matching
    every = set(KINDS) | set(known) | {n for p in found for n in labels(p)}
    if name not in every:
        close = difflib.get_close_matches(name, sorted(every), n=3, cutoff=0.5)
        raise BadInput(f"unknown name {name!r}: not a pipeline, a kind of work or a pid",
                       hint=f"did you mean {', '.join(close)}?" if close else "inv proc.list shows what runs")
    raise BadInput(f"no running chops process is working on {name}", hint="inv proc.list shows what runs")


# --- stopping them ----------------------------------------------------------------------------------------------------

def _after_sigkill(p: Process) -> str:
    """What a SIGKILL leaves behind, and what tidies it up."""
    if p.kind == "pipeline.run":
        return ("its ledger row stays 'running' (shown as died) until the next run of that day closes it; "
                "inv proc.clean drops its staging table and clears its lock")
    if p.kind == "backfill":
        plan = p.what.split()[-1]
        return f"partitions it was running are left 'running' (shown as died); continue with: inv backfill --resume {plan}"
    if p.kind in ("db.migrate", "db.rollback"):
        return "a migration it was running is dirty: inv db.status shows it; inv db.migrate --resume or inv db.rollback"
    return "it had no chance to clean up; inv proc.clean removes what it left"


def _gone(p: Process) -> bool:
    """Whether ``p``'s pid is no longer the process of its pid file (ended, a zombie, or the pid reused)."""
    return not _ours(p.host, p.pid, p.create_time)


def _signal(p: Process, sig: int) -> str:
    """Send ``sig`` if ``p`` is still the process of its pid file (checked just before): 'sent', 'gone' or 'denied'."""
    if _gone(p):
        return "gone"
    try:
        os.kill(p.pid, sig)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        return "denied"
    return "sent"


DENIED = "not allowed to signal it: it belongs to another user (run as that user)"


def kill(targets: list[Process], grace: float, poll: float = 0.1, notify=None) -> list[dict[str, Any]]:
    """SIGTERM each target, wait up to ``grace`` seconds for all of them, SIGKILL the ones still there. Before every
    signal the pid is checked to still be the process of its pid file (pids are reused). A pid file the process
    could not remove (SIGKILL) is removed here. Returns one outcome per target; ``ended`` False when it still runs."""
    notify = notify or (lambda message: None)
    started = time.monotonic()
    outcomes: dict[int, dict[str, Any]] = {}
    waiting: list[Process] = []
    for p in targets:
        outcome = outcomes[p.pid] = {**p.as_dict(), "signal": None, "ended": True, "seconds": 0.0, "note": ""}
        sent = _signal(p, signals.SIGTERM)
        if sent == "sent":
            outcome["signal"] = "SIGTERM"
            waiting.append(p)
            notify(f"sent SIGTERM to pid {p.pid} ({p.kind} {p.what}); waiting up to {grace:g}s")
        else:
            outcome.update(ended=sent == "gone", note="it had already ended" if sent == "gone" else DENIED)
    deadline = started + grace
    while waiting and time.monotonic() < deadline:
        time.sleep(poll)
        for p in [p for p in waiting if _gone(p)]:
            waiting.remove(p)
            outcomes[p.pid].update(seconds=round(time.monotonic() - started, 2), note="ended after SIGTERM")
    for p in waiting:
        sent = _signal(p, signals.SIGKILL)
        if sent == "sent":
            outcomes[p.pid].update(signal="SIGKILL", note=f"still running after {grace:g}s, so SIGKILLed; "
                                                          + _after_sigkill(p))
            notify(f"pid {p.pid} still running after {grace:g}s: sent SIGKILL")
        else:
            outcomes[p.pid]["note"] = "ended after SIGTERM" if sent == "gone" else DENIED
    for p in waiting:
        end = time.monotonic() + 10
        while not _gone(p) and time.monotonic() < end:
            time.sleep(poll)
        outcomes[p.pid].update(ended=_gone(p), seconds=round(time.monotonic() - started, 2))
        if not _gone(p) and outcomes[p.pid]["signal"] == "SIGKILL":
            outcomes[p.pid]["note"] = "did not end even after SIGKILL (stuck in the kernel? see: ps -o stat -p PID)"
    for p in targets:
        if outcomes[p.pid]["ended"]:
            _remove_pid_file_of(p)
    return [outcomes[p.pid] for p in targets]


def _remove_pid_file_of(p: Process) -> None:
    """Remove the pid file of an ended process, if it is still the one it wrote."""
    try:
        data = json.loads(p.path.read_text())
    except (OSError, ValueError):
        return
    if data.get("pid") == p.pid and data.get("create_time") == p.create_time and _gone(p):
        try:
            p.path.unlink()
        except FileNotFoundError:
            pass
