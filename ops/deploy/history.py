"""What this machine keeps of its deploys: every deploy's and rollback's full log under ``var/log/deploy/`` and one
JSON line per deploy or rollback in ``var/log/deploy/deploys.jsonl`` (what the report page reads). A deploy that
was killed leaves no line of its own: the deploy that takes over its lock writes one for it (outcome ``killed``).

An index line: ``at, action, target, host, release, from_release, outcome, error, log``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from ops.core.timefmt import stamp
from ops.deploy.targets import Target
from ops.deploy.transport import Notify

INDEX = "deploys.jsonl"


def log_dir(settings) -> Path:
    return settings.path("paths.var") / "log" / "deploy"


class DeployLog:
    """The full log of one deploy or rollback on one target: every progress line, as it is said."""

    def __init__(self, settings, action: str, target: Target):
        self.settings, self.action, self.target = settings, action, target
        name = f"{stamp().replace(' ', 'T').replace(':', '').replace('-', '')[:15]}Z-{target.host}-{action}-" \
               f"{os.getpid()}.log".replace(":", "_")
        self.path = log_dir(settings) / name
        self._fh = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
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
                                     "release": release, "from_release": from_release, "outcome": outcome,
                                     "error": error, "log": str(self.path)})
        self.close()

    def killed(self, holder: Mapping[str, Any]) -> None:
        """The index line of a deploy that died holding the lock this deploy took over."""
        found = sorted(log_dir(self.settings).glob(f"*-{self.target.host}-*-{holder.get('pid')}.log"))
        append_index(self.settings, {"at": stamp(), "action": holder.get("action") or "deploy",
                                     "target": self.target.name or self.target.host, "host": self.target.host,
                                     "release": holder.get("release"), "from_release": None, "outcome": "killed",
                                     "error": f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} died holding "
                                              f"the deploy lock (since {holder.get('since', '?')})",
                                     "log": str(found[-1]) if found else None})

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def append_index(settings, entry: Mapping[str, Any]) -> None:
    path = log_dir(settings) / INDEX
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(dict(entry), sort_keys=True) + "\n")
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
