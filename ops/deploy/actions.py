"""The fixed words of deploys: what a deploy command does (:class:`Action`), how it ended (:class:`Result`) and the
state of the deploy lock (:class:`LockState`).

They are ``StrEnum``s: each compares equal to, prints as and serialises to its text, which is what the audit log,
the lock file, ``--json`` and older chops read.
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """What a deploy command does: in a plan, in the lock's holder record and in the audit log."""

    DEPLOY = "deploy"  # a new release
    NO_OP = "no-op"  # the same revision is current and healthy: only health is checked
    REVERIFY = "reverify"  # the same revision is current but not known healthy: schedule and verify it again
    ROLLBACK = "rollback"  # an earlier release made current again
    UNLOCK = "unlock"  # the deploy lock removed by hand


class Result(StrEnum):
    """How a deploy, a rollback or an unlock ended (an Outcome's ``result``, an audit line's ``result``)."""

    OK = "ok"
    DEPLOYED = "deployed"
    NO_OP = "no-op"
    REVERIFIED = "reverified"
    ROLLED_BACK = "rolled back"
    UNHEALTHY = "unhealthy"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class LockState(StrEnum):
    FREE = "free"
    HELD = "held"
    STALE = "stale"  # its holder is provably gone, or it is older than deploy.stale_lock_after
