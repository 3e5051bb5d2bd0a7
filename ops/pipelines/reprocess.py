"""Reprocessing: which partitions of a range a backfill builds, as one explicit mode.

A partition (pipeline, day) is, by its ledger rows and its target's rows:

* **missing**: it never succeeded, or it did but its rows are gone from the target;
* **failed**: its newest attempt failed, was killed or died (it may still hold the data of an earlier success);
* **stale**: it holds data built from an upstream partition that has been rebuilt since: the ledger records, for
  each run, the run id of each upstream partition it read (that upstream's newest success when the run started),
  and that is no longer the upstream's newest success (rows written before the ledger recorded it: the upstream's
  newest success started after this partition's);
* **done** otherwise.

A mode names the partitions to take (``missing``, the default; ``failed``; ``stale``; ``all``), and a backfill also
takes everything downstream of a partition it takes, on the same day: rebuilding an upstream day makes its
downstream days stale, so a backfill never leaves stale data behind it. A partition taken while it holds data is
rebuilt (the runner's ``force``). Pure: the ledger's and the catalog's facts come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Iterable, Mapping, Sequence

from ops.core.errors import BadInput
from ops.pipelines.definition import Pipeline
from ops.pipelines.ledger import FAILURES, PartitionState
from ops.pipelines.scheduler import Item


class Reprocess(StrEnum):
    """Which partitions of the range a backfill takes (besides everything downstream of what it takes)."""

    MISSING = "missing"  # never succeeded, or its rows are gone (the default)
    FAILED = "failed"  # its newest attempt failed, was killed or died (--rerun-failed)
    STALE = "stale"  # built from an upstream partition rebuilt since
    ALL = "all"  # every partition (--force)

    @classmethod
    def of(cls, mode: str | None = None, force: bool = False, rerun_failed: bool = False) -> "Reprocess":
        """The mode of ``--reprocess`` and its aliases ``--force`` (all) and ``--rerun-failed`` (failed; with
        ``--force`` too, failed: a failed partition is rebuilt anyway)."""
        alias = cls.FAILED if rerun_failed else cls.ALL if force else None
        if mode is None:
            return alias or cls.MISSING
        try:
            chosen = cls(str(mode).strip().lower())
        except ValueError:
            raise BadInput(f"--reprocess must be one of {', '.join(cls)}, got {mode!r}") from None
        if alias is not None and alias is not chosen:
            flag = "--rerun-failed" if rerun_failed else "--force"
            raise BadInput(f"--reprocess {chosen} and {flag} (which means --reprocess {alias}) disagree; give one")
        return chosen


def stale_reason(state: PartitionState | None, depends_on: Iterable[str],
                 states: Mapping[tuple[str, date], PartitionState]) -> str:
    """Why the partition's data is stale ('' when it is not): an upstream partition of the same day has a newer
    success than the one it read."""
    if state is None or not state.good_run:
        return ""
    for dep in depends_on:
        up = states.get((dep, state.day))
        if up is None or not up.good_run:
            continue
        read = state.good_upstream.get(dep, "")
        if read and read != up.good_run:
            return f"built from {dep} run {read[:8]}; {dep} was rebuilt since (run {up.good_run[:8]})"
        if not read and up.good_started and state.good_started and up.good_started > state.good_started:
            return f"built before {dep} was rebuilt"
    return ""


def has_data(state: PartitionState | None, p: Pipeline, rows: Mapping[str, int]) -> bool:
    """Whether the partition holds a success's data: it succeeded, and its rows are there (or may be none)."""
    return bool(state and state.good_run) and (p.allow_empty or bool(rows.get(f"{state.day:%Y%m%d}")))


@dataclass(frozen=True)
class Skip:
    """A partition a plan does not take: ``why`` in words; ``stale``: why its data is stale (and stays so), or ''."""

    pipeline: str
    day: date
    why: str
    stale: str = ""


def _seed(mode: Reprocess, state: PartitionState | None, data: bool, stale: str) -> tuple[bool, str]:
    """Whether ``mode`` takes the partition by itself, or why not."""
    status = state.status if state else None
    if mode is Reprocess.ALL:
        return True, ""
    if mode is Reprocess.MISSING:
        if not data:
            return True, ""
        if status in FAILURES:
            return False, f"holds the data of run {state.good_run[:8]}; its newest attempt {status} " \
                          "(--reprocess failed rebuilds it)"
        return False, f"stale: {stale} (--reprocess stale rebuilds it)" if stale else "already succeeded"
    if mode is Reprocess.FAILED:
        return (True, "") if status in FAILURES else (False, f"not failed ({status or 'never run'})")
    return (True, "") if stale else (False, "not stale" if data else "not stale (never succeeded)")


def choose(days: Sequence[date], pipelines: Sequence[Pipeline], states: Mapping[tuple[str, date], PartitionState],
           rows: Mapping[str, Mapping[str, int]], mode: Reprocess = Reprocess.MISSING,
           depends: Mapping[str, Sequence[str]] | None = None) -> tuple[list[Item], list[Skip]]:
    """The partitions to run, day by day in the order of ``days``, each day's ``pipelines`` in their order
    (dependencies first), and those skipped with why. ``states``: each partition's :class:`PartitionState` (of
    every pipeline, upstream ones outside ``pipelines`` included); ``rows``: each pipeline's target rows per
    partition id; ``depends``: each pipeline's dependencies (default: the given pipelines')."""
    depends = depends if depends is not None else {p.name: p.depends_on for p in pipelines}
    names = {p.name for p in pipelines}
    items: list[Item] = []
    skipped: list[Skip] = []
    for day in days:
        taken: set[str] = set()
        for p in pipelines:
            state = states.get((p.name, day))
            data = has_data(state, p, rows.get(p.name, {}))
            stale = stale_reason(state, depends.get(p.name, p.depends_on), states) if data else ""
            take, why = _seed(mode, state, data, stale)
            upstream = [d for d in p.depends_on if d in taken]
            if not take and upstream:
                take = True  # its upstream is rebuilt now: left alone, it would be stale
            if take:
                items.append(Item(p.name, day, tuple(d for d in p.depends_on if d in names), rebuild=data))
                taken.add(p.name)
            else:
                skipped.append(Skip(p.name, day, why, stale=stale))
    return items, skipped

