"""Backfill: a frozen plan of (pipeline, day) partitions, executed in parallel through the one runner, resumable.

* **plan** (pure apart from reading the ledger): the days, the backfillable pipelines, dependency order within
  each day, and what is skipped because it already succeeded. A plan has an id and is stored in ClickHouse
  (``backfill_plans``) before anything runs; ``--dry-run`` shows it and stores nothing.
* **execute**: up to ``parallel`` partitions at once, a partition only after its dependencies succeeded for the
  same day, each through ``ops.pipelines.runner.run_pipeline`` (trigger ``backfill``, the plan id in the ledger).
* **resume**: the ledger says which partitions of a plan succeeded; resuming (or running the same command again)
  does only the rest. A day is always replaced whole, so nothing is ever duplicated.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Any, Callable, Sequence

from ops.clickhouse.client import connect
from ops.core import pidfile
from ops.core.errors import BadInput, ChopsError, WorkFailed
from ops.core.process import user_name
from ops.core.timefmt import stamp, utc_now
from ops.pipelines import ledger
from ops.pipelines.definition import Pipeline, Registry, days_between
from ops.pipelines.ledger import FAILURES, RunStatus, Trigger
from ops.pipelines.runner import Interrupted, run_pipeline
from ops.pipelines.scheduler import Item, Outcome, OutcomeStatus, Scheduler

PLANS = "backfill_plans"


class Reprocess(StrEnum):
    """Which partitions of the range a backfill takes, and whether a day that succeeded is built again."""

    NORMAL = "normal"  # every partition that has not succeeded
    FORCE = "force"  # every partition; one that succeeded is rebuilt (--force)
    RERUN_FAILED = "rerun_failed"  # only those whose newest attempt failed, died or was killed (--rerun-failed)
    RERUN_FAILED_FORCED = "rerun_failed_forced"  # those, rebuilt even where an earlier attempt succeeded (both)

    @classmethod
    def of(cls, force: bool = False, rerun_failed: bool = False) -> "Reprocess":
        """The mode of the ``--force`` and ``--rerun-failed`` flags."""
        if rerun_failed:
            return cls.RERUN_FAILED_FORCED if force else cls.RERUN_FAILED
        return cls.FORCE if force else cls.NORMAL

    @property
    def force(self) -> bool:
        """A day that succeeded is built again (the runner's ``force``)."""
        return self in (Reprocess.FORCE, Reprocess.RERUN_FAILED_FORCED)

    @property
    def only_failed(self) -> bool:
        return self in (Reprocess.RERUN_FAILED, Reprocess.RERUN_FAILED_FORCED)


@dataclass(frozen=True)
class Plan:
    """What a backfill will do. Frozen: execution and resume consume exactly this."""

    id: str
    start: date
    end: date
    jobs: tuple[str, ...]
    items: tuple[Item, ...]  # to run, in order
    skipped: tuple[tuple[str, date, str], ...]  # (pipeline, day, why)
    reprocess: Reprocess = Reprocess.NORMAL
    newest_first: bool = False
    created_at: str = ""
    created_by: str = ""

    @property
    def force(self) -> bool:
        return self.reprocess.force

    @property
    def rerun_failed(self) -> bool:
        return self.reprocess.only_failed

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "start": self.start, "end": self.end, "jobs": list(self.jobs),
                "partitions": len(self.items), "skipped": len(self.skipped), "force": self.force,
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
        first = last - timedelta(days=n - 1)
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
        return date.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"{flag} {text!r} does not exist") from None


def select_jobs(registry: Registry, jobs: str | list[str] | None) -> list[str]:
    """The pipelines to backfill: every backfillable one, or the named ones (which must be backfillable)."""
    if not jobs:
        names = [p.name for p in registry.ordered() if p.backfillable]
        if not names:
            raise BadInput("no backfillable pipelines (see: inv backfill.list)")
        return names
    names = [j.strip() for j in (jobs.split(",") if isinstance(jobs, str) else jobs) if j.strip()]
    for name in names:
        if not registry.get(name).backfillable:
            raise BadInput(f"pipeline {name} is not backfillable (backfillable=False in its definition)")
    return [p.name for p in registry.ordered(names)]


