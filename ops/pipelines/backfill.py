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
import os
import socket
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

from ops.pipelines import ledger
from ops.core.errors import BadInput, ChopsError, WorkFailed
from ops.pipelines.definition import Registry, load_pipelines
from ops.core import pidfile

PLANS = "backfill_plans"


@dataclass(frozen=True)
class Item:
    pipeline: str
    day: date
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """What a backfill will do. Frozen: execution and resume consume exactly this."""

    id: str
    start: date
    end: date
    jobs: tuple[str, ...]
    items: tuple[Item, ...]  # to run, in order
    skipped: tuple[tuple[str, date, str], ...]  # (pipeline, day, why)
    force: bool = False
    rerun_failed: bool = False
    newest_first: bool = False
    created_at: str = ""
    created_by: str = ""

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "start": self.start, "end": self.end, "jobs": list(self.jobs),
                "partitions": len(self.items), "skipped": len(self.skipped), "force": self.force,
                "created_at": self.created_at, "created_by": self.created_by}


def resolve_range(days: Any = None, start: str | None = None, end: str | None = None, max_days: int = 366,
                  today: date | None = None) -> tuple[date, date]:
    """--days N (ending yesterday) or --start/--end (both inclusive); every impossible combination is BadInput."""
    today = today or datetime.now(timezone.utc).date()
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
    import re

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


def make_plan(settings, db, registry: Registry, first: date, last: date, jobs: list[str], force: bool = False,
              rerun_failed: bool = False, newest_first: bool = False) -> Plan:
    """Decide every partition: run it, or skip it (already succeeded, or not failed under --rerun-failed)."""
    latest = ledger.latest_by_partition(db, jobs, first, last)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    if newest_first:
        days.reverse()
    ordered = [registry.get(name) for name in jobs]
    rows = {p.name: target_rows(db, p.target) for p in ordered}
    items, skipped = [], []
    for day in days:
        for p in ordered:
            last_try = latest.get((p.name, day))
            status = last_try["status"] if last_try else None
            if status == "succeeded" and not p.allow_empty and not rows[p.name].get(f"{day:%Y%m%d}"):
                status = "gone"  # the ledger says done, but the day's rows are not there (dropped since)
            if rerun_failed and status not in ("failed", "died", "killed"):
                skipped.append((p.name, day, f"not failed ({status or 'never run'})"))
            elif status == "succeeded" and not force:
                skipped.append((p.name, day, "already succeeded"))
            else:
                items.append(Item(p.name, day, tuple(d for d in p.depends_on if d in jobs)))
    now = datetime.now(timezone.utc)
    plan_id = f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    from ops.migrations.migrator import _who

    user, host, pid, _ = _who()
    return Plan(id=plan_id, start=first, end=last, jobs=tuple(jobs), items=tuple(items), skipped=tuple(skipped),
                force=force, rerun_failed=rerun_failed, newest_first=newest_first,
                created_at=now.strftime("%Y-%m-%d %H:%M:%S UTC"), created_by=f"{user}@{host}")


def target_rows(db, table: str) -> dict[str, int]:
    """Rows per partition id of a table, from its active parts (no scan)."""
    parts = db.rows("SELECT partition_id, sum(rows) AS rows FROM system.parts WHERE database = currentDatabase() "
                    "AND table = {t:String} AND active GROUP BY partition_id", {"t": table})
    return {r["partition_id"]: int(r["rows"]) for r in parts}


def require_plans_table(db) -> None:
    if not db.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
                     {"t": PLANS}):
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
        force=options["force"], rerun_failed=options["rerun_failed"], newest_first=options["newest_first"],
        created_at=ledger.aware(r["created_at"]).strftime("%Y-%m-%d %H:%M:%S UTC"), created_by=r["created_by"],
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
    rows = db.rows("SELECT pipeline, partition, toString(argMax(status, updated_at)) AS status, "
                   "argMax(host, updated_at) AS host, argMax(pid, updated_at) AS pid "
                   "FROM run_ledger FINAL WHERE plan_id = {id:String} GROUP BY pipeline, partition", {"id": plan.id})
    state = {}
    for r in rows:
        status = r["status"]
        if status == "running" and not ledger.alive(r["host"], r["pid"]):
            status = "died"
        state[(r["pipeline"], r["partition"])] = status
    counts = {"succeeded": 0, "failed": 0, "running": 0, "pending": 0}
    for item in plan.items:
        s = state.get((item.pipeline, item.day))
        key = "succeeded" if s == "succeeded" else "running" if s == "running" else \
            "failed" if s in ("failed", "killed", "died") else "pending"
        counts[key] += 1
    total = len(plan.items)
    counts["done_percent"] = round(100 * counts["succeeded"] / total, 1) if total else 100.0
    return counts


