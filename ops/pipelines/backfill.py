"""Backfill: a frozen plan of (pipeline, day) partitions, executed in parallel through the one runner, resumable.

* **plan** (pure apart from one ledger query and one catalog query): the days, the backfillable pipelines chosen
  (``ops.pipelines.selection``), dependency order within each day, and which partitions the reprocessing mode takes
  (``ops.pipelines.reprocess``: missing, failed, stale or all, and everything downstream of what it takes) and
  which it skips, with why. A plan has an id and is stored in ClickHouse (``backfill_plans``) before anything runs;
  ``--dry-run`` shows it and stores nothing, and neither is a plan with nothing to run stored.
* **execute**: up to ``parallel`` partitions at once, a partition only after its dependencies succeeded for the
  same day, each through ``ops.pipelines.runner.run_pipeline`` (trigger ``backfill``, the plan id in the ledger).
  SIGTERM or Ctrl-C stops it: no partition starts after, the running ones end as ``killed``.
* **resume**: the ledger says which partitions of a plan succeeded; resuming does only the rest, and counts on from
  what is done. A day is always replaced whole, so nothing is ever duplicated.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Callable, Collection, Mapping

from ops.clickhouse.client import connect
from ops.core import pidfile
from ops.core.errors import BadInput, ChopsError, WorkFailed
from ops.core.process import user_name
from ops.core.timefmt import stamp, utc_now
from ops.pipelines import interrupt, ledger
from ops.pipelines.batch import run_batch
from ops.pipelines.definition import FIRST_DAY, Registry, days_between, in_date_range
from ops.pipelines.interrupt import Interrupted
from ops.pipelines.ledger import FAILURES, RunStatus, Trigger
from ops.pipelines.reprocess import Reprocess, Skip, choose, has_data, stale_reason
from ops.pipelines.runner import run_pipeline
from ops.pipelines.scheduler import DONE_EARLIER, Item, Outcome, OutcomeStatus, Scheduler
from ops.pipelines.selection import Selection, select

PLANS = "backfill_plans"


@dataclass(frozen=True)
class Plan:
    """What a backfill will do. Frozen: execution and resume consume exactly this."""

    id: str
    start: date
    end: date
    jobs: tuple[str, ...]
    items: tuple[Item, ...]  # to run, in order
    skipped: tuple[Skip, ...]
    reprocess: Reprocess = Reprocess.MISSING
    newest_first: bool = False
    created_at: str = ""
    created_by: str = ""
    # what the plan was made from (not stored): each partition's (newest attempt's status, target rows) then
    facts: Mapping[tuple[str, date], tuple[str, int]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def stale(self) -> tuple[Skip, ...]:
        """The skipped partitions whose data is stale (the mode does not take them)."""
        return tuple(s for s in self.skipped if s.stale)

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "start": self.start, "end": self.end, "jobs": list(self.jobs),
                "partitions": len(self.items), "skipped": len(self.skipped), "stale": len(self.stale),
                "reprocess": self.reprocess, "force": self.reprocess is Reprocess.ALL,
                "created_at": self.created_at, "created_by": self.created_by}


def resolve_range(days: Any = None, start: str | None = None, end: str | None = None, max_days: int = 366,
                  today: date | None = None) -> tuple[date, date]:
    """--days N (ending yesterday) or --start/--end (both inclusive); every impossible combination is BadInput."""
    today = today or utc_now().date()
    if days is not None and (start or end):
        raise BadInput("give --days or --start/--end, not both")
    if days is not None:
        try:
            n = int(str(days).strip())
        except ValueError:
            raise BadInput(f"--days must be a whole number, got {days!r}") from None
        if n < 1:
            raise BadInput(f"--days must be at least 1, got {n}")
        last = today - timedelta(days=1)
        first = last - timedelta(days=min(n, (last - FIRST_DAY).days + 2) - 1)
        if first < FIRST_DAY:
            raise BadInput(f"--days {n} goes back before {FIRST_DAY}, where ClickHouse's Date range begins")
    else:
        if not start:
            raise BadInput("give --days N, or --start YYYY-MM-DD (and optionally --end)")
        first = _date(start, "--start")
        last = _date(end, "--end") if end else today - timedelta(days=1)
        if first > last:
            raise BadInput(f"--start {first} is after --end {last}")
    if last > today:
        raise BadInput(f"--end {last} is in the future (today is {today})")
    count = (last - first).days + 1
    if count > max_days:
        raise BadInput(f"{count} days is more than backfill.max_days ({max_days})",
                       hint=f"pass --max-days {count} if you mean it")
    return first, last


def _date(text: str, flag: str) -> date:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", (text or "").strip()):
        raise BadInput(f"{flag} {text!r} must be YYYY-MM-DD")
    try:
        return in_date_range(date.fromisoformat(text.strip()), flag)
    except ValueError:
        raise BadInput(f"{flag} {text!r} does not exist") from None


def select_jobs(registry: Registry, chosen: str | None = None, exclude: str | None = None) -> Selection:
    """The pipelines to backfill: every backfillable one, or those ``--select`` chooses less those ``--exclude``
    does (``ops.pipelines.selection``); one named that is not backfillable is bad input."""
    if chosen is None and not any(p.backfillable for p in registry.pipelines.values()):
        raise BadInput("no backfillable pipelines (see: inv backfill.list)")
    return select(registry, chosen, exclude,
                  why_not=lambda p: None if p.backfillable else "is not backfillable (backfillable=False in its "
                                                                  "definition)")


def make_plan(settings, db, registry: Registry, first: date, last: date, jobs: list[str] | tuple[str, ...],
              reprocess: Reprocess = Reprocess.MISSING, newest_first: bool = False) -> Plan:
    """Decide every partition: run it, or skip it, and why. Two queries whatever the range: the ledger's
    partition states (``ops.pipelines.ledger.partition_states``) and the targets' rows per partition."""
    states = ledger.partition_states(db, first, last)
    ordered = [registry.get(name) for name in jobs]
    by_target = db.partition_rows_of({p.target for p in ordered})
    rows = {p.name: by_target[p.target] for p in ordered}
    depends = {name: p.depends_on for name, p in registry.pipelines.items()}
    days = days_between(first, last)
    items, skipped = choose(days[::-1] if newest_first else days, ordered, states, rows, reprocess, depends)
    facts = {}
    for p in ordered:
        for day in days:
            state = states.get((p.name, day))
            facts[(p.name, day)] = (str(state.status) if state else NEVER_RUN, rows[p.name].get(f"{day:%Y%m%d}", 0))
    now = utc_now()
    return Plan(id=f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}", start=first, end=last, jobs=tuple(jobs),
                items=tuple(items), skipped=tuple(skipped), reprocess=reprocess, newest_first=newest_first,
                created_at=stamp(now), created_by=f"{user_name()}@{socket.gethostname()}", facts=facts)