def make_plan(settings, db, registry: Registry, first: date, last: date, jobs: list[str],
              reprocess: Reprocess = Reprocess.NORMAL, newest_first: bool = False) -> Plan:
    """Decide every partition: run it, or skip it (already succeeded, or not failed under --rerun-failed)."""
    latest = ledger.latest_by_partition(db, jobs, first, last)
    ordered = [registry.get(name) for name in jobs]
    rows = {p.name: target_rows(db, p.target) for p in ordered}
    days = days_between(first, last)
    items, skipped = choose(days[::-1] if newest_first else days, ordered, latest, rows, reprocess)
    now = utc_now()
    return Plan(id=f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}", start=first, end=last, jobs=tuple(jobs),
                items=tuple(items), skipped=tuple(skipped), reprocess=reprocess, newest_first=newest_first,
                created_at=stamp(now), created_by=f"{user_name()}@{socket.gethostname()}")


def choose(days: Sequence[date], pipelines: Sequence[Pipeline], latest: dict[tuple[str, date], dict],
           rows: dict[str, dict[str, int]], reprocess: Reprocess = Reprocess.NORMAL,
           ) -> tuple[list[Item], list[tuple[str, date, str]]]:
    """The partitions to run, day by day in the order of ``days``, each day's ``pipelines`` in their order (give them
    dependencies first), and those skipped with why. Pure: ``latest`` is the newest attempt of each (pipeline, day),
    ``rows`` each pipeline's target rows per partition id."""
    names = {p.name for p in pipelines}
    items, skipped = [], []
    for day in days:
        for p in pipelines:
            last_try = latest.get((p.name, day))
            status = last_try["status"] if last_try else None
            if status == RunStatus.SUCCEEDED and not p.allow_empty and not rows[p.name].get(f"{day:%Y%m%d}"):
                status = RunStatus.GONE  # the ledger says done, but the day's rows are not there (dropped since)
            if reprocess.only_failed and status not in FAILURES:
                skipped.append((p.name, day, f"not failed ({status or 'never run'})"))
            elif status == RunStatus.SUCCEEDED and not reprocess.force:
                skipped.append((p.name, day, "already succeeded"))
            else:
                items.append(Item(p.name, day, tuple(d for d in p.depends_on if d in names)))
    return items, skipped


def target_rows(db, table: str) -> dict[str, int]:
    """Rows per partition id of a table, from its active parts (no scan)."""
    return db.partition_rows(table)


def require_plans_table(db) -> None:
    if not db.has_table(PLANS):
        raise WorkFailed("the backfill plans table does not exist", hint="run: inv db.migrate")


def store(db, plan: Plan) -> None:
    """Write the frozen plan before anything runs."""
    require_plans_table(db)
    db.insert_rows(PLANS, [{
        "plan_id": plan.id, "created_at": plan.created_at.replace(" UTC", ""), "created_by": plan.created_by,
        "start": str(plan.start), "end": str(plan.end), "jobs": list(plan.jobs),
        "options": json.dumps({"force": plan.force, "rerun_failed": plan.rerun_failed,
                               "newest_first": plan.newest_first}),
        "items": json.dumps([[i.pipeline, str(i.day), list(i.depends_on)] for i in plan.items]),
        "skipped": json.dumps([[p, str(d), why] for p, d, why in plan.skipped]),
    }])


