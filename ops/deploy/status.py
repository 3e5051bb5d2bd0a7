"""What a target looks like now, and the lock by hand: ``deploy.status`` (releases, the lock, the last deploys from
the audit log, the health of ``current``) and ``deploy.unlock``. Neither ships or switches anything."""

from __future__ import annotations

import socket
from typing import Any

from ops.core.errors import WorkFailed
from ops.deploy.actions import Action, LockState, Result
from ops.deploy.facts import gather
from ops.deploy.lock import describe_holder, lock_state
from ops.deploy.report import audit_record, health
from ops.deploy.targets import Target
from ops.deploy.transport import Remote, SshOptions


def status(settings, target: Target, options: SshOptions, audit: int = 10, with_health: bool = True) -> dict[str, Any]:
    """Releases, the lock, the last deploys from the audit log and the health of ``current``. Changes nothing."""
    remote = Remote(target, options)
    facts = gather(remote, audit=audit)
    state, reason = lock_state(facts.raw.get("lock"), settings.get("deploy.stale_lock_after"))
    out = {"target": target.as_dict(), "current": facts.current, "current_revision": facts.current_revision,
           "releases": facts.releases, "lock": {"state": state, "reason": reason, "holder": facts.raw.get("lock")},
           "audit": facts.raw.get("audit", []), "cron_entries": len((facts.raw.get("crontab") or {}).get("lines", [])),
           "health": None}
    if with_health and facts.current:
        out["health"] = health(remote, target)
    return out


def unlock(settings, target: Target, options: SshOptions, force: bool = False) -> dict[str, Any]:
    """Remove the deploy lock. A holder that is provably alive (this host, its pid running) needs ``force``."""
    remote = Remote(target, options)
    facts = gather(remote, tag=False)
    holder = facts.raw.get("lock")
    if not holder:
        return {"released": False, "holder": None, "state": LockState.FREE}
    state, reason = lock_state(holder, settings.get("deploy.stale_lock_after"))
    if state is LockState.HELD and holder.get("host") == socket.gethostname() and not force:
        raise WorkFailed(f"the deploy lock on {target.host} is held by a running deploy: {reason}",
                         hint="wait for it, stop it, or pass --force")
    answer = remote.helper("unlock", path=target.path, id=holder.get("id"), force=force,
                           audit=audit_record(Action.UNLOCK, target, Result.OK, note=f"removed the lock of "
                                              f"{describe_holder(holder)} ({state}: {reason})"))
    if not answer["released"]:
        raise WorkFailed(f"the deploy lock on {target.host} changed meanwhile: now {describe_holder(answer['holder'])}",
                         hint="run inv deploy.status and decide again")
    return {"released": True, "holder": holder, "state": state, "reason": reason}
