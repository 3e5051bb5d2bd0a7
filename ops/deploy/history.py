"""What this machine keeps of its deploys: every deploy's and rollback's full log under ``var/log/deploy/`` and one
JSON line per deploy or rollback in ``var/log/deploy/deploys.jsonl`` (what the report page reads). A deploy that
was killed leaves no line of its own: the deploy that takes over its lock writes one for it (outcome ``killed``).

An index line: ``at, action, target, host, port, path, release, from_release, outcome, error, log``. Several deploys
may run at once, in threads of one process (a fleet) or in several processes: each log has a name of its own
(``<UTC time>-<host>-<port>-<action>-<pid>-<n>.log``) and each index line is appended whole, under a lock.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import threading
from pathlib import Path
from typing import Any, Mapping

from ops.core.timefmt import stamp
from ops.deploy.targets import Target
from ops.deploy.transport import Notify

INDEX = "deploys.jsonl"
_SEQUENCE = itertools.count(1)  # next() is atomic under the GIL: a number of its own for each log of this process
_APPENDING = threading.Lock()


def log_dir(settings) -> Path:
    return settings.path("paths.var") / "log" / "deploy"


class DeployLog:
    """The full log of one deploy or rollback on one target: every progress line, as it is said."""

    def __init__(self, settings, action: str, target: Target):
        self.settings, self.action, self.target = settings, action, target
        when = stamp().replace(" ", "T").replace(":", "").replace("-", "")[:15]
        self.path = log_dir(settings) / log_name(when, target, str(action), os.getpid(), next(_SEQUENCE))
        self._fh = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "x", encoding="utf-8")  # "x": never another deploy's log
        except OSError:
            self._fh = None  # a log that cannot be written never stops a deploy

    def tee(self, notify: Notify) -> Notify:
        """``notify``, writing each line to this log too."""
        def both(line: str) -> None:
            self.write(line)
            notify(line)

        return both

    def write(self, line: str) -> None:
        if self._fh is not None:
            try:
                self._fh.write(f"{stamp()} {line}\n")
                self._fh.flush()
            except OSError:
                pass

    def record(self, outcome: str, release: str | None, from_release: str | None, error: str | None = None,
               action: str | None = None) -> None:
        """One line of the index for this deploy (or rollback), once it ended."""
        if error:
            self.write(f"error: {error}")
        append_index(self.settings, {"at": stamp(), "action": action or self.action,
                                     "target": self.target.name or self.target.host, "host": self.target.host,
                                     "port": self.target.port, "path": self.target.path, "release": release,
                                     "from_release": from_release, "outcome": outcome,
                                     "error": error, "log": str(self.path)})
        self.close()

    def killed(self, holder: Mapping[str, Any]) -> None:
        """The index line of a deploy that died holding the lock this deploy took over."""
        found = sorted(log_dir(self.settings).glob(log_name("*", self.target, "*", holder.get("pid"), "*")))
        append_index(self.settings, {"at": stamp(), "action": holder.get("action") or "deploy",
                                     "target": self.target.name or self.target.host, "host": self.target.host,
                                     "port": self.target.port, "path": self.target.path,
                                     "release": holder.get("release"), "from_release": None, "outcome": "killed",
                                     "error": f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} died holding "
                                              f"the deploy lock (since {holder.get('since', '?')})",
                                     "log": str(found[-1]) if found else None})

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def log_name(when: str, target: Target, action: str, pid: Any, n: Any) -> str:
    """The file name of one deploy's log (``*`` in any part: a glob). Host, port and the process's own number keep
    two deploys of one process apart, also to one host name on two ports."""
    return f"{when}Z-{target.host}-{target.port}-{action}-{pid}-{n}.log".replace(":", "_")


def append_index(settings, entry: Mapping[str, Any]) -> None:
    """One line at the end of the index, whole: one write under a lock of this process (threads) and an flock of the
    file (other processes)."""
    path = log_dir(settings) / INDEX
    line = (json.dumps(dict(entry), sort_keys=True) + "\n").encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _APPENDING:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)  # closing releases the flock
    except OSError:
        pass


def read_index(settings, last: int = 0) -> list[dict[str, Any]]:
    """The index's lines, oldest first (the ``last`` ones when given); an unreadable line is skipped."""
    path = log_dir(settings) / INDEX
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines[-last:] if last else lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