def load(db, plan_id: str) -> Plan:
    require_plans_table(db)
    rows = db.rows(f"SELECT * FROM {PLANS} WHERE plan_id = {{id:String}} LIMIT 1", {"id": plan_id.strip()})
    if not rows:
        raise BadInput(f"unknown plan id {plan_id!r}", hint="see: inv backfill.plans")
    r = rows[0]
    options = json.loads(r["options"])
    return Plan(
        id=r["plan_id"], start=r["start"], end=r["end"], jobs=tuple(r["jobs"]),
        items=tuple(Item(p, date.fromisoformat(d), tuple(deps)) for p, d, deps in json.loads(r["items"])),
        skipped=tuple((p, date.fromisoformat(d), why) for p, d, why in json.loads(r["skipped"])),
        reprocess=Reprocess.of(options["force"], options["rerun_failed"]), newest_first=options["newest_first"],
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

def execute(settings, plan: Plan, registry: Registry, parallel: int = 1, fail_fast: bool = False,
            progress: Callable[[Outcome, int, int], None] | None = None,
            started: Callable[[Item], None] | None = None, db=None) -> list[Outcome]:
    """Run the plan's partitions: dependencies first within a day, ``parallel`` at a time. Returns every outcome.
    ``db``: a connection to use in this thread (worker threads open their own). Which partition starts when is
    the :class:`~ops.pipelines.scheduler.Scheduler`'s call; this loop runs them, keeps the pid file's progress and
    turns SIGTERM and Ctrl-C into a stop."""
    if parallel < 1:
        raise BadInput(f"--parallel must be at least 1, got {parallel}")
    db = db or connect(settings)
    schedule = Scheduler(plan.items, done=ledger.succeeded_in_plan(db, plan.id), fail_fast=fail_fast)
    total = len(plan.items)
    work = _Worker(settings, plan, registry, db)

    def note_progress() -> None:
        pidfile.working(settings, "backfill", f"plan {plan.id}", progress=f"{schedule.count}/{total}")

    note_progress()
    running: set[Future] = set()
    # One at a time runs in this (main) thread, where SIGTERM reaches the run and ends it cleanly as killed.
    # With more, runs are threads: SIGTERM stops new partitions, and the running ones finish.
    signalled = threading.Event()
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="backfill") if parallel > 1 else _Inline()
    previous_handler = _stop_on_sigterm(signalled) if parallel > 1 else None
    with pool:
        try:
            while True:
                while len(running) < parallel and not signalled.is_set():
                    step = schedule.take()
                    if step is None:
                        break
                    if isinstance(step, Outcome):  # blocked by a failed dependency
                        if progress:
                            progress(step, schedule.count, total)
                        continue
                    if started:
                        started(step)
                    running.add(pool.submit(work, step))
                if not running:
                    break  # nothing runs and nothing more can start: what is pending is reported below
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    running.discard(future)
                    outcome = future.result()
                    schedule.record(outcome)
                    note_progress()
                    if progress:
                        progress(outcome, schedule.count, total)
        except KeyboardInterrupt:
            schedule.stop()
            for future in running:
                future.cancel()
            raise
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGTERM, previous_handler)
    if signalled.is_set():
        schedule.stop(by_signal=True)
    return schedule.finish()


class _Worker:
    """Runs one partition through the runner in the calling thread, on that thread's own connection (the main
    thread's is the one ``execute`` was given), and says what became of it."""

    def __init__(self, settings, plan: Plan, registry: Registry, db):
        self.settings, self.plan, self.registry, self.db = settings, plan, registry, db
        self.local = threading.local()

    def __call__(self, item: Item) -> Outcome:
        if not hasattr(self.local, "db"):
            main = threading.current_thread() is threading.main_thread()
            self.local.db = self.db if main else connect(self.settings)
        t0 = time.monotonic()
        try:
            result = run_pipeline(self.settings, item.pipeline, item.day.isoformat(), trigger=Trigger.BACKFILL,
                                  force=self.plan.force, plan_id=self.plan.id, registry=self.registry,
                                  db=self.local.db)
        except Interrupted as exc:  # SIGTERM: this partition ended as killed; the scheduler starts nothing more
            return Outcome(item.pipeline, item.day, OutcomeStatus.KILLED, seconds=time.monotonic() - t0,
                           error=exc.message)
        except ChopsError as exc:
            return Outcome(item.pipeline, item.day, OutcomeStatus.FAILED, seconds=time.monotonic() - t0,
                           error=exc.message)
        status = OutcomeStatus.SKIPPED if result.status == RunStatus.SKIPPED else OutcomeStatus.SUCCEEDED
        return Outcome(item.pipeline, item.day, status, rows=int(result.rows or 0), seconds=time.monotonic() - t0,
                       error=result.reason)


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