# --- execution ------------------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    pipeline: str
    day: date
    status: str  # succeeded | skipped | failed | blocked | not started
    rows: int = 0
    seconds: float = 0.0
    error: str = ""


def execute(settings, plan: Plan, registry: Registry, parallel: int = 1, fail_fast: bool = False,
            progress: Callable[[Outcome, int, int], None] | None = None,
            started: Callable[[Item], None] | None = None, db=None) -> list[Outcome]:
    """Run the plan's partitions: dependencies first within a day, ``parallel`` at a time. Returns every outcome.
    ``db``: a connection to use in this thread (worker threads open their own)."""
    from ops.clickhouse.client import connect
    from ops.pipelines.runner import run_pipeline

    if parallel < 1:
        raise BadInput(f"--parallel must be at least 1, got {parallel}")
    db = db or connect(settings)
    done_by_plan = {(r["pipeline"], r["partition"]) for r in db.rows(
        "SELECT pipeline, partition FROM run_ledger FINAL WHERE plan_id = {id:String} AND status = 'succeeded'",
        {"id": plan.id})}
    outcomes: dict[tuple[str, date], Outcome] = {}
    pending = [i for i in plan.items]
    for item in list(pending):
        if (item.pipeline, item.day) in done_by_plan:
            outcomes[(item.pipeline, item.day)] = Outcome(item.pipeline, item.day, "skipped",
                                                          error="done earlier in this plan")
            pending.remove(item)
    total = len(plan.items)
    local = threading.local()
    stop = threading.Event()

    from ops.pipelines.runner import Interrupted

    def work(item: Item) -> Outcome:
        if not hasattr(local, "db"):
            local.db = db if threading.current_thread() is threading.main_thread() else connect(settings)
        t0 = time.monotonic()
        try:
            result = run_pipeline(settings, item.pipeline, item.day.isoformat(), trigger="backfill",
                                  force=plan.force, plan_id=plan.id, registry=registry, db=local.db)
        except Interrupted as exc:
            stop.set()  # SIGTERM: this partition ended as killed; start nothing more
            return Outcome(item.pipeline, item.day, "killed", seconds=time.monotonic() - t0, error=exc.message)
        except ChopsError as exc:
            return Outcome(item.pipeline, item.day, "failed", seconds=time.monotonic() - t0, error=exc.message)
        status = "skipped" if result["status"] == "skipped" else "succeeded"
        return Outcome(item.pipeline, item.day, status, rows=int(result.get("rows") or 0),
                       seconds=time.monotonic() - t0, error=result.get("reason", ""))

    plan_keys = {(i.pipeline, i.day) for i in plan.items}

    def ready(item: Item) -> str | None:
        """'run' when its dependencies for the day are through, 'blocked' when one failed, None to wait."""
        for dep in item.depends_on:
            key = (dep, item.day)
            if key not in plan_keys:
                continue  # it succeeded before this plan was made (the runner checks the ledger again)
            o = outcomes.get(key)
            if o is None:
                return None
            if o.status in ("failed", "blocked", "not started"):
                return "blocked"
        return "run"

    running: dict[Future, Item] = {}
    pidfile.working(settings, "backfill", f"plan {plan.id}", progress=f"{len(outcomes)}/{total}")

    # One at a time runs in this (main) thread, where SIGTERM reaches the run and ends it cleanly as killed.
    # With more, runs are threads: SIGTERM stops new partitions, and the running ones finish.
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="backfill") if parallel > 1 else _Inline()
    previous_handler = _stop_on_sigterm(stop) if parallel > 1 else None
    with pool:
        try:
            while pending or running:
                launched = True
                while launched and not stop.is_set() and len(running) < parallel:
                    launched = False
                    for item in list(pending):
                        verdict = ready(item)
                        if verdict == "blocked":
                            pending.remove(item)
                            o = Outcome(item.pipeline, item.day, "blocked",
                                        error=f"a dependency failed for {item.day}")
                            outcomes[(item.pipeline, item.day)] = o
                            if progress:
                                progress(o, len(outcomes), total)
                            launched = True
                            break
                        if verdict == "run":
                            pending.remove(item)
                            if started:
                                started(item)
                            running[pool.submit(work, item)] = item
                            launched = True
                            break
                if not running:
                    break  # nothing runs and nothing more can start: what is pending is reported below
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    item = running.pop(future)
                    o = future.result()
                    outcomes[(item.pipeline, item.day)] = o
                    pidfile.working(settings, "backfill", f"plan {plan.id}", progress=f"{len(outcomes)}/{total}")
                    if progress:
                        progress(o, len(outcomes), total)
                    if o.status == "failed" and fail_fast:
                        stop.set()
                if stop.is_set() and not running:
                    break
        except KeyboardInterrupt:
            stop.set()
            for future in running:
                future.cancel()
            raise
        finally:
            if previous_handler is not None:
                import signal

                signal.signal(signal.SIGTERM, previous_handler)
    stopped_by = "stopped by SIGTERM" if getattr(stop, "signalled", False) or any(
        o.status == "killed" for o in outcomes.values()) else "stopped by --fail-fast"
    for item in pending:
        outcomes[(item.pipeline, item.day)] = Outcome(item.pipeline, item.day, "not started",
                                                      error=stopped_by if stop.is_set() else
                                                      "its dependencies never ran")
    return [outcomes[(i.pipeline, i.day)] for i in plan.items]


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


