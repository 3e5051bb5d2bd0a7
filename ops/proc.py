"""chops' own processes: a pid file per working process, so they can be listed, stopped and cleaned up safely.

Every chops process that does work (a pipeline run, a backfill, migrations, a deploy) calls :func:`working`, which
writes ``<paths.var>/run/<pid>.json``: the pid, the process's start time (to recognise a reused pid), its command
line, what it is working on and, where known, its progress. The file is rewritten atomically as the work moves
on and removed when the process exits. A pid file whose process is gone, or whose pid now belongs to another
process, is stale: never signalled, only cleaned.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_current: dict[str, Any] = {}


def run_dir(settings) -> Path:
    return settings.path("paths.var") / "run"


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def working(settings, kind: str, what: str, progress: str | None = None) -> Path:
    """Say what this process is doing (creating its pid file the first time). Safe to call often."""
    from ops.locks import command_line

    with _lock:
        path = run_dir(settings) / f"{os.getpid()}.json"
        if _current.get("path") != str(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            _current.clear()
            _current.update({
                "path": str(path), "pid": os.getpid(), "create_time": _create_time(os.getpid()),
                "host": socket.gethostname(), "command": command_line(),
                "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            })
            atexit.register(done)
        _current.update({"kind": kind, "what": what, "progress": progress,
                         "updated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: v for k, v in _current.items() if k != "path"}))
        os.replace(tmp, path)
        return path


def done() -> None:
    """Remove this process's pid file (also at exit)."""
    with _lock:
        path = _current.pop("path", None)
        _current.clear()
    if path:
        try:
            Path(path).unlink()
        except FileNotFoundError:
            pass


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
    state: str  # running | stale

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "kind": self.kind, "what": self.what, "since": self.since, "progress": self.progress,
                "command": self.command, "host": self.host, "state": self.state, "pid_file": str(self.path)}


def is_ours(pid: int, create_time: float | None, host: str | None = None) -> bool:
    """Whether ``pid`` is still the process that wrote the pid file (same host, same start time)."""
    if host and host != socket.gethostname():
        return False
    if create_time is None:
        return False
    now = _create_time(pid)
    return now is not None and abs(now - float(create_time)) < 0.05


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
        except (OSError, ValueError, KeyError, TypeError):
            out.append(Process(path, 0, "?", "unreadable pid file", "?", "?", None, "?", None, "stale"))
            continue
        state = "running" if is_ours(pid, data.get("create_time"), data.get("host")) else "stale"
        out.append(Process(path, pid, data.get("kind", "?"), data.get("what", ""), data.get("since", "?"),
                           data.get("command", "?"), data.get("progress"), data.get("host", "?"),
                           data.get("create_time"), state))
    return out
