"""Range builds: a backfill of a pipeline with ``batch_days = N`` builds up to N consecutive days at once.

The guarantees of a one-day run (:mod:`ops.pipelines.runner`) hold for each day of the batch:

1. take each day's partition lock, in day order (two batches that overlap wait for each other, never deadlock);
2. decide each day as a run would (its dependencies succeeded, done already, a run of it under way) and append a
   ``running`` attempt for each day to be built (each day has its own row, attempt number and run id);
3. build the days from the first to the last to be built in one staging table made ``AS`` the target, by one call
   of ``build(run)`` whose SQL reads ``{start:Date}`` and ``{end:Date}`` (both inclusive);
4. check each day alone (its rows, the pipeline's checks): a day that fails is recorded ``failed`` with why and is
   not swapped; the days that pass are swapped in, one ``REPLACE PARTITION`` each, each recorded ``succeeded`` as
   soon as it is in (a demanding user keeps the good days of a batch and reruns only the bad one);
5. always drop the staging table.

An error in the build (or rows outside the batch's days) fails every day of the batch; a signal during the build or
the checks ends every day as ``killed`` with nothing swapped; one during the swaps waits for them, so the ledger says
exactly which days are in. After ``kill -9`` the days' ``running`` rows read as died, and a resume builds them again.
The days that failed for a retryable reason (never a check) are tried again, ``retries`` times, as a run's are.
"""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Mapping

from ops.core.errors import ChopsError, WorkFailed
from ops.core.timefmt import utc_now
from ops.pipelines import claims, interrupt, ledger
from ops.pipelines.definition import Pipeline
from ops.pipelines.interrupt import Interrupted
from ops.pipelines.ledger import RunStatus, Trigger
from ops.pipelines.runner import (Run, already_done, check_dependencies, close_dead_attempts, close_run_log,
                                  drop_orphans, is_retryable, ledger_of, make_staging, measure_staging, open_run_log,
                                  partition_id, quietly, release_after_failure, release_if_grown, staging_name,
                                  swap_in, target_problem)


@dataclass(frozen=True)
class DayResult:
    """What became of one day of a batch: ``status`` SUCCEEDED, SKIPPED, FAILED or KILLED, its rows, the error."""

    day: date
    status: RunStatus
    rows: int = 0
    run_id: str = ""
    error: str = ""
    signal: str = ""
    retry: bool = False  # it failed for a reason worth another attempt


def run_batch(settings, db, p: Pipeline, days: list[date], *, force: Mapping[date, bool], plan_id: str = "",
              trigger: Trigger = Trigger.BACKFILL) -> list[DayResult]:
    """Build ``days`` (consecutive, at most ``p.batch_days``) of ``p`` as one batch (see the module's doc); one
    result per day, in day order. Raises :class:`Interrupted` only when a signal came before any day began."""
    days = sorted(days)
    problem = target_problem(db, p)
    if problem:
        return [DayResult(d, RunStatus.FAILED, error=problem.message) for d in days]
    ledger.require_table(db)
    with interrupt.scope(settings), ExitStack() as locks:
        for day in days:  # in day order: no deadlock between batches that overlap
            lock = claims.partition_lock(settings, db, p.name, day, p.timeout)
            with interrupt.armed():  # a signal while it waits for a lock: nothing has begun
                lock.acquire()
            locks.callback(lock.release)
        results: dict[date, DayResult] = {}
        todo: dict[date, tuple[int, dict]] = {}
        for day in days:
            verdict = _decide(db, p, day, force.get(day, False))
            if isinstance(verdict, DayResult):
                results[day] = verdict
            else:
                todo[day] = verdict
        if todo:
            results.update(_with_retries(settings, db, p, todo, trigger, plan_id))
        return [results[d] for d in days]


def _with_retries(settings, db, p: Pipeline, todo: dict[date, tuple[int, dict]], trigger: Trigger,
                  plan_id: str) -> dict[date, DayResult]:
    """Attempts at ``todo``; the days that failed for a retryable reason (a lost connection, a timeout: never a
    check) are tried again after ``retry_delay`` seconds (doubling each time), at most ``retries`` times."""
    results: dict[date, DayResult] = {}
    delay = p.retry_delay
    for retry in range(int(p.retries) + 1):
        results.update(_attempt(settings, db, p, todo, trigger, plan_id))
        again = {day: (attempt + 1, upstream) for day, (attempt, upstream) in todo.items() if results[day].retry}
        if not again or retry >= p.retries:
            break
        with interrupt.armed():  # a signal while it waits: the next attempt does not begin
            time.sleep(delay)
        delay *= 2
        todo = again
    return results


def _decide(db, p: Pipeline, day: date, force: bool) -> DayResult | tuple[int, dict]:
    """A day's answer without building it (failed dependencies, a run under way: FAILED; done: SKIPPED), or what
    building it needs: (the last attempt number, the upstream run ids)."""
    found = ledger_of(db, p, day)
    _, upstream, problem = check_dependencies(p, day, found)
    if problem:
        return DayResult(day, RunStatus.FAILED, error=problem.message)
    previous = found[p.name]
    close_dead_attempts(db, previous)
    try:
        done = already_done(db, p, day, previous, force, None, lambda message: None)
    except WorkFailed as exc:  # another run of the day goes on
        return DayResult(day, RunStatus.FAILED, error=exc.message)
    if done is not None:
        return DayResult(day, RunStatus.SKIPPED, rows=done.rows, run_id=done.run_id, error=done.reason)
    if any(a["status"] != RunStatus.SUCCEEDED for a in previous):
        drop_orphans(db, p, day)
    return max((a["attempt"] for a in previous), default=0), dict(upstream)


