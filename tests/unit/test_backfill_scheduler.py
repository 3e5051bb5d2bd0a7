"""The backfill's scheduler and plan decisions without a database: which partition starts when, what blocks what,
what --fail-fast and SIGTERM stop, and the order of days."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from ops.pipelines.backfill import Reprocess, choose
from ops.pipelines.definition import Pipeline
from ops.pipelines.ledger import RunStatus
from ops.pipelines.scheduler import Item, Outcome, OutcomeStatus, Scheduler

D1, D2, D3 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)


def items(*days: date) -> list[Item]:
    """numbers, then doubled (which needs numbers of the same day), for each day."""
    return [i for d in days for i in (Item("numbers", d), Item("doubled", d, ("numbers",)))]


def outcome(item: Item, status: OutcomeStatus = OutcomeStatus.SUCCEEDED) -> Outcome:
    return Outcome(item.pipeline, item.day, status)


def key(step) -> tuple[str, date]:
    return (step.pipeline, step.day)


def drain(s: Scheduler) -> list:
    """Every step take() gives until it gives None."""
    steps = []
    while (step := s.take()) is not None:
        steps.append(step)
    return steps


def test_a_partition_starts_only_after_its_same_day_dependency():
    s = Scheduler(items(D1, D2))
    assert [key(i) for i in drain(s)] == [("numbers", D1), ("numbers", D2)]  # both doubled wait
    s.record(outcome(Item("numbers", D2)))
    assert key(s.take()) == ("doubled", D2)  # day 2 does not wait for day 1
    assert s.take() is None
    s.record(outcome(Item("numbers", D1)))
    assert key(s.take()) == ("doubled", D1)


def test_a_dependency_outside_the_plan_does_not_hold_a_partition_back():
    s = Scheduler([Item("doubled", D1, ("numbers",))])  # numbers succeeded before the plan was made
    assert key(s.take()) == ("doubled", D1)


@pytest.mark.parametrize("status", [OutcomeStatus.SUCCEEDED, OutcomeStatus.SKIPPED])
def test_a_dependency_done_or_found_done_lets_its_dependent_run(status):
    s = Scheduler(items(D1))
    s.record(outcome(s.take(), status))
    assert key(s.take()) == ("doubled", D1)


def test_a_failed_dependency_blocks_its_dependents_of_that_day_only():
    chain = items(D1, D2) + [Item("tripled", D1, ("doubled",))]
    s = Scheduler(chain)
    first, second = s.take(), s.take()
    assert [key(first), key(second)] == [("numbers", D1), ("numbers", D2)]
    s.record(outcome(first, OutcomeStatus.FAILED))
    blocked = s.take()
    assert isinstance(blocked, Outcome) and blocked.status == OutcomeStatus.BLOCKED
    assert key(blocked) == ("doubled", D1) and blocked.error == f"a dependency failed for {D1}"
    assert key(s.take()) == ("tripled", D1) and s.outcomes[("tripled", D1)].status == OutcomeStatus.BLOCKED
    s.record(outcome(second))
    assert key(s.take()) == ("doubled", D2)  # day 2 goes on


def test_fail_fast_starts_nothing_more_after_a_failure():
    s = Scheduler(items(D1, D2, D3), fail_fast=True)
    first = s.take()
    s.record(outcome(first, OutcomeStatus.FAILED))
    assert s.take() is None and s.stopped and not s.by_signal
    result = s.finish()
    assert [o.status for o in result] == [OutcomeStatus.FAILED] + [OutcomeStatus.NOT_STARTED] * 5
    assert {o.error for o in result[1:]} == {"stopped by --fail-fast"}


def test_without_fail_fast_a_failure_stops_only_its_dependents():
    s = Scheduler(items(D1, D2))
    s.record(outcome(s.take(), OutcomeStatus.FAILED))
    assert [key(x) for x in drain(s)] == [("doubled", D1), ("numbers", D2)]
    assert not s.stopped


def test_a_killed_run_stops_the_schedule_as_sigterm_does():
    s = Scheduler(items(D1, D2), fail_fast=True)
    s.record(outcome(s.take(), OutcomeStatus.KILLED))
    assert s.take() is None and s.by_signal
    assert {o.error for o in s.finish()[1:]} == {"stopped by SIGTERM"}


def test_a_stop_by_signal_says_so_even_after_fail_fast():
    s = Scheduler(items(D1), fail_fast=True)
    s.record(outcome(s.take(), OutcomeStatus.FAILED))
    s.stop(by_signal=True)
    assert s.finish()[1].error == "stopped by SIGTERM"


def test_partitions_done_earlier_in_the_plan_are_skipped_and_counted():
    plan = items(D1, D2)
    s = Scheduler(plan, done={("numbers", D1), ("doubled", D1)})
    assert s.count == 2 and s.outcomes[("numbers", D1)].status == OutcomeStatus.SKIPPED
    assert s.outcomes[("numbers", D1)].error == "done earlier in this plan"
    assert [key(i) for i in drain(s)] == [("numbers", D2)]


def test_finish_reports_every_item_in_plan_order():
    plan = items(D2, D1)
    s = Scheduler(plan)
    s.record(outcome(s.take()))
    result = s.finish()
    assert [key(o) for o in result] == [key(i) for i in plan]
    assert [o.status for o in result] == [OutcomeStatus.SUCCEEDED] + [OutcomeStatus.NOT_STARTED] * 3
    assert result[1].error == "its dependencies never ran"


# --- the plan's decisions ----------------------------------------------------------------------------------------

def pipelines() -> list[Pipeline]:
    build = lambda run: None  # noqa: E731
    return [Pipeline("numbers", build, "numbers_t"), Pipeline("doubled", build, "doubled_t", depends_on=("numbers",))]


ROWS = {"numbers": {}, "doubled": {}}


def test_newest_first_runs_the_newest_day_first_with_dependencies_first_within_it():
    days = [D1 + timedelta(days=i) for i in range(3)]
    chosen, skipped = choose(days[::-1], pipelines(), {}, ROWS)
    assert skipped == []
    assert [(i.pipeline, i.day) for i in chosen] == [(p, d) for d in (D3, D2, D1) for p in ("numbers", "doubled")]
    assert chosen[1].depends_on == ("numbers",)
    s = Scheduler(chosen)
    assert [key(i) for i in drain(s)] == [("numbers", D3), ("numbers", D2), ("numbers", D1)]
    s.record(outcome(Item("numbers", D3)))
    assert key(s.take()) == ("doubled", D3)


def test_a_dependency_not_backfilled_is_not_waited_for():
    chosen, _ = choose([D1], pipelines()[1:], {}, ROWS)
    assert chosen == [Item("doubled", D1, ())]


def ledger_rows(**status: RunStatus) -> dict:
    return {(name, D1): {"status": s} for name, s in status.items()}


def test_succeeded_partitions_are_skipped_unless_forced_or_gone():
    latest = ledger_rows(numbers=RunStatus.SUCCEEDED, doubled=RunStatus.SUCCEEDED)
    rows = {"numbers": {"20260101": 10}, "doubled": {}}  # doubled's rows were dropped since
    chosen, skipped = choose([D1], pipelines(), latest, rows)
    assert [i.pipeline for i in chosen] == ["doubled"] and skipped == [("numbers", D1, "already succeeded")]
    chosen, skipped = choose([D1], pipelines(), latest, rows, Reprocess.FORCE)
    assert [i.pipeline for i in chosen] == ["numbers", "doubled"] and skipped == []


def test_rerun_failed_takes_only_what_failed():
    latest = ledger_rows(numbers=RunStatus.DIED)
    chosen, skipped = choose([D1], pipelines(), latest, ROWS, Reprocess.RERUN_FAILED)
    assert [i.pipeline for i in chosen] == ["numbers"]
    assert skipped == [("doubled", D1, "not failed (never run)")]


@pytest.mark.parametrize("force, rerun_failed, mode, rebuilds", [
    (False, False, Reprocess.NORMAL, False), (True, False, Reprocess.FORCE, True),
    (False, True, Reprocess.RERUN_FAILED, False), (True, True, Reprocess.RERUN_FAILED_FORCED, True)])
def test_the_flags_make_one_mode(force, rerun_failed, mode, rebuilds):
    assert Reprocess.of(force, rerun_failed) is mode
    assert (mode.force, mode.only_failed) == (rebuilds, rerun_failed)