NEVER_RUN = "never run"
#: The columns of a dry run's summary, per pipeline.
PLAN_SUMMARY = ("run", "rebuild", "skipped", "failed_now", "stale_left")


def plan_partitions(plan: Plan) -> list[dict[str, Any]]:
    """Every partition of the range as a dry run shows it (what the plan does with it, its status and rows when
    the plan was made), in the plan's day order; pure: the facts came with the plan."""
    out = []
    for item in plan.items:
        status, rows = plan.facts.get((item.pipeline, item.day), (NEVER_RUN, 0))
        out.append({"pipeline": item.pipeline, "day": item.day, "action": "rebuild" if item.rebuild else "run",
                    "status": status, "rows": rows})
    for skip in plan.skipped:
        status, rows = plan.facts.get((skip.pipeline, skip.day), (NEVER_RUN, 0))
        out.append({"pipeline": skip.pipeline, "day": skip.day, "action": f"skip ({skip.why})", "status": status,
                    "rows": rows, "stale": skip.stale or None})
    out.sort(key=lambda r: (r["day"], plan.jobs.index(r["pipeline"])), reverse=plan.newest_first)
    return out


def plan_summary(plan: Plan) -> list[dict[str, Any]]:
    """One row per pipeline of a dry run: partitions to run (never built, or rows gone), to rebuild (they hold
    data), skipped, whose newest attempt failed (``failed_now``) and left stale by the mode (``stale_left``)."""
    rows = {name: {"pipeline": name, **{k: 0 for k in PLAN_SUMMARY}} for name in plan.jobs}
    for item in plan.items:
        rows[item.pipeline]["rebuild" if item.rebuild else "run"] += 1
    for skip in plan.skipped:
        rows[skip.pipeline]["skipped"] += 1
        rows[skip.pipeline]["stale_left"] += bool(skip.stale)
    for (name, _), (status, _) in plan.facts.items():
        if name in rows and status in FAILURES:
            rows[name]["failed_now"] += 1
    return list(rows.values())


