"""What a target looks like now, and work by hand: ``deploy.status`` (releases, the lock, the last deploys from the
audit log, the health of ``current`` with its warnings), ``deploy.unlock`` and ``deploy.exec`` (an inv task in the
current release). None ships or switches anything."""

from __future__ import annotations

import socket
from typing import Any

from ops.core.errors import BadInput, WorkFailed
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
        out["health"] = health(remote, target, strict=False)
    remote.close()
    return out


def exec_in_current(settings, target: Target, options: SshOptions, argv: list[str],
                    dry_run: bool = False) -> dict[str, Any]:
    """``inv ARGV`` in the current release of ``target`` (its venv, its environment), like ``kamal app exec``: what it
    printed and its exit code. ``dry_run``: the command line only."""
    if not argv or argv[0].startswith("-"):
        raise BadInput("name the task to run after --: inv deploy.exec --host H -- db.status")
    remote = Remote(target, options)
    try:
        facts = gather(remote, tag=False)
        if not facts.current:
            raise BadInput(f"nothing is deployed at {target.destination}:{target.path}; there is no current release")
        where = f"{target.path}/current"
        out = {"host": target.host, "release": facts.current, "directory": where, "argv": ["inv", *argv]}
        if dry_run:
            return {**out, "dry_run": True}
        done = remote.inv(where, target.environment, *argv, timeout=options.command_timeout, what=f"inv {argv[0]}")
        return {**out, "exit": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
    finally:
        remote.close()


def unlock(settings, target: Target, options: SshOptions, force: bool = False) -> dict[str, Any]:
    """Remove the deploy lock. A holder that is provably alive (this host, its pid running) needs ``force``."""
    remote = Remote(target, options)
    try:
        return _unlock(settings, remote, target, force)
    finally:
        remote.close()


def _unlock(settings, remote: Remote, target: Target, force: bool) -> dict[str, Any]:
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