def _stop_on_sigterm(stop: threading.Event):
    """SIGTERM sets ``stop`` (no new partitions start); returns the previous handler."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        stop.signalled = True
        stop.set()

    return signal.signal(signal.SIGTERM, handler)


def summarize(outcomes: list[Outcome], plan: Plan) -> list[dict[str, Any]]:
    """One row per pipeline: succeeded, skipped, failed, blocked, rows, seconds."""
    rows: dict[str, dict[str, Any]] = {name: {"pipeline": name, "succeeded": 0, "skipped": 0, "failed": 0,
                                              "blocked": 0, "rows": 0, "seconds": 0.0} for name in plan.jobs}
    for name, _, _ in plan.skipped:
        rows[name]["skipped"] += 1
    for o in outcomes:
        r = rows[o.pipeline]
        key = {"not started": "blocked", "killed": "failed"}.get(o.status, o.status)
        r[key] += 1
        r["rows"] += o.rows
        r["seconds"] = round(r["seconds"] + o.seconds, 2)
    return list(rows.values())


# --- counts, coverage, verify -----------------------------------------------------------------------------------

GRID = {"succeeded": "✓", "failed": "✗", "killed": "✗", "died": "✗", "running": "▶", "gone": "!", None: "·"}
LEGEND = "✓ succeeded  ✗ failed  ▶ running  · never run  ! succeeded but its rows are gone"


def counts(db, registry: Registry, first: date, last: date, jobs: list[str], threshold: float) -> dict[str, Any]:
    """Rows per day per target (from the parts, no scan), flags, and the pipelines × days coverage grid."""
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
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
            if status == "succeeded" and d["rows"] == 0 and not p.allow_empty:
                status = "gone"
            cells[str(d["day"])] = status
        grid.append({"pipeline": p.name, "days": cells})
    return {"start": first, "end": last, "threshold": threshold, "tables": tables, "coverage": grid}


def verify(db, registry: Registry, first: date, last: date, jobs: list[str],
           progress: Callable[[str, date], None] | None = None) -> list[dict[str, Any]]:
    """Run each pipeline's checks on the target's data for each day, rewriting nothing."""
    results = []
    for day in [first + timedelta(days=i) for i in range((last - first).days + 1)]:
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