def require_plans_table(db) -> None:
    if not db.has_table(PLANS):
        raise WorkFailed("the backfill plans table does not exist", hint="run: inv db.migrate")


def store(db, plan: Plan) -> None:
    """Write the frozen plan before anything runs. A plan with nothing to run is not stored."""
    if not plan.items:
        raise BadInput(f"plan {plan.id} has nothing to run; it is not stored")
    require_plans_table(db)
    db.insert_rows(PLANS, [{
        "plan_id": plan.id, "created_at": plan.created_at.replace(" UTC", ""), "created_by": plan.created_by,
        "start": str(plan.start), "end": str(plan.end), "jobs": list(plan.jobs),
        "options": json.dumps({"reprocess": str(plan.reprocess), "newest_first": plan.newest_first}),
        "items": json.dumps([[i.pipeline, str(i.day), list(i.depends_on), i.rebuild] for i in plan.items]),
        "skipped": json.dumps([[s.pipeline, str(s.day), s.why, s.stale] for s in plan.skipped]),
    }])


def load(db, plan_id: str) -> Plan:
    require_plans_table(db)
    rows = db.rows(f"SELECT * FROM {PLANS} WHERE plan_id = {{id:String}} LIMIT 1", {"id": plan_id.strip()})
    if not rows:
        raise BadInput(f"unknown plan id {plan_id!r}", hint="see: inv backfill.plans")
    r = rows[0]
    options = json.loads(r["options"])
    # plans stored before reprocessing modes: {"force": …, "rerun_failed": …}; items without rebuild, skips as 3
    mode = Reprocess(options["reprocess"]) if "reprocess" in options else \
        Reprocess.of(force=options.get("force", False), rerun_failed=options.get("rerun_failed", False))
    return Plan(
        id=r["plan_id"], start=r["start"], end=r["end"], jobs=tuple(r["jobs"]),
        items=tuple(Item(p, date.fromisoformat(d), tuple(deps), bool(more[0]) if more else mode is Reprocess.ALL)
                    for p, d, deps, *more in json.loads(r["items"])),
        skipped=tuple(Skip(p, date.fromisoformat(d), why, more[0] if more and isinstance(more[0], str) else "")
                      for p, d, why, *more in json.loads(r["skipped"])),
        reprocess=mode, newest_first=options["newest_first"],
        created_at=stamp(r["created_at"]), created_by=r["created_by"],
    )


def recent_plans(db, limit: int = 20) -> list[dict[str, Any]]:
    require_plans_table(db)
    rows = db.rows(f"SELECT plan_id FROM {PLANS} ORDER BY created_at DESC LIMIT {int(limit)}")
    out = []
    for r in rows:
        plan = load(db, r["plan_id"])
        progress = plan_progress(db, plan)
        out.append({**plan.summary(), **progress})
    return out


def plan_progress(db, plan: Plan) -> dict[str, Any]:
    """Counts of the plan's partitions by the status of their newest attempt under this plan."""
    state = ledger.plan_states(db, plan.id)
    counts = {"succeeded": 0, "failed": 0, "running": 0, "pending": 0}
    for item in plan.items:
        s = state.get((item.pipeline, item.day))
        key = "succeeded" if s == RunStatus.SUCCEEDED else "running" if s == RunStatus.RUNNING else \
            "failed" if s in FAILURES else "pending"
        counts[key] += 1
    total = len(plan.items)
    counts["done_percent"] = round(100 * counts["succeeded"] / total, 1) if total else 100.0
    return counts