def _stop_on_sigterm(signalled: threading.Event):
    """SIGTERM sets ``signalled`` (no new partitions start); returns the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        signalled.set()

    return signal.signal(signal.SIGTERM, handler)


def summarize(outcomes: list[Outcome], plan: Plan) -> list[dict[str, Any]]:
    """One row per pipeline: succeeded, skipped, failed, blocked, rows, seconds."""
    rows: dict[str, dict[str, Any]] = {name: {"pipeline": name, "succeeded": 0, "skipped": 0, "failed": 0,
                                              "blocked": 0, "rows": 0, "seconds": 0.0} for name in plan.jobs}
    for name, _, _ in plan.skipped:
        rows[name]["skipped"] += 1
    for o in outcomes:
        r = rows[o.pipeline]
        key = {OutcomeStatus.NOT_STARTED: "blocked", OutcomeStatus.KILLED: "failed"}.get(o.status, str(o.status))
        r[key] += 1
        r["rows"] += o.rows
        r["seconds"] = round(r["seconds"] + o.seconds, 2)
    return list(rows.values())


# --- counts, coverage, verify -----------------------------------------------------------------------------------

GRID = {RunStatus.SUCCEEDED: "✓", RunStatus.FAILED: "✗", RunStatus.KILLED: "✗", RunStatus.DIED: "✗",
        RunStatus.RUNNING: "▶", RunStatus.GONE: "!", None: "·"}
LEGEND = "✓ succeeded  ✗ failed  ▶ running  · never run  ! succeeded but its rows are gone"


def counts(db, registry: Registry, first: date, last: date, jobs: list[str], threshold: float) -> dict[str, Any]:
    """Rows per day per target (from the parts, no scan), flags, and the pipelines × days coverage grid."""
    days = days_between(first, last)
    latest = ledger.latest_by_partition(db, jobs, first, last)
    tables = []
    for name in jobs:
        p = registry.get(name)
        by_id = target_rows(db, p.target)
        series, previous = [], None
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
        tables.append({"pipeline": name, "target": p.target, "days": series})
    grid = []
    for t in tables:
        p = registry.get(t["pipeline"])
        cells = {}
        for d in t["days"]:
            status = (latest.get((p.name, d["day"])) or {}).get("status")
            if status == RunStatus.SUCCEEDED and d["rows"] == 0 and not p.allow_empty:
                status = RunStatus.GONE
            cells[str(d["day"])] = status
        grid.append({"pipeline": p.name, "days": cells})
    return {"start": first, "end": last, "threshold": threshold, "tables": tables, "coverage": grid}


def verify(db, registry: Registry, first: date, last: date, jobs: list[str],
           progress: Callable[[str, date], None] | None = None) -> list[dict[str, Any]]:
    """Run each pipeline's checks on the target's data for each day, rewriting nothing."""
    results = []
    for day in days_between(first, last):
        for name in jobs:
            p = registry.get(name)
            source = f"(SELECT * FROM `{p.target}` WHERE _partition_id = partitionId({{day:Date}}))"
            rows = int(db.scalar(f"SELECT count() FROM {source}", {"day": day}) or 0)
            for check in p.checks:
                bad = int(db.scalar(check.sql.replace("{table}", source), {"day": day}) or 0)
                results.append({"pipeline": name, "day": day, "check": check.name, "rows": rows, "bad": bad,
                                "passed": bad == 0})
            if progress:
                progress(name, day)
    return results
