"""What a target says about itself, in one ssh round trip (``ops.deploy.helper facts``): its releases and
``current``, the lock, its Python and virtualenvs, ``.env`` key names, the crontab lines of this deploy, the audit
tail; and the refusal of a target that cannot take a deploy (:func:`check_target`), before anything is created.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ops.core.errors import BadInput
from ops.core.process import Holder
from ops.deploy.targets import TARGETS_FILE, Target, project_id
from ops.deploy.transport import Remote, SshOptions


@dataclass
class Facts:
    """What the target says about itself (``ops.deploy.helper facts``)."""

    raw: dict[str, Any]

    @property
    def current(self) -> str | None:
        return self.raw.get("current")

    @property
    def releases(self) -> list[dict[str, Any]]:
        return self.raw.get("releases", [])

    def release(self, name: str | None) -> dict[str, Any] | None:
        return next((r for r in self.releases if r["name"] == name), None)

    @property
    def current_revision(self) -> str | None:
        found = self.release(self.current)
        return found["revision"] if found else None

    @property
    def python(self) -> dict[str, Any]:
        return self.raw.get("python") or {}

    def venv_ready(self, key: str) -> bool:
        return any(v["key"] == key and v["complete"] for v in self.raw.get("venvs", []))


def gather(remote: Remote, tag: bool = True, audit: int = 0, manifest: bool = False,
           holder: Holder | None = None, takeover: str | None = None) -> Facts:
    """The target's facts in one round trip; with ``holder``, the deploy lock is tried first in the same trip."""
    t = remote.target
    args: dict[str, Any] = {"path": t.path, "python": remote.options.python, "tag": project_id(t.path) if tag else None,
                            "audit": audit, "manifest": manifest}
    if holder is not None:
        args.update(holder=holder.as_dict(), takeover=takeover, need_crontab=t.cron)
    return Facts(remote.helper("facts", timeout=remote.options.connect_timeout + 120, **args))


def check_target(facts: Facts, target: Target, options: SshOptions) -> None:
    """Refuse (bad input, nothing changed) a target that cannot take a deploy."""
    raw = facts.raw
    where = f"{target.destination}:{target.path}"
    if not raw.get("exists") and not raw.get("parent_exists"):
        raise BadInput(f"{where}: the parent directory {os.path.dirname(target.path)} does not exist on the target",
                       hint="create it there (owned by the deploy user), or choose another --path")
    if not raw.get("writable"):
        directory = target.path if raw.get("exists") else os.path.dirname(target.path)
        raise BadInput(f"{where}: {directory} is not writable by {target.user}",
                       hint=f"chown {target.user} {directory} on the target, or choose another --path")
    if not raw.get("rsync"):
        raise BadInput(f"rsync is not installed on {target.host}", hint="apt-get install rsync there")
    python = raw.get("python") or {}
    if "error" in python:
        raise BadInput(f"{target.host}: {python['error']}", hint="install python3 and python3-venv there, or set "
                                                                 "deploy.python")
    if not python.get("venv"):
        raise BadInput(f"{target.host}: {options.python} cannot create virtualenvs (no ensurepip)",
                       hint="apt-get install python3-venv there")
    if target.cron and not (raw.get("crontab") or {}).get("available"):
        raise BadInput(f"{target.host} runs cron for this target, but the crontab command is not installed there",
                       hint=f"apt-get install cron there, or set cron = false for it in {TARGETS_FILE}")