# --- execution ------------------------------------------------------------------------------------------------------

def done_before(db, plan: Plan) -> set[tuple[str, date]]:
    """The plan's partitions that an earlier execution of it built: a resume skips them and counts on from them."""
    return ledger.succeeded_in_plan(db, plan.id) & {(i.pipeline, i.day) for i in plan.items}


def execute(settings, plan: Plan, registry: Registry, parallel: int = 1, fail_fast: bool = False,
            progress: Callable[[Outcome, int, int], None] | None = None,
            started: Callable[[Item], None] | None = None, db=None,
            done: Collection[tuple[str, date]] | None = None) -> list[Outcome]:
    """Run the plan's partitions: dependencies first within a day, ``parallel`` at a time. Returns every outcome.
    ``db``: a connection to use in this thread (worker threads open their own); ``done``: the partitions an earlier
    execution built (default: :func:`done_before`). Which partition starts when is the
    :class:`~ops.pipelines.scheduler.Scheduler`'s call; this loop runs them and keeps the pid file's progress.
    SIGTERM and Ctrl-C (``ops.pipelines.interrupt``) end the runs under way as killed (at once: their statements
    are cancelled) and start nothing more; what did not start is reported as not started, and why."""
    if parallel < 1:
        raise BadInput(f"--parallel must be at least 1, got {parallel}")
    db = db or connect(settings)
    schedule = Scheduler(plan.items, done=done_before(db, plan) if done is None else done, fail_fast=fail_fast,
                         batch={name: registry.get(name).batch_days for name in plan.jobs},
                         newest_first=plan.newest_first)
    total = len(plan.items)
    work = _Worker(settings, plan, registry, db)

    def note_progress() -> None:
        pidfile.working(settings, "backfill", f"plan {plan.id}", progress=f"{schedule.count}/{total}")

    note_progress()
    running: set[Future] = set()
    # One at a time runs in this (main) thread; with more, runs are threads. Either way a signal is noted by
    # ops.pipelines.interrupt, cancels the runs' statements, and this loop starts nothing after it.
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="backfill") if parallel > 1 else _Inline()
    # ledger.batched: on the embedded engine the runs of this thread write the ledger through a write-ahead file
    with interrupt.scope(settings), ledger.batched(db, plan.start, plan.end), pool:
        while True:
            while len(running) < parallel and not interrupt.requested():
                step = schedule.take(idle=not running)
                if step is None:
                    break
                if isinstance(step, Outcome):  # blocked by a failed dependency
                    if progress:
                        progress(step, schedule.count, total)
                    continue
                for item in step if isinstance(step, tuple) else (step,):
                    if started:
                        started(item)
                running.add(pool.submit(work, step))
            if not running:
                break  # nothing runs and nothing more can start: what is pending is reported below
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                running.discard(future)
                result = future.result()
                for outcome in result if isinstance(result, list) else [result]:
                    schedule.record(outcome)
                    note_progress()
                    if progress:
                        progress(outcome, schedule.count, total)
        signum = interrupt.requested()
    if signum:
        schedule.stop(by_signal=Interrupted(signum).signal)
    return schedule.finish()


