"""The deploy lock of a target: who holds it (an :class:`ops.core.process.Holder` record in ``deploy.lock``), whether
it is free, held or stale, and taking it (over) in the same round trip that reads the target's facts.

The lock file itself is written and removed on the target by ``ops.deploy.helper`` under an flock; this module
decides, here, what a record means. Its JSON keys stay those older chops reads: pid, host, user, command, since,
create_time, action, release, id.
"""

from __future__ import annotations

import socket
import uuid
from typing import Any, Callable, Mapping

from ops.core.errors import WorkFailed
from ops.core.process import Holder, Liveness
from ops.deploy.actions import Action, LockState
from ops.deploy.facts import Facts, check_target, gather
from ops.deploy.transport import Notify, Remote, SshOptions

# alive(pid, create_time): whether that process of this host still runs (a seam for tests; default: Holder.liveness)
Alive = Callable[[int, float | None], bool]


class LockHeld(WorkFailed):
    """The deploy lock is held by someone else, alive as far as we can tell; nothing was changed. ``holder``: the lock
    record (what a caller that waits for the lock polls)."""

    def __init__(self, message: str, holder: Mapping[str, Any] | None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.holder = dict(holder or {})


def new_holder(action: Action, release: str | None = None) -> Holder:
    """Who is deploying: this process, what it does and to which release, and an id of its own (what the helper
    compares on a takeover and an unlock). ``as_dict()`` is the lock file's content."""
    return Holder.me(action=action.value, release=release, id=uuid.uuid4().hex)


def holder_id(holder: Holder) -> str:
    return holder.extra["id"]


def describe_holder(holder: Mapping[str, Any]) -> str:
    """A lock record (as the helper read it) in one phrase: who, where, which process, what and since when."""
    if not holder:
        return "nobody"
    if "unreadable" in holder:
        return "an unreadable lock file"
    what = f" ({holder.get('action', 'deploy')} of {holder['release']})" if holder.get("release") else ""
    return (f"{holder.get('user', '?')}@{holder.get('host', '?')} pid {holder.get('pid', '?')}{what} "
            f"since {holder.get('since', '?')}: {holder.get('command', '?')}")


def lock_state(holder: Mapping[str, Any] | None, stale_after: float, here: str | None = None,
               alive: Alive | None = None) -> tuple[LockState, str]:
    """``free``, ``held`` or ``stale``, with the reason. Stale: the holder ran on this host and is gone (its pid
    dead, a zombie or reused: :meth:`Holder.liveness`), or the lock is older than ``stale_after`` seconds. Another
    host's live-looking holder is held."""
    if not holder:
        return LockState.FREE, "nobody holds it"
    here = here or socket.gethostname()
    if "unreadable" not in holder and holder.get("host") == here and _gone(holder, alive):
        return LockState.STALE, f"its holder, pid {holder.get('pid')} on {here}, is gone"
    age = holder.get("age")
    if age is not None and age > stale_after:
        return LockState.STALE, (f"it is {age / 3600:.1f} h old (deploy.stale_lock_after is "
                                 f"{stale_after / 3600:g} h)")
    return LockState.HELD, describe_holder(holder)


def _gone(holder: Mapping[str, Any], alive: Alive | None) -> bool:
    record = Holder.from_dict(holder)
    if record is None or record.pid <= 0:
        return True  # no pid of a process: nobody can be holding it
    if alive is not None:
        return not alive(record.pid, record.create_time)
    return record.liveness() is Liveness.GONE


def acquire(remote: Remote, holder: Holder, stale_after: float, options: SshOptions,
            notify: Notify, flags: str | None = None) -> tuple[Facts, dict[str, Any] | None]:
    """Check the target and take the deploy lock, reading its facts in the same round trip (under the lock). A target
    that cannot take a deploy is refused before anything is created; a live holder is refused with its name; a
    stale one is taken over (and returned). ``flags``: what names the target in a hint (``report.hint_flags``)."""
    facts = gather(remote, holder=holder)
    check_target(facts, remote.target, options)
    answer = facts.raw["lock_result"]
    if answer["acquired"]:
        return facts, None
    current = answer["holder"]
    state, reason = lock_state(current, stale_after)
    if state is not LockState.STALE:
        raise LockHeld(f"{remote.target.host} is being deployed by {describe_holder(current)}; nothing was changed",
                       current, hint=f"wait for it (--wait SECONDS); if it is gone: inv deploy.unlock "
                                     f"{flags or '--host ' + remote.target.host}")
    facts = gather(remote, holder=holder, takeover=current.get("id"))
    if not facts.raw["lock_result"]["acquired"]:
        raise LockHeld(f"{remote.target.host} is being deployed by "
                       f"{describe_holder(facts.raw['lock_result']['holder'])}", facts.raw["lock_result"]["holder"],
                       hint="someone took the stale lock first; wait for them (--wait SECONDS)")
    notify(f"      took over a stale deploy lock: {reason} ({describe_holder(current)})")
    return facts, current
