"""OS file locks that say who holds them.

A :class:`FileLock` is an ``flock`` on a file; the holder writes its pid, command line, host and start time
into the file, so a process that has to wait can tell the user *who* it is waiting for. The kernel drops an
``flock`` when its holder dies, so these locks are never stale; the holder info left behind then describes a
process that is gone, which :meth:`ops.core.process.Holder.gone` recognises.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

from ops.core.errors import BadInput, LockTimeout, WorkFailed
from ops.core.process import Holder


# The errors of a full disk (or a full quota): one line and exit 1, never a traceback.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
FREE_SPACE = "free space on its disk (df -h), then run the command again"


def read_holder(path: Path) -> Holder | None:
    """The holder recorded in a lock file, or None when there is none or it cannot be read."""
    try:
        return Holder.from_dict(json.loads(path.read_text() or "null"))
    except (OSError, ValueError):
        return None


def _give_up(fh) -> None:
    """Empty a held lock file (its holder record goes), unlock and close it; emptying frees space, so this works on
    a full disk too."""
    try:
        os.ftruncate(fh.fileno(), 0)
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    finally:
        fh.close()


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
        self.waited = False  # whether acquire() found it held and waited for it

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> "FileLock":
        if self._fh is not None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "ab", buffering=0)  # unbuffered: nothing of a failed write is written later
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise WorkFailed(f"cannot create lock file {self.path}: {exc.strerror}", hint=FREE_SPACE) from None
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
                    told = self.waited = True
                time.sleep(self.poll)
        try:
            os.ftruncate(fh.fileno(), 0)
            record = json.dumps(Holder.me().as_dict()).encode()
            if fh.write(record) != len(record):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:  # a full disk: nothing is held, and the file is left empty as a release leaves it
            _give_up(fh)
            raise WorkFailed(f"cannot write lock file {self.path}: {exc.strerror}", hint=FREE_SPACE) from None
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is None:
            return
        fh, self._fh = self._fh, None
        _give_up(fh)

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