class _Worker:
    """Runs one partition through the runner in the calling thread, on that thread's own connection (the main
    thread's is the one ``execute`` was given), and says what became of it."""

    def __init__(self, settings, plan: Plan, registry: Registry, db):
        self.settings, self.plan, self.registry, self.db = settings, plan, registry, db
        self.local = threading.local()

    def __call__(self, item: Item | tuple[Item, ...]) -> Outcome | list[Outcome]:
        if not hasattr(self.local, "db"):
            main = threading.current_thread() is threading.main_thread()
            self.local.db = self.db if main else connect(self.settings)
        if isinstance(item, tuple):
            return self.batch(item)
        t0 = time.monotonic()
        try:
            result = run_pipeline(self.settings, item.pipeline, item.day.isoformat(), trigger=Trigger.BACKFILL,
                                  force=item.rebuild, plan_id=self.plan.id, registry=self.registry,
                                  db=self.local.db)
        except Interrupted as exc:  # a signal: this partition was killed (or never began); nothing more starts
            status = OutcomeStatus.KILLED if exc.run_id else OutcomeStatus.NOT_STARTED
            return Outcome(item.pipeline, item.day, status, seconds=time.monotonic() - t0,
                           error=_unprefixed(exc.message, item), signal=exc.signal)
        except ChopsError as exc:
            return Outcome(item.pipeline, item.day, OutcomeStatus.FAILED, seconds=time.monotonic() - t0,
                           error=_unprefixed(exc.message, item))
        status = OutcomeStatus.SKIPPED if result.status == RunStatus.SKIPPED else OutcomeStatus.SUCCEEDED
        return Outcome(item.pipeline, item.day, status, rows=int(result.rows or 0), seconds=time.monotonic() - t0,
                       error=result.reason)

    def batch(self, items: tuple[Item, ...]) -> list[Outcome]:
        """Consecutive days of one pipeline built as one range (``ops.pipelines.batch``): an outcome per day."""
        t0 = time.monotonic()
        p = self.registry.get(items[0].pipeline)
        try:
            results = run_batch(self.settings, self.local.db, p, [i.day for i in items],
                                force={i.day: i.rebuild for i in items}, plan_id=self.plan.id)
        except Interrupted as exc:  # a signal before any day began
            return [Outcome(i.pipeline, i.day, OutcomeStatus.NOT_STARTED, error=exc.message, signal=exc.signal)
                    for i in items]
        seconds = (time.monotonic() - t0) / len(items)
        return [Outcome(p.name, r.day, _BATCH[r.status], rows=r.rows, seconds=seconds, error=r.error,
                        signal=r.signal) for r in results]


_BATCH = {RunStatus.SUCCEEDED: OutcomeStatus.SUCCEEDED, RunStatus.SKIPPED: OutcomeStatus.SKIPPED,
          RunStatus.FAILED: OutcomeStatus.FAILED, RunStatus.KILLED: OutcomeStatus.KILLED}


def _unprefixed(message: str, item: Item) -> str:
    """A run's error without the "pipeline day: " it starts with: an outcome is shown beside its partition."""
    prefix = f"{item.pipeline} {item.day}: "
    return message[len(prefix):] if message.startswith(prefix) else message