def _attempt(settings, db, p: Pipeline, todo: Mapping[date, tuple[int, dict]], trigger: Trigger,
             plan_id: str) -> dict[date, DayResult]:
    """One attempt at the days of ``todo``: their ``running`` rows, one build from the first to the last, the checks
    and swap of each day, each day's row saying how it ended. The staging table is always dropped."""
    interrupt.check()
    first, last = min(todo), max(todo)
    batch_id = str(uuid.uuid4())
    log, log_path = open_run_log(settings, p.name, first, batch_id)
    rows = {day: ledger.new_row(str(uuid.uuid4()), p.name, day, attempt + 1, trigger, plan_id, str(log_path),
                                upstream) for day, (attempt, upstream) in todo.items()}
    staging = staging_name(p, first, batch_id)
    started = time.monotonic()
    results: dict[date, DayResult] = {}
    try:
        for row in rows.values():
            ledger.write(db, row)
        log.info("batch %s: %s for %s .. %s (%d days, trigger %s)", batch_id, p.name, first, last, len(rows), trigger)
        run = Run(pipeline=p, day=first, end=last, db=db, staging=staging, settings=settings, run_id=batch_id,
                  trigger=trigger, log=log)
        with interrupt.cancellable(db, staging, timeout=p.timeout):
            make_staging(db, p, staging)
            p.build(run)
            verdicts = _verify_days(db, p, staging, first, last, sorted(rows), log)
        for day in sorted(rows):  # outside the cancellable phase: a signal now waits for every swap and its row
            row, verdict = rows[day], verdicts[day]
            seconds = round(time.monotonic() - started, 3)
            if isinstance(verdict, str):
                row.update(status=RunStatus.FAILED, error=verdict[:2000], finished_at=utc_now(), duration_s=seconds)
                ledger.write(db, row)
                log.error("%s %s: %s", p.name, day, verdict)
                results[day] = DayResult(day, RunStatus.FAILED, run_id=row["run_id"], error=verdict)
                continue
            swap_in(db, p, staging, partition_id(day), verdict)
            row.update(status=RunStatus.SUCCEEDED, rows_written=verdict, finished_at=utc_now(), duration_s=seconds)
            ledger.write(db, row)
            log.info("swapped %d rows into %s for %s", verdict, p.target, day)
            results[day] = DayResult(day, RunStatus.SUCCEEDED, rows=verdict, run_id=row["run_id"])
        return results
    except BaseException as exc:
        release_after_failure(db)
        killed = isinstance(exc, (Interrupted, KeyboardInterrupt))
        status = RunStatus.KILLED if killed else RunStatus.FAILED
        known = isinstance(exc, (ChopsError, Interrupted))
        message = (exc.message if known else f"{type(exc).__name__}: {exc}")[:2000]
        log.error("%s: %s", status, message, exc_info=not known and not killed)
        for day, row in rows.items():
            if day not in results:  # a day swapped in before the error stays recorded as succeeded
                row.update(status=status, error=message, finished_at=utc_now(),
                           duration_s=round(time.monotonic() - started, 3))
                quietly(lambda: ledger.write(db, row))
                results[day] = DayResult(day, status, run_id=row["run_id"], error=message,
                                         signal=exc.signal if isinstance(exc, Interrupted) else "",
                                         retry=is_retryable(exc))
        if not isinstance(exc, (Exception, Interrupted)):
            raise
        return results
    finally:
        quietly(lambda: db.command(f"DROP TABLE IF EXISTS `{staging}` SYNC"))
        release_if_grown(db)
        close_run_log(log)


def _verify_days(db, p: Pipeline, staging: str, first: date, last: date, days: list[date],
                 log) -> dict[date, int | str]:
    """Each day's rows to swap in, or why it fails: rows outside ``first .. last`` fail the batch (WorkFailed); a
    day with no rows (unless ``allow_empty``) or a failing check fails alone. One query, grouped by partition, for
    the rows and every aggregate check that does not name the day; the other checks run per day, on its rows."""
    grouped = [c for c in p.checks if c.expr and not any("{day" in (x or "") or "{table}" in (x or "")
                                                         for x in (c.expr, c.found))]
    columns = ["_partition_id", "count()"]
    for c in grouped:
        columns += [f"toInt64({c.expr})", c.found or "NULL"]
    measured = {r[0]: r[1:] for r in db.query(f"SELECT {', '.join(columns)} FROM `{staging}` "
                                              "GROUP BY _partition_id").result_rows}
    wanted = {partition_id(d) for d in _range(first, last)}
    stray = sorted(set(measured) - wanted)
    if stray:
        raise WorkFailed(f"built rows outside {first} .. {last} (partitions {', '.join(stray)}); the target must "
                         "be partitioned by day and build() must write only {start:Date} .. {end:Date}")
    out: dict[date, int | str] = {}
    for day in days:
        pid = partition_id(day)
        row = measured.get(pid)
        rows = int(row[0]) if row else 0
        if rows == 0 and not p.allow_empty:
            out[day] = "built 0 rows; nothing was swapped in"
            continue
        results = [(c, int(row[1 + 2 * i] or 0), row[2 + 2 * i]) for i, c in enumerate(grouped)] if row else []
        rest = [c for c in p.checks if not row or c not in grouped]
        if rest:
            results += measure_staging(db, rest, staging, day, pid, only=True)[2]
        results.sort(key=lambda r: p.checks.index(r[0]))
        for check, bad, found in results:
            log.info("%s check %s: %s", day, check.name, "ok" if not bad else check.explain(bad, found))
        failed = [f"check {c.name} failed: {c.explain(bad, found)}" for c, bad, found in results if bad]
        out[day] = f"{failed[0]}; the target was not touched" if failed else rows
    return out


def _range(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
