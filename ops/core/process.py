"""Processes as chops records them: the one holder record and the one liveness test.

A :class:`Holder` says who holds something (a file lock, the migration lock, a pid file, the deploy lock, a ledger
attempt, a journal run): user, host, pid, the pid's start time, command line and since when. :func:`liveness` is
the only place chops decides whether such a process still runs; every lock, pid file, ledger row and journal run
asks it:

* ``UNKNOWN``: recorded on another host (or this host may not look at the process): cannot be judged here. A
  lock of such a holder is never broken and such a pid is never signalled.
* ``GONE``: the pid is dead or a zombie (it exited; its parent has not reaped it yet), or the pid now belongs to a
  different process: one that started at another time than recorded (``create_time``), or after ``since``.
* ``ALIVE``: the recorded process runs.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Mapping

from ops.core.timefmt import parse_stamp, stamp


class Liveness(Enum):
    ALIVE = "alive"
    GONE = "gone"
    UNKNOWN = "unknown"


def user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): the uid will do
        return str(os.getuid())


def command_line(pid: int | None = None) -> str:
    """The command line of a process (this one by default), readable, on one line, at most 160 characters."""
    try:
        raw = Path(f"/proc/{pid or os.getpid()}/cmdline").read_bytes()
        parts = [p.decode(errors="replace") for p in raw.split(b"\0") if p]
    except OSError:
        parts = sys.argv if pid is None else []
    if parts and os.path.basename(parts[0]).startswith("python"):
        parts = parts[1:]  # "python /venv/bin/inv db.info" reads better as "inv db.info"
    parts = [os.path.basename(parts[0])] + parts[1:] if parts else ["?"]
    text = " ".join(" ".join(parts).split())
    return text if len(text) <= 160 else text[:157] + "..."


_own_start: dict[int, float] = {}  # this process's start, by pid (a fork has a pid of its own): it never changes


def create_time(pid: int) -> float | None:
    """When process ``pid`` of this host started (seconds since the epoch), or None when there is no such process.
    This process's own is read once (a backfill asks for it at every partition)."""
    import psutil

    if pid <= 0:
        return None
    if pid in _own_start and pid == os.getpid():
        return _own_start[pid]
    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        return None
    if pid == os.getpid():
        _own_start[pid] = started
    return started


def liveness(host: str | None, pid: Any, *, since: datetime | str | None = None,
             started: float | None = None) -> Liveness:
    """Whether the process recorded as (``host``, ``pid``) still runs. ``started`` (its ``create_time``) identifies
    it exactly; without it, ``since`` (when the record was written) tells a reused pid: a process that started
    after the record cannot have written it."""
    import psutil

    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return Liveness.GONE if host == socket.gethostname() else Liveness.UNKNOWN
    if host is not None and host != socket.gethostname():
        return Liveness.UNKNOWN
    if pid <= 0:
        return Liveness.GONE
    try:
        proc = psutil.Process(pid)
        now_started = proc.create_time()
        if proc.status() == psutil.STATUS_ZOMBIE:
            return Liveness.GONE
    except psutil.NoSuchProcess:
        return Liveness.GONE
    except psutil.Error:
        return Liveness.UNKNOWN
    if started is not None:
        return Liveness.ALIVE if abs(now_started - float(started)) < 0.05 else Liveness.GONE
    if isinstance(since, str):
        since = parse_stamp(since)
    if since is not None:
        since = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
        return Liveness.ALIVE if now_started <= since.timestamp() + 1 else Liveness.GONE
    return Liveness.ALIVE


@dataclass(frozen=True)
class Holder:
    """Who holds something. ``since`` is a :func:`ops.core.timefmt.stamp`; ``extra`` carries what one kind of
    record adds (a deploy lock's action and release, a pid file's work)."""

    pid: int
    host: str
    command: str
    since: str
    user: str = "?"
    create_time: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def me(cls, **extra: Any) -> "Holder":
        pid = os.getpid()
        return cls(pid=pid, host=socket.gethostname(), command=command_line(), since=stamp(), user=user_name(),
                   create_time=create_time(pid), extra=dict(extra))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Holder | None":
        """A record written by :meth:`as_dict` (or an older one with fewer keys); None when it is not a record."""
        if not isinstance(data, Mapping):
            return None
        try:
            pid = int(data["pid"])
        except (KeyError, TypeError, ValueError):
            return None
        known = {"pid", "host", "command", "since", "user", "create_time"}
        ct = data.get("create_time")
        return cls(pid=pid, host=str(data.get("host", "?")), command=str(data.get("command", "?")),
                   since=str(data.get("since", "?")), user=str(data.get("user", "?")),
                   create_time=float(ct) if isinstance(ct, (int, float)) else None,
                   extra={k: v for k, v in data.items() if k not in known})

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "extra"}
        out.update(self.extra)
        return out

    def with_extra(self, **extra: Any) -> "Holder":
        return replace(self, extra={**self.extra, **extra})

    def liveness(self) -> Liveness:
        return liveness(self.host, self.pid, since=self.since, started=self.create_time)

    def gone(self) -> bool:
        """Provably gone: on this host, and dead, a zombie, or its pid reused. Another host's holder never is."""
        return self.liveness() is Liveness.GONE

    def describe(self) -> str:
        return f"pid {self.pid} ({self.command}) on {self.host} since {self.since}"