class _Inline:
    """An executor that runs each task at once in the calling thread (for --parallel 1)."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # surfaced by future.result(), as with a pool
            future.set_exception(exc)
        return future

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


#: The columns of a backfill's summary, per pipeline: what became of each partition of the range.
SUMMARY = ("done", "failed", "killed", "blocked", "not_run", "skipped", "stale")
_KEY = {OutcomeStatus.SUCCEEDED: "done", OutcomeStatus.FAILED: "failed", OutcomeStatus.KILLED: "killed",
        OutcomeStatus.BLOCKED: "blocked", OutcomeStatus.NOT_STARTED: "not_run", OutcomeStatus.SKIPPED: "skipped"}


def summarize(outcomes: list[Outcome], plan: Plan) -> list[dict[str, Any]]:
    """One row per pipeline: partitions done (now, or earlier in this plan), failed, killed, blocked (a dependency
    failed), not run (the backfill stopped first), skipped (done before; the mode did not take them), stale (the
    mode did not take them, and their data is stale), rows and seconds; ``succeeded``: those of ``done`` built by
    this execution."""
    rows = {name: {"pipeline": name, **{k: 0 for k in SUMMARY}, "succeeded": 0, "rows": 0, "seconds": 0.0}
            for name in plan.jobs}
    for s in plan.skipped:
        rows[s.pipeline]["stale" if s.stale else "skipped"] += 1
    for o in outcomes:
        r = rows[o.pipeline]
        r["succeeded"] += o.status == OutcomeStatus.SUCCEEDED
        r["done" if o.status == OutcomeStatus.SKIPPED and o.error == DONE_EARLIER else _KEY[o.status]] += 1
        r["rows"] += o.rows
        r["seconds"] = round(r["seconds"] + o.seconds, 2)
    return list(rows.values())


def stopped_by(outcomes: list[Outcome]) -> str:
    """The signal (by name) that stopped the backfill, or ''."""
    return next((o.signal for o in outcomes if o.signal), "")


# --- counts, coverage, verify -----------------------------------------------------------------------------------

GRID = {RunStatus.SUCCEEDED: "✓", RunStatus.FAILED: "✗", RunStatus.KILLED: "✗", RunStatus.DIED: "✗",
        RunStatus.RUNNING: "▶", RunStatus.GONE: "!", RunStatus.STALE: "~", None: "·"}
LEGEND = ("✓ succeeded  ✗ failed  ▶ running  · never run  ! succeeded but its rows are gone  "
          "~ stale: built before its upstream was rebuilt")


def counts(db, registry: Registry, first: date, last: date, jobs: list[str] | tuple[str, ...],
           threshold: float) -> dict[str, Any]:
    """Rows per day per target (from the parts, no scan), flags, the pipelines × days coverage grid, and the
    stale partitions with why."""
    days = days_between(first, last)
    states = ledger.partition_states(db, first, last)
    ordered = [registry.get(name) for name in jobs]
    by_target = db.partition_rows_of({p.target for p in ordered})
    depends = {name: p.depends_on for name, p in registry.pipelines.items()}
    tables, grid, stale = [], [], []
    for p in ordered:
        by_id = by_target[p.target]
        series, previous, cells = [], None, {}
        for day in days:
            rows = by_id.get(f"{day:%Y%m%d}", 0)
            flags = []
            if rows == 0:
                flags.append("no data")
            elif previous:
                change = (rows - previous) / previous
                if abs(change) > threshold:
                    flags.append(f"{change:+.0%} vs previous day")
            series.append({"day": day, "rows": rows, "flags": flags})
            previous = rows or None
            state = states.get((p.name, day))
            status = state.status if state else None
            why = stale_reason(state, depends[p.name], states) if has_data(state, p, by_id) else ""
            if why:
                stale.append({"pipeline": p.name, "day": day, "why": why})
            if status == RunStatus.SUCCEEDED:
                status = RunStatus.STALE if why else status if has_data(state, p, by_id) else RunStatus.GONE
            cells[str(day)] = status
        tables.append({"pipeline": p.name, "target": p.target, "days": series})
        grid.append({"pipeline": p.name, "days": cells})
    return {"start": first, "end": last, "threshold": threshold, "tables": tables, "coverage": grid, "stale": stale}


def verify(db, registry: Registry, first: date, last: date, jobs: list[str],
           progress: Callable[[str, date], None] | None = None) -> list[dict[str, Any]]:
    """Run each pipeline's checks on the target's data for each day, rewriting nothing. Each result says what the
    check found when it failed (``says``: e.g. "16 rows, expected at least 100")."""
    results = []
    for day in days_between(first, last):
        for name in jobs:
            p = registry.get(name)
            source = f"(SELECT * FROM `{p.target}` WHERE _partition_id = partitionId({{day:Date}}))"
            rows = int(db.scalar(f"SELECT count() FROM {source}", {"day": day}) or 0)
            for check in p.checks:
                bad = int(db.scalar(check.sql.replace("{table}", source), {"day": day}) or 0)
                found = None
                if bad and check.found:
                    found = db.scalar(f"SELECT {check.found.replace('{table}', source)} FROM {source}", {"day": day})
                results.append({"pipeline": name, "day": day, "check": check.name, "rows": rows, "bad": bad,
                                "passed": bad == 0, "says": check.explain(bad, found) if bad else "ok"})
            if progress:
                progress(name, day)
    return results
