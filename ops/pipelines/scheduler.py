"""The backfill's scheduler: which partitions of a plan may start now, which next, and what became of each.

Plain data: no database, no threads, no clock. ``ops.pipelines.backfill.execute`` asks :meth:`Scheduler.take` for
the next step, runs the partition it gets, and hands the :class:`Outcome` to :meth:`Scheduler.record`. The rules
live here, where a unit test reaches them: partitions start in plan order (oldest or newest day first, as the plan
was made); one starts only after its dependencies in the plan succeeded for the same day; a failed dependency
blocks its dependents; ``--fail-fast`` (a failure) and a signal (SIGTERM, Ctrl-C: a killed run, or
:meth:`Scheduler.stop`) start nothing more; whatever never started is reported, with why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from enum import Enum, StrEnum
from typing import Iterable, Mapping


class OutcomeStatus(StrEnum):
    """What became of one partition of a backfill."""

    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"  # done already: earlier in this plan, or found done by the runner
    FAILED = "failed"
    KILLED = "killed"  # a signal ended the run
    BLOCKED = "blocked"  # a dependency failed for the day
    NOT_STARTED = "not started"  # the backfill stopped first, or its dependencies never ran


#: A dependency that ended so blocks the partitions that need it on the same day.
BLOCKING = frozenset({OutcomeStatus.FAILED, OutcomeStatus.BLOCKED, OutcomeStatus.NOT_STARTED})
BY_SIGNAL = "stopped by {signal}"
BY_FAIL_FAST = "stopped by --fail-fast"
NEVER_RAN = "its dependencies never ran"
DONE_EARLIER = "done earlier in this plan"


@dataclass(frozen=True)
class Item:
    """One partition of a plan: ``pipeline`` for ``day``, after ``depends_on`` (those of the plan) for that day;
    ``rebuild``: it held data when the plan was made, and is built again (the runner's ``force``)."""

    pipeline: str
    day: date
    depends_on: tuple[str, ...] = ()
    rebuild: bool = False


@dataclass
class Outcome:
    """What became of one partition: its status, the rows it swapped in, its seconds, the error or reason, and
    the signal (by name) that ended it or stopped it from starting."""

    pipeline: str
    day: date
    status: OutcomeStatus
    rows: int = 0
    seconds: float = 0.0
    error: str = ""
    signal: str = ""


class _Ready(Enum):
    RUN = "run"
    WAIT = "wait"
    BLOCKED = "blocked"


class Scheduler:
    """The state of one execution of a plan's ``items`` (in plan order). ``done``: partitions this plan already
    built (a resume), reported as skipped and not run again."""

    def __init__(self, items: Iterable[Item], done: Iterable[tuple[str, date]] = (), fail_fast: bool = False,
                 batch: Mapping[str, int] | None = None, newest_first: bool = False):
        self.items = tuple(items)
        self.newest_first = newest_first
        self.batch = {name: n for name, n in (batch or {}).items() if n > 1}  # pipeline -> batch_days
        self.fail_fast = fail_fast
        self.outcomes: dict[tuple[str, date], Outcome] = {}
        self.pending: dict[tuple[str, date], Item] = {}  # in plan order; taking one is O(1), not a list shift
        self.stopped = False
        self.by_signal = ""  # the signal's name, once one stopped it
        self._in_plan = {(i.pipeline, i.day) for i in self.items}
        done = set(done)
        for item in self.items:
            if (item.pipeline, item.day) in done:
                self._set(Outcome(item.pipeline, item.day, OutcomeStatus.SKIPPED, error=DONE_EARLIER))
            else:
                self.pending[(item.pipeline, item.day)] = item

    def _set(self, outcome: Outcome) -> None:
        self.outcomes[(outcome.pipeline, outcome.day)] = outcome

    def _ready(self, item: Item) -> _Ready:
        for dep in item.depends_on:
            key = (dep, item.day)
            if key not in self._in_plan:
                continue  # it succeeded before this plan was made (the runner checks the ledger again)
            outcome = self.outcomes.get(key)
            if outcome is None:
                return _Ready.WAIT
            if outcome.status in BLOCKING:
                return _Ready.BLOCKED
        return _Ready.RUN

    def take(self, idle: bool = False) -> Item | tuple[Item, ...] | Outcome | None:
        """The next step, in plan order: the first pending partition whose dependencies are through (an Item: start
        it, then :meth:`record` its outcome), or one a failed dependency blocks (its Outcome, recorded already).
        A pipeline with ``batch_days`` > 1 gets a tuple of Items instead: up to that many of its consecutive pending
        days whose dependencies are through (the plan's days only; each outcome recorded on its own). While a later
        day of such a batch still waits for a dependency, the batch is held back so that it can grow, unless
        ``idle`` (nothing runs now), when it starts with the days that are ready.
        None when nothing can start now: stopped, nothing pending, or every pending one waits for a running one."""
        if self.stopped:
            return None
        held: tuple[Item, ...] = ()
        for item in self.pending.values():
            verdict = self._ready(item)
            if verdict is _Ready.WAIT:
                continue
            if verdict is _Ready.RUN and item.pipeline in self.batch:
                group, waiting = self._group(item)
                if waiting and not idle:
                    held = held or group
                    continue
                return self._taken(group)
            del self.pending[(item.pipeline, item.day)]  # and return at once: the loop goes no further
            if verdict is _Ready.RUN:
                return item
            blocked = Outcome(item.pipeline, item.day, OutcomeStatus.BLOCKED,
                              error=f"a dependency failed for {item.day}")
            self._set(blocked)
            return blocked
        return self._taken(held) if held and idle else None

    def _group(self, item: Item) -> tuple[tuple[Item, ...], bool]:
        """``item`` and the pending days of its pipeline that follow it in the plan's day order, consecutive and
        ready, up to its batch size; and whether the next of them waits for a dependency (the batch could grow)."""
        step = -1 if self.newest_first else 1
        group = [item]
        while len(group) < self.batch[item.pipeline]:
            following = self.pending.get((item.pipeline, group[-1].day + timedelta(days=step)))
            if following is None:
                return tuple(group), False
            verdict = self._ready(following)
            if verdict is not _Ready.RUN:
                return tuple(group), verdict is _Ready.WAIT
            group.append(following)
        return tuple(group), False

    def _taken(self, group: tuple[Item, ...]) -> tuple[Item, ...]:
        for item in group:
            del self.pending[(item.pipeline, item.day)]
        return group

    def record(self, outcome: Outcome) -> None:
        """What became of a partition that :meth:`take` gave out. A failure under ``fail_fast``, or a run ended by
        a signal, stops the schedule: nothing more starts."""
        self._set(outcome)
        if outcome.status == OutcomeStatus.KILLED:
            self.stop(by_signal=outcome.signal or True)
        elif outcome.status == OutcomeStatus.FAILED and self.fail_fast:
            self.stop()

    def stop(self, by_signal: bool | str = False) -> None:
        """Start nothing more (``by_signal``: because of that signal, by name; True: SIGTERM; else because of
        ``--fail-fast``)."""
        self.stopped = True
        if by_signal:
            self.by_signal = self.by_signal or ("SIGTERM" if by_signal is True else str(by_signal))

    @property
    def count(self) -> int:
        """How many partitions have an outcome."""
        return len(self.outcomes)

    def finish(self) -> list[Outcome]:
        """Every item's outcome, in plan order; a partition still pending did not start (and says why)."""
        why = (BY_SIGNAL.format(signal=self.by_signal) if self.by_signal else BY_FAIL_FAST) if self.stopped \
            else NEVER_RAN
        for item in self.pending.values():
            self._set(Outcome(item.pipeline, item.day, OutcomeStatus.NOT_STARTED, error=why, signal=self.by_signal))
        self.pending = {}
        return [self.outcomes[(i.pipeline, i.day)] for i in self.items]
