"""OS file locks that say who holds them.

A :class:`FileLock` is an ``flock`` on a file; the holder writes its pid, command line, host and start time
into the file, so a process that has to wait can tell the user *who* it is waiting for. The kernel drops an
``flock`` when its holder dies, so these locks are never stale; the holder info left behind then describes a
process that is gone, which :func:`holder_alive` recognises.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ops.core.errors import BadInput, LockTimeout


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str
    since: str
    host: str

    def describe(self) -> str:
        return f"pid {self.pid} ({self.command}) on {self.host} since {self.since}"

    @classmethod
    def me(cls) -> "Holder":
        return cls(
            pid=os.getpid(),
            command=command_line(),
            since=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            host=socket.gethostname(),
        )


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


def read_holder(path: Path) -> Holder | None:
    """The holder recorded in a lock file, or None when there is none or it cannot be read."""
    try:
        data = json.loads(path.read_text() or "null")
        return Holder(int(data["pid"]), str(data["command"]), str(data["since"]), str(data.get("host", "?")))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def process_alive(host: str, pid: int, since: datetime | None = None) -> bool:
    """Whether the process that recorded (``host``, ``pid``) at ``since`` still runs. The one liveness test of
    chops' locks, ledger and journal: on another host it cannot be told (assume alive); a pid now held by a process
    that started after ``since`` was reused (gone)."""
    import psutil

    if host != socket.gethostname() or int(pid) <= 0:
        return True
    try:
        started = psutil.Process(int(pid)).create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True
    if since is not None:
        since = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
        return started <= since.timestamp() + 1
    return True


def parse_since(text: str) -> datetime | None:
    """A holder's ``since`` ("YYYY-MM-DD HH:MM:SS UTC") as a datetime, or None."""
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        return None


def holder_alive(holder: Holder) -> bool:
    return process_alive(holder.host, holder.pid, parse_since(holder.since))


class FileLock:
    """An exclusive ``flock`` on ``path`` with holder info; waits up to ``timeout`` seconds.

    ``what`` names the resource in messages ("the embedded database var/clickhouse").
    ``notify`` is called once, with a sentence, when we have to wait.
    """

    def __init__(self, path: Path, what: str, timeout: float, notify: Callable[[str], None] | None = None,
                 poll: float = 0.1):
        self.path = Path(path)
        self.what = what
        self.timeout = timeout
        self.notify = notify or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.poll = poll
        self._fh = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> "FileLock":
        if self._fh is not None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+")
        except OSError as exc:
            raise BadInput(f"cannot create lock file {self.path}: {exc.strerror}") from None
        deadline = time.monotonic() + self.timeout
        told = False
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = read_holder(self.path)
                who = holder.describe() if holder else "another process"
                if time.monotonic() >= deadline:
                    fh.close()
                    raise LockTimeout(
                        f"{self.what} is still held by {who} after {self.timeout:g}s",
                        hint=f"wait for it to finish, or stop process {holder.pid}" if holder else None,
                    )
                if not told:
                    self.notify(f"waiting for {self.what}: held by {who} (timeout {self.timeout:g}s)")
                    told = True
                time.sleep(self.poll)
        fh.seek(0)
        fh.truncate()
        me = Holder.me()
        fh.write(json.dumps({"pid": me.pid, "command": me.command, "since": me.since, "host": me.host}))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is None:
            return
        try:
            self._fh.seek(0)
            self._fh.truncate()
            self._fh.flush()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        finally:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
