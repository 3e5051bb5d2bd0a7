"""The backfill's scheduler and plan decisions without a database: which partition starts when, what blocks what,
what --fail-fast and SIGTERM stop, the order of days, what each reprocessing mode takes, how pipelines are
selected, and which days ClickHouse can hold."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from ops.core.errors import BadInput
from ops.pipelines.backfill import resolve_range
from ops.pipelines.definition import Pipeline, Registry, parse_day
from ops.pipelines.ledger import PartitionState, RunStatus
from ops.pipelines.reprocess import Reprocess, choose, stale_reason
from ops.pipelines.scheduler import Item, Outcome, OutcomeStatus, Scheduler
from ops.pipelines.selection import joined, select

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
FULL = {"numbers": {"20260101": 10}, "doubled": {"20260101": 10}}
T0 = datetime(2026, 1, 2, tzinfo=timezone.utc)


def state(name: str, status: RunStatus = RunStatus.SUCCEEDED, good: str = "", at: int = 0,
          read: dict | None = None) -> PartitionState:
    """A partition of D1: its newest attempt's status; ``good``: its newest success's run id (started ``at``
    minutes after T0, having read the upstream runs ``read``)."""
    return PartitionState(name, D1, status, good, T0 + timedelta(minutes=at) if good else None, read or {})


def states(*found: PartitionState) -> dict:
    return {(s.pipeline, s.day): s for s in found}


def taken(chosen) -> list[tuple[str, bool]]:
    return [(i.pipeline, i.rebuild) for i in chosen]


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


def test_done_partitions_are_skipped_unless_all_and_an_upstream_rebuilt_takes_its_downstream():
    done = states(state("numbers", good="n1"), state("doubled", good="d1", at=1, read={"numbers": "n1"}))
    chosen, skipped = choose([D1], pipelines(), done, FULL)
    assert chosen == [] and [(s.pipeline, s.why) for s in skipped] == [("numbers", "already succeeded"),
                                                                        ("doubled", "already succeeded")]
    chosen, skipped = choose([D1], pipelines(), done, FULL, Reprocess.ALL)
    assert taken(chosen) == [("numbers", True), ("doubled", True)] and skipped == []
    # numbers' rows were dropped since: it is missing again, and doubled, built from the old rows, is rebuilt too
    chosen, _ = choose([D1], pipelines(), done, {"numbers": {}, "doubled": FULL["doubled"]})
    assert taken(chosen) == [("numbers", False), ("doubled", True)]


def test_failed_takes_what_failed_and_everything_downstream_of_it():
    # numbers failed (never succeeded), so doubled never ran: the hole --rerun-failed used to leave
    blocked = states(state("numbers", RunStatus.FAILED))
    chosen, _ = choose([D1], pipelines(), blocked, ROWS, Reprocess.FAILED)
    assert taken(chosen) == [("numbers", False), ("doubled", False)]
    # numbers' rebuild died, its old data is there; doubled read it: both are rebuilt, doubled would be stale else
    died = states(state("numbers", RunStatus.DIED, good="n1"), state("doubled", good="d1", at=1, read={"numbers": "n1"}))
    chosen, _ = choose([D1], pipelines(), died, FULL, Reprocess.FAILED)
    assert taken(chosen) == [("numbers", True), ("doubled", True)]
    chosen, skipped = choose([D1], pipelines(), states(state("doubled", RunStatus.KILLED)), ROWS, Reprocess.FAILED)
    assert taken(chosen) == [("doubled", False)] and skipped[0].why == "not failed (never run)"


def test_missing_leaves_a_failed_rebuild_of_a_day_with_data_and_says_so():
    found = states(state("numbers", RunStatus.FAILED, good="n1"), state("doubled", good="d1", at=1,
                                                                      read={"numbers": "n1"}))
    chosen, skipped = choose([D1], pipelines(), found, FULL)
    assert chosen == [] and "--reprocess failed rebuilds it" in skipped[0].why


def test_stale_is_read_from_the_upstream_run_ids_and_taken_with_its_downstream():
    three = pipelines() + [Pipeline("tripled", lambda run: None, "tripled_t", depends_on=("doubled",))]
    rows = {**FULL, "tripled": {"20260101": 10}}
    rebuilt = states(state("numbers", good="n2", at=5), state("doubled", good="d1", at=1, read={"numbers": "n1"}),
                     state("tripled", good="t1", at=2, read={"doubled": "d1"}))
    chosen, skipped = choose([D1], three, rebuilt, rows)
    assert chosen == [] and [bool(s.stale) for s in skipped] == [False, True, False]
    assert "built from numbers run n1" in skipped[1].why and "--reprocess stale" in skipped[1].why
    chosen, skipped = choose([D1], three, rebuilt, rows, Reprocess.STALE)
    assert taken(chosen) == [("doubled", True), ("tripled", True)] and skipped[0].why == "not stale"
    # a run recorded before the ledger kept upstream run ids: the start times tell
    legacy = states(state("numbers", good="n2", at=5), state("doubled", good="d1", at=1))
    assert stale_reason(legacy[("doubled", D1)], ["numbers"], legacy) == "built before numbers was rebuilt"
    fresh = states(state("numbers", good="n2", at=5), state("doubled", good="d2", at=6))
    assert stale_reason(fresh[("doubled", D1)], ["numbers"], fresh) == ""


@pytest.mark.parametrize("mode, force, rerun_failed, expected", [
    (None, False, False, Reprocess.MISSING), (None, True, False, Reprocess.ALL),
    (None, False, True, Reprocess.FAILED), (None, True, True, Reprocess.FAILED),
    ("stale", False, False, Reprocess.STALE), ("ALL", True, False, Reprocess.ALL)])
def test_the_flags_make_one_mode(mode, force, rerun_failed, expected):
    assert Reprocess.of(mode, force, rerun_failed) is expected


@pytest.mark.parametrize("mode, force, rerun_failed, fragment", [
    ("sometimes", False, False, "--reprocess must be one of missing, failed, stale, all"),
    ("stale", True, False, "disagree"), ("missing", False, True, "disagree")])
def test_modes_that_make_no_sense_are_bad_input(mode, force, rerun_failed, fragment):
    with pytest.raises(BadInput, match=fragment):
        Reprocess.of(mode, force, rerun_failed)


def test_a_stop_names_its_signal():
    s = Scheduler(items(D1, D2))
    s.record(Outcome("numbers", D1, OutcomeStatus.KILLED, signal="SIGINT"))
    assert s.take() is None and {o.error for o in s.finish()[1:]} == {"stopped by SIGINT"}


# --- selection ------------------------------------------------------------------------------------------------------

def registry() -> Registry:
    build = lambda run: None  # noqa: E731
    found = [Pipeline("events", build, "e"), Pipeline("rollup", build, "r", depends_on=("events",)),
             Pipeline("sessions", build, "s", depends_on=("events",)),
             Pipeline("report", build, "x", depends_on=("rollup",), backfillable=False)]
    return Registry(pipelines={p.name: p for p in found}, errors={"pipelines.broken": "broken.py: SyntaxError: x"})


BACKFILLABLE = {"why_not": lambda p: None if p.backfillable else "is not backfillable"}


@pytest.mark.parametrize("chosen, exclude, expected", [
    (None, None, ("events", "rollup", "sessions")),
    ("rollup", None, ("rollup",)),
    ("events+", None, ("events", "rollup", "sessions")),
    ("+rollup", None, ("events", "rollup")),
    ("events+", "sessions", ("events", "rollup")),
    ("sessions, rollup", None, ("rollup", "sessions")),
    (None, "rollup+", ("events", "sessions")),
], ids=["default", "one", "downstream", "upstream", "exclude", "order", "exclude-downstream"])
def test_select_with_plus_and_exclude(chosen, exclude, expected):
    assert select(registry(), chosen, exclude, **BACKFILLABLE).names == expected


def test_what_a_plus_reaches_but_does_not_qualify_is_left_out_with_why():
    picked = select(registry(), "rollup+", None, **BACKFILLABLE)
    assert picked.names == ("rollup",) and picked.left_out == (("report", "is not backfillable"),)
    with pytest.raises(BadInput, match="pipeline report is not backfillable"):
        select(registry(), "report", None, **BACKFILLABLE)


@pytest.mark.parametrize("chosen, exclude, fragment", [
    ("evnts,nosuch", None, "--select: unknown pipelines 'evnts', 'nosuch' (did you mean events? known: events, "
                           "report, rollup, sessions)"),
    ("events", "nosuch", "--exclude: unknown pipeline 'nosuch'"),
    (",", None, "--select ',' names no pipeline"),
    ("events+", "events+", "nothing selected"),
    ("events;rollup", None, "is not a selector"),
    ("broken", None, "did not load: broken.py: SyntaxError"),
], ids=["unknown", "unknown-exclude", "empty", "all-excluded", "bad-selector", "broken"])
def test_bad_selections_are_one_line_of_bad_input(chosen, exclude, fragment):
    with pytest.raises(BadInput) as caught:
        select(registry(), chosen, exclude, **BACKFILLABLE)
    assert fragment in caught.value.line() and "\n" not in caught.value.line()


def test_joined_merges_a_flag_and_its_alias():
    assert joined(None, None) is None and joined(None, []) is None
    assert joined("a", "b+") == "a,b+" and joined(None, ["a", "b"]) == "a,b" and joined(",", None) == ","


# --- days -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["1969-12-31", "2149-06-07", "9999-12-31", "0001-01-01"])
def test_days_outside_clickhouse_date_range_are_bad_input(text):
    with pytest.raises(BadInput, match="outside ClickHouse's Date range"):
        parse_day(text, timezone.utc, allow_future=True)
    with pytest.raises(BadInput, match="outside ClickHouse's Date range"):
        resolve_range(start=text, end="2026-01-01" if text < "2026" else text, max_days=10**7,
                      today=date(9999, 12, 31))


def test_the_ends_of_the_date_range_are_accepted():
    assert parse_day("1970-01-01", timezone.utc) == date(1970, 1, 1)
    assert parse_day("2149-06-06", timezone.utc, allow_future=True) == date(2149, 6, 6)
    with pytest.raises(BadInput, match="--days 30000 goes back before 1970-01-01"):
        resolve_range(days="30000", max_days=10**6, today=date(2026, 3, 1))
    with pytest.raises(BadInput, match="goes back before"):
        resolve_range(days=str(10**9), max_days=10**10, today=date(2026, 3, 1))  # no OverflowError


def days(n: int) -> list[date]:
    return [D1 + timedelta(days=i) for i in range(n)]


def test_a_batch_pipeline_gets_up_to_n_consecutive_ready_days_at_once():
    s = Scheduler([Item("ranged", d) for d in days(10)], batch={"ranged": 4})
    assert [[i.day for i in step] for step in drain(s)] == [days(10)[0:4], days(10)[4:8], days(10)[8:10]]


def test_a_batch_waits_for_its_later_days_dependencies_unless_nothing_else_runs():
    s = Scheduler([i for d in days(3) for i in (Item("numbers", d), Item("ranged", d, ("numbers",)))],
                  batch={"ranged": 3})
    steps = drain(s)
    assert [key(i) for i in steps] == [("numbers", d) for d in days(3)]  # ranged D1 is held back, numbers go on
    for step in steps[:2]:
        s.record(outcome(step))
    assert s.take() is None  # ranged D3 still waits for numbers D3, which runs
    assert [i.day for i in s.take(idle=True)] == days(2)  # nothing runs: the ready days go now
    s.record(outcome(steps[2]))
    assert [i.day for i in s.take()] == [days(3)[2]]


def test_a_batch_covers_only_the_days_the_plan_wants_in_the_plans_day_order():
    wanted = [d for d in days(6) if d != days(6)[2]]  # day 3 was done before
    s = Scheduler([Item("ranged", d) for d in reversed(wanted)], batch={"ranged": 4}, newest_first=True)
    assert [[i.day for i in step] for step in drain(s)] == [wanted[:1:-1], wanted[1::-1]]
