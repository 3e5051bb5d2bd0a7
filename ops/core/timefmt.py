"""UTC time as chops writes and reads it, and durations as people read them.

Holder records, pid files, locks, plans and audit lines say when in one text form, ``2026-11-27 16:22:11 UTC``
(:func:`stamp` / :func:`parse_stamp`); the journal and the ledger keep microseconds (:func:`stamp_micro`), bound
as text because the embedded engine takes a string for a ``DateTime64`` parameter without converting zones.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

STAMP = "%Y-%m-%d %H:%M:%S UTC"
MICRO = "%Y-%m-%d %H:%M:%S.%f"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def aware(t: datetime) -> datetime:
    """``t`` in UTC; a naive datetime (what the database returns) is taken to be UTC already."""
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def stamp(t: datetime | None = None) -> str:
    """``t`` (default: now) as ``YYYY-MM-DD HH:MM:SS UTC``."""
    return aware(t or utc_now()).strftime(STAMP)


def parse_stamp(text: str | None) -> datetime | None:
    """A :func:`stamp` back as an aware datetime, or None when it cannot be read."""
    try:
        return datetime.strptime(str(text), STAMP).replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        return None


def stamp_micro(t: datetime | None = None) -> str:
    """``t`` (default: now) in UTC with microseconds and no zone: the journal's and the ledger's text form."""
    return aware(t or utc_now()).strftime(MICRO)


def parse_micro(text: str) -> datetime:
    """A :func:`stamp_micro` back as a naive UTC datetime (as the database returns one)."""
    return datetime.strptime(text, MICRO)


def duration(seconds: float | timedelta, *, precise: bool = True) -> str:
    """``42s``, ``3m 12s``, ``2h 5m``, ``1d 4h``: the two largest units. ``precise=False`` drops the seconds once
    there are minutes (``3m``), for ages where seconds are noise."""
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s" if precise else f"{minutes}m"
    return f"{secs}s"


def since(text: str, now: datetime | None = None) -> str | None:
    """How long ago a :func:`stamp` was (``3m 12s``), or None when it cannot be read."""
    started = parse_stamp(text)
    if started is None:
        return None
    return duration((now or utc_now()) - started)
