"""The runner: one way to run a pipeline for one day, whether from cron, by hand or from a backfill.

1. take the partition's lock (a file under ``var/locks/`` on the embedded engine, a claim in ClickHouse on a
   server: :mod:`ops.pipelines.claims`; a second run of the same pipeline and day waits, and then finds the work
   done);
2. append a ``running`` attempt to the ledger;
3. build the day into a staging table made ``AS`` the target;
4. check the staging data (its partition, its row count, the pipeline's checks);
5. swap it in atomically: ``ALTER TABLE target REPLACE PARTITION ID … FROM staging``;
6. record ``succeeded`` (or ``failed``/``killed`` with the error), and always drop the staging table.

Failing checks, errors, timeouts and SIGTERM all leave the target untouched: nothing reaches it except through
step 5, which either happens whole or not at all. A re-run of a day replaces it, so runs never duplicate rows.
SIGTERM and Ctrl-C end a run as ``killed`` (never as a database error: see ``ops.pipelines.interrupt``); one that
comes during step 5 or 6 waits for it, so what was swapped in is recorded as such.

The checks before step 1 and 3 (the target exists and is partitioned, each dependency's newest attempt for the
day succeeded, the pipeline's declared inputs are there) are the same for a dry run, which says "would refuse"
where the run would.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from ops.clickhouse.client import connect, engine_waited, first_line
from ops.core import output, pidfile
from ops.core.errors import BadInput, ChopsError, WorkFailed
from ops.core.process import create_time
from ops.core.timefmt import aware, utc_now
from ops.pipelines import claims, interrupt, ledger
from ops.pipelines.definition import Pipeline, Registry, load_pipelines, parse_day
from ops.pipelines.interrupt import Interrupted, TimedOut
from ops.pipelines.ledger import RunStatus, Trigger

STAGING_PREFIX = "_chops_staging_"
# A file with a row ClickHouse cannot parse fails the run instead of being loaded without that row.
NO_BAD_ROWS = {"input_format_allow_errors_num": 0, "input_format_allow_errors_ratio": 0}
# ClickHouse error codes worth another attempt: timeouts, overload, lost connections, too many parts.
RETRYABLE_CODES = {159, 160, 164, 202, 209, 210, 241, 252, 319, 425, 999}


@dataclass
class Run:
    """What ``build(run)`` gets: the day, the staging table to fill, and the database."""

    pipeline: Pipeline
    day: date
    db: Any
    staging: str
    settings: Any
    run_id: str
    trigger: Trigger
    log: logging.Logger
    extra: dict = field(default_factory=dict)
    end: date | None = None  # the last day built, for a range build (``batch_days``); else the day

    @property
    def target(self) -> str:
        return self.pipeline.target

    @property
    def start(self) -> date:
        """The first day built: the day, and ``end`` the last (``{start:Date}`` .. ``{end:Date}``, inclusive)."""
        return self.day

    def params(self, **extra: Any) -> dict[str, Any]:
        """Query parameters: ``{start:Date}`` and ``{end:Date}`` (the days built, both inclusive: the same day
        outside a range build), ``{day:Date}`` when one day is built, plus ``extra``."""
        last = self.end or self.day
        days = {"start": self.day, "end": last, **({"day": self.day} if last == self.day else {})}
        return {**days, **extra}

    def inbox(self, name: str) -> Path:
        """The folder where files for this pipeline and day are dropped: ``<paths.var>/inbox/<name>/<day>/``."""
        return self.settings.path("paths.var") / "inbox" / name / self.day.isoformat()

    def inputs(self) -> list[Any]:
        """The files the pipeline's ``inputs`` declaration finds for this day (the runner checked there are some
        before the build began); [] for a pipeline that declares none."""
        if "inputs" not in self.extra:
            self.extra["inputs"] = declared_inputs(self)
        return self.extra["inputs"]

    def insert_file(self, path: Path, fmt: str, columns: list[str] | None = None) -> None:
        """Have ClickHouse parse a file into the staging table (never row by row here; on the embedded engine
        the engine reads the file itself). A bad row fails the run naming the file and ClickHouse's row number."""
        try:
            self.db.release_memory_if_grown()  # parsing a big file takes 100-150 MB: start it from what is needed
            self.db.load_file(self.staging, path, fmt, columns, settings=NO_BAD_ROWS)
            self.db.release_memory_if_grown()
        except Exception as exc:
            if interrupt.cancelled(exc):
                raise  # a stop or the timeout cancelled the load: the file is not to blame
            raise WorkFailed(f"{path.name}: ClickHouse could not load it: {first_line(exc)}") from None
        self.log.info("loaded %s (%d bytes, %s)", path.name, Path(path).stat().st_size, fmt)


def open_run_log(settings, pipeline: str, day: date, run_id: str) -> tuple[logging.Logger, Path]:
    directory = settings.path("paths.logs") / "pipelines" / pipeline
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{day.isoformat()}_{run_id[:8]}.log"
    # A logger of its own, not registered by name: getLogger would keep one per run for the life of the process,
    # and every setLevel clears the cache of each registered logger, so a backfill's partitions cost more the more
    # of them ran (8.5 s of 74 s at 6,000 partitions, most of a 100 x 365-day backfill's time).
    logger = logging.Logger(f"chops.run.{run_id}", logging.INFO)
    logger.propagate = False
    handler = output.LogFile(path)  # a full disk under the logs costs the log, not the run
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger, path


def close_run_log(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)


def staging_name(p: Pipeline, day: date, run_id: str) -> str:
    return f"{STAGING_PREFIX}{p.name}_{day:%Y%m%d}_{run_id[:8]}"


STAGING_NAME = re.compile(re.escape(STAGING_PREFIX) + r"(?P<pipeline>.+)_(?P<day>\d{8})_(?P<run>[0-9a-f]{8})")


def staging_tables(db) -> list[tuple[str, str, str]]:
    """The staging tables a run made and did not drop (yet): (table, pipeline, the run id's first 8 characters).
    A table that merely starts with the prefix but was not named by :func:`staging_name` is not listed."""
    out = []
    for name in db.tables(STAGING_PREFIX):
        m = STAGING_NAME.fullmatch(name)
        if m:
            out.append((name, m["pipeline"], m["run"]))
    return out


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, (Interrupted, TimedOut, BadInput)):
        return False
    text = str(exc.__cause__ or exc)
    if "cannot reach ClickHouse" in str(exc):
        return True
    m = re.search(r"Code: (\d+)", text)
    return bool(m and int(m.group(1)) in RETRYABLE_CODES)


@dataclass(frozen=True)
class RunResult:
    """What :func:`run_pipeline` answers. ``status`` is ``SUCCEEDED`` (the day was built and swapped in), ``SKIPPED``
    (it had succeeded already; ``reason`` says when) or None for a dry run, which reports what a run would do
    (``would``; ``refusal`` and ``hint`` when it would refuse): the target's rows for the day now, the newest
    attempt's status, each dependency's status, the inputs found and the checks."""

    pipeline: str
    day: date
    status: RunStatus | None
    rows: int = 0  # swapped in (succeeded), or swapped in by the run that did the day (skipped)
    run_id: str = ""
    attempt: int = 0
    seconds: float = 0.0
    log: str = ""
    reason: str = ""
    target: str = ""
    rows_now: int = 0
    last_status: str | None = None
    depends: Mapping[str, str] = field(default_factory=dict)
    checks: tuple[str, ...] = ()
    would: str = ""
    refusal: str = ""
    hint: str = ""
    inputs: tuple[str, ...] = ()

    @property
    def dry_run(self) -> bool:
        return self.status is None

    def as_dict(self) -> dict[str, Any]:
        """The JSON ``inv pipeline.run --json`` prints: the keys of this kind of answer only."""
        if self.dry_run:
            return {"pipeline": self.pipeline, "day": self.day, "dry_run": True, "target": self.target,
                    "rows_now": self.rows_now, "last_status": self.last_status, "depends": dict(self.depends),
                    "inputs": list(self.inputs), "checks": list(self.checks), "would": self.would,
                    "refusal": self.refusal or None, "hint": self.hint or None}
        if self.status is RunStatus.SKIPPED:
            return {"pipeline": self.pipeline, "day": self.day, "status": self.status, "rows": self.rows,
                    "reason": self.reason, "run_id": self.run_id}
        return {"pipeline": self.pipeline, "day": self.day, "status": self.status, "rows": self.rows,
                "run_id": self.run_id, "attempt": self.attempt, "duration_s": self.seconds, "log": self.log}


def partition_status(db, p: Pipeline, day: date) -> dict[str, Any]:
    """Rows of the target for the day, and the newest attempt in the ledger."""
    rows = sum(db.partition_rows(p.target, day=day).values())
    tries = ledger.attempts(db, p.name, day, limit=1)
    return {"rows": rows, "last": tries[0] if tries else None}


_checked_targets: set[tuple[str, str, str]] = set()


def target_problem(db, p: Pipeline) -> WorkFailed | None:
    """Why ``p``'s target cannot take a day (it does not exist, or is not partitioned), or None."""
    key = (db.target.url, db.name, p.target)
    if key in _checked_targets:  # a backfill asks once per process, not once per partition
        return None
    found = db.table(p.target)
    if found is None:
        return WorkFailed(f"target table {p.target} of {p.name} does not exist", hint="run: inv db.migrate")
    if not found["partition_key"]:
        return WorkFailed(f"target table {p.target} has no PARTITION BY; chops swaps whole days, so it must be "
                          "partitioned by day")
    _checked_targets.add(key)
    return None


def ledger_of(db, p: Pipeline, day: date) -> dict[str, list[dict]]:
    """The attempts of ``p`` and of its dependencies for the day, by pipeline, newest first: one query."""
    found: dict[str, list[dict]] = {name: [] for name in (p.name, *p.depends_on)}
    for a in ledger.attempts(db, day=day, pipelines=list(found)):
        found[a["pipeline"]].append(a)
    return found


def check_dependencies(p: Pipeline, day: date, found: Mapping[str, list[dict]]) -> tuple[dict[str, str], dict[str, str],
                                                                                   WorkFailed | None]:
    """Each dependency's newest attempt for the day (of ``found``, :func:`ledger_of`): (its status by name, the run
    id of each that succeeded, and the refusal when one has not succeeded)."""
    states, runs, problem = {}, {}, None
    for dep in p.depends_on:
        tries = found.get(dep, [])
        states[dep] = str(tries[0]["status"]) if tries else "never run"
        if tries and tries[0]["status"] == RunStatus.SUCCEEDED:
            runs[dep] = tries[0]["run_id"]
        elif problem is None:
            problem = WorkFailed(f"{p.name} depends on {dep}, which has not succeeded for {day} ({states[dep]})",
                                 hint=f"run: inv pipeline.run {dep} --date {day}")
    return states, runs, problem


def declared_inputs(run: Run) -> list[Any]:
    """The files ``run``'s pipeline declares it reads for the day (``inputs``); WorkFailed when there are none."""
    p = run.pipeline
    if p.inputs is None:
        return []
    found = list(p.inputs(run) or [])
    if not found:
        raise WorkFailed(f"{p.name} found no inputs for {run.day}", hint=f"see inputs= in {p.module or p.name}")
    return found


def _trigger(text: str) -> Trigger:
    try:
        return Trigger(text)
    except ValueError:
        raise BadInput(f"trigger must be one of {', '.join(Trigger)}, got {text!r}") from None


def run_pipeline(settings, name: str, day_text: str = "yesterday", *, trigger: str = Trigger.MANUAL,
                 force: bool = False, dry_run: bool = False, allow_future: bool = False, plan_id: str = "",
                 registry: Registry | None = None, db=None, notify: Callable[[str], None] | None = None,
                 wait_timeout: float | None = None) -> RunResult:
    """Run ``name`` for one day. Returns a :class:`RunResult`; raises BadInput/WorkFailed for bad input and failed
    work, :class:`~ops.pipelines.interrupt.Interrupted` when a signal stopped it. Under the partition's lock: the
    dependencies must have succeeded, a day already done is skipped (unless ``force``), and the build is attempted
    (and retried) through :func:`_attempt`."""
    notify = notify or (lambda message: None)
    asked = _asked_at()  # before any waiting: for the embedded engine, or for the partition's lock
    trigger = _trigger(trigger)
    registry = registry or load_pipelines(settings)
    p = registry.get(name)
    day = parse_day(day_text, p.tz(), allow_future=allow_future)
    if db is None:
        db = connect(settings)
    problem = None if dry_run else target_problem(db, p)
    if problem:
        raise problem
    ledger.require_table(db)
    if dry_run:
        return dry_run_report(settings, db, p, day, force)
    lock = claims.partition_lock(settings, db, p.name, day, p.timeout if wait_timeout is None else wait_timeout,
                                 notify=notify)
    with interrupt.scope(settings):
        with interrupt.armed():  # a signal while it waits for the lock: nothing has begun
            lock.acquire()
        try:
            found = ledger_of(db, p, day)
            _, upstream, problem = check_dependencies(p, day, found)
            if problem:
                raise problem
            previous = found[p.name]
            close_dead_attempts(db, previous)
            waited = lock.waited or engine_waited()
            done = already_done(db, p, day, previous, force, asked if waited else None, notify)
            if done is not None:
                return done
            if any(a["status"] != RunStatus.SUCCEEDED for a in previous):
                drop_orphans(db, p, day)  # only an attempt that did not succeed can have left its staging table
            return _run_with_retries(settings, db, p, day, previous, trigger, plan_id, notify, upstream)
        finally:
            lock.release()


def dry_run_report(settings, db, p: Pipeline, day: date, force: bool) -> RunResult:
    """What a run of ``p`` for ``day`` would do, checked as the run checks (target, dependencies, a run under way,
    the day done already, declared inputs), from the catalog, the ledger and the files; changes nothing."""
    rows = sum(db.partition_rows(p.target, day=day).values()) if db.has_table(p.target) else 0
    found = ledger_of(db, p, day)
    previous = found[p.name]
    depends, _, problem = check_dependencies(p, day, found)
    problem = target_problem(db, p) or problem
    running = [a for a in previous if a["status"] == RunStatus.RUNNING]
    done = [a for a in previous if a["status"] == RunStatus.SUCCEEDED]
    found: list[Any] = []
    would = "build and swap in"
    if problem is None and running and not force:
        a = running[0]
        problem = WorkFailed(f"{p.name} for {day} is already running on {a['host']} (pid {a['pid']})",
                             hint="wait for it, or pass --force")
    elif problem is None and done and not force and (rows or p.allow_empty):
        would = "skip (already succeeded; --force rebuilds)"
    elif problem is None:
        try:
            found = declared_inputs(Run(pipeline=p, day=day, db=db, staging="", settings=settings, run_id="",
                                        trigger=Trigger.MANUAL, log=logging.getLogger("chops.dry-run")))
        except WorkFailed as exc:
            problem = exc
        if done and not rows and not p.allow_empty:
            would = "build and swap in (the ledger says it succeeded, but its rows are gone)"
    return RunResult(p.name, day, None, target=p.target, rows_now=rows,
                     last_status=str(previous[0]["status"]) if previous else None, depends=depends,
                     checks=tuple(c.name for c in p.checks), inputs=tuple(str(f) for f in found),
                     would=f"refuse: {problem.message}" if problem else would,
                     refusal=problem.message if problem else "", hint=(problem.hint or "") if problem else "")


def already_done(db, p: Pipeline, day: date, previous: list[dict], force: bool, asked: datetime | None,
                  notify: Callable[[str], None]) -> RunResult | None:
    """The answer when the day is not to be built now: WorkFailed while another run of it goes on, ``SKIPPED`` when
    it succeeded before (and its rows are still there). None, to build it: never run, failed, or ``force``.
    ``asked``: when this run was asked for, if it waited (for the partition or the engine) before it could begin."""
    others = [a for a in previous if a["status"] == RunStatus.RUNNING]
    if others and not force:
        a = others[0]
        raise WorkFailed(f"{p.name} for {day} is already running on {a['host']} (pid {a['pid']}, since "
                         f"{a['started_at']:%H:%M:%S} UTC)", hint="wait for it, or pass --force")
    done = [a for a in previous if a["status"] == RunStatus.SUCCEEDED]
    if not done or force:
        return None
    if not p.allow_empty and partition_status(db, p, day)["rows"] == 0:
        notify(f"{p.name} {day}: the ledger says it succeeded, but its rows are gone; rebuilding")
        return None
    by_other = asked is not None and aware(done[0]["started_at"]) >= asked
    why = ("by a run that finished while this one waited" if by_other
           else f"at {aware(done[0]['finished_at']):%Y-%m-%d %H:%M} UTC")
    return RunResult(p.name, day, RunStatus.SKIPPED, rows=done[0]["rows_written"], run_id=done[0]["run_id"],
                     reason=f"already succeeded {why}; --force rebuilds it")


def _run_with_retries(settings, db, p: Pipeline, day: date, previous: list[dict], trigger: Trigger, plan_id: str,
                      notify: Callable[[str], None], upstream: Mapping[str, str]) -> RunResult:
    """Attempts numbered on from the last one in the ledger; a retryable failure is tried again after
    ``retry_delay`` seconds (doubling each time), at most ``retries`` times."""
    attempt = max((a["attempt"] for a in previous), default=0)
    delay = p.retry_delay
    for retry in range(int(p.retries) + 1):
        attempt += 1
        try:
            return _attempt(settings, db, p, day, attempt, trigger, plan_id, upstream)
        except ChopsError as exc:
            if retry >= p.retries or not is_retryable(exc):
                raise
            notify(f"{p.name} {day}: attempt {attempt} failed ({exc.message}); retrying in {delay:g}s")
            with interrupt.armed():  # a signal while it waits: the next attempt does not begin
                time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _asked_at() -> datetime:
    """When this run was asked for: the start of this process (a CLI or cron run), else now (a backfill's thread
    asks later than its process started)."""
    if threading.current_thread() is threading.main_thread():
        started = create_time(os.getpid())
        if started is not None:
            return datetime.fromtimestamp(started, timezone.utc)
    return utc_now()


def close_dead_attempts(db, previous: list[dict]) -> None:
    """Attempts left 'running' by a process that is gone are closed as failed, so the ledger says what happened."""
    for a in previous:
        if a["status"] == RunStatus.DIED:
            row = {**a, "status": RunStatus.FAILED, "finished_at": utc_now(),
                   "error": f"the process (pid {a['pid']} on {a['host']}) died without finishing"}
            ledger.write(db, row)
            a["status"] = RunStatus.FAILED


def drop_orphans(db, p: Pipeline, day: date) -> None:
    """Staging tables of this pipeline and day left by a run that died (we hold the partition's lock)."""
    for name in db.tables(f"{STAGING_PREFIX}{p.name}_{day:%Y%m%d}_"):
        db.command(f"DROP TABLE IF EXISTS `{name}` SYNC")


def _attempt(settings, db, p: Pipeline, day: date, attempt: int, trigger: Trigger, plan_id: str,
             upstream: Mapping[str, str]) -> RunResult:
    """One attempt: a ``running`` row in the ledger (with the upstream runs it reads), the declared inputs, the
    build into a staging table, the checks, the swap, and the row that says how it ended. A signal stops the build
    and the checks (:func:`ops.pipelines.interrupt.cancellable`), not the swap and its row. The staging table is
    always dropped."""
    interrupt.check()  # a stop asked for before it began: it does not begin
    run_id = str(uuid.uuid4())
    if trigger is not Trigger.BACKFILL:  # a backfill's pid file tells its plan and progress instead
        pidfile.working(settings, "pipeline.run", f"{p.name} {day}")
    log, log_path = open_run_log(settings, p.name, day, run_id)
    row = ledger.new_row(run_id, p.name, day, attempt, trigger, plan_id, str(log_path), upstream)
    staging = staging_name(p, day, run_id)
    started = time.monotonic()
    try:
        ledger.write(db, row)
        log.info("run %s: %s for %s (attempt %d, trigger %s, code %s)", run_id, p.name, day, attempt, trigger,
                 row["code_version"])
        run = Run(pipeline=p, day=day, db=db, staging=staging, settings=settings, run_id=run_id, trigger=trigger,
                  log=log)
        with interrupt.cancellable(db, staging, timeout=p.timeout):
            run.inputs()
            make_staging(db, p, staging)
            log.info("staging table %s", staging)
            p.build(run)
            pid = partition_id(day)
            rows = _verify(db, p, day, staging, pid, log)
        swap_in(db, p, staging, pid, rows)
        log.info("swapped %d rows into %s for %s", rows, p.target, day)
        row.update(status=RunStatus.SUCCEEDED, rows_written=rows, finished_at=utc_now(),
                   duration_s=round(time.monotonic() - started, 3))
        ledger.write(db, row)
        return RunResult(p.name, day, RunStatus.SUCCEEDED, rows=rows, run_id=run_id, attempt=attempt,
                         seconds=row["duration_s"], log=str(log_path))
    except BaseException as exc:
        release_after_failure(db)
        raise _ended(db, p, day, row, exc, time.monotonic() - started, log, log_path)
    finally:
        quietly(lambda: db.command(f"DROP TABLE IF EXISTS `{staging}` SYNC"))
        release_if_grown(db)
        close_run_log(log)


def make_staging(db, p: Pipeline, staging: str) -> None:
    """The staging table a build fills, made ``AS`` the target; and the engine's spare memory given back if it grew,
    so the build starts from what the engine needs (a background merge that held memory may have ended)."""
    db.command(f"CREATE TABLE `{staging}` AS `{p.target}`")
    db.release_memory_if_grown()


def release_after_failure(db) -> None:
    """A failure may leave a peak behind: give the engine's spare memory back now (unless it is never given back)."""
    if db.releases_memory:
        quietly(db.release_memory)


def release_if_grown(db) -> None:
    """After a partition: give the engine's spare memory back when the process grew by
    ``ops.clickhouse.client.RELEASE_GROWTH`` since the last time (``Database.release_memory_if_grown``): a backfill's
    next big day starts from what the engine needs, not from its peaks, and small days pay nothing (measured: 265 MB
    held after two 1M-row days without it; a 1M-row backfill peaked at 506 MB releasing every 250,000 rows built,
    because a day's last statement read a million rows and built few)."""
    quietly(db.release_memory_if_grown)


def _ended(db, p: Pipeline, day: date, row: dict, exc: BaseException, seconds: float, log: logging.Logger,
           log_path: Path) -> BaseException:
    """Record how an attempt ended badly (``killed`` for a signal, else ``failed``) and return what to raise: the
    same error, its message naming the pipeline and day."""
    killed = isinstance(exc, (Interrupted, KeyboardInterrupt))
    status = RunStatus.KILLED if killed else RunStatus.FAILED
    known = isinstance(exc, (ChopsError, Interrupted))
    message = exc.message if known else f"{type(exc).__name__}: {exc}"
    log.error("%s: %s", status, message, exc_info=not known and not killed)
    row.update(status=status, error=message[:2000], finished_at=utc_now(), duration_s=round(seconds, 3))
    quietly(lambda: ledger.write(db, row))
    if isinstance(exc, Interrupted):
        exc.run_id = row["run_id"]
        exc.message = f"{p.name} {day}: {exc.message}; the target was not touched"
        return exc
    if isinstance(exc, ChopsError):
        exc.message = f"{p.name} {day}: {exc.message}"
        exc.hint = exc.hint or f"log: {log_path}"
        return exc
    if isinstance(exc, Exception):
        failed = WorkFailed(f"{p.name} {day}: {message}", hint=f"log: {log_path}")
        failed.__cause__ = exc
        return failed
    return exc


def quietly(action: Callable[[], Any]) -> None:
    """Cleanup that must not hide the original error. (A signal during it is only noted: it runs outside a run's
    cancellable phase.)"""
    try:
        action()
    except Exception:
        pass


def partition_id(day: date) -> str:
    """The partition id of ``day`` in a table partitioned by day: ClickHouse's ``partitionId({day:Date})``, which
    is the day as YYYYMMDD (a test holds the two equal). Digits only, so it is safe to inline (ALTER takes no
    parameters)."""
    return f"{day:%Y%m%d}"


def _verify(db, p: Pipeline, day: date, staging: str, expected: str, log: logging.Logger) -> int:
    """The staging table's rows, after checking they all fall in the day's partition, that there are some (unless
    ``allow_empty``) and that every check passes: one query for the rows, the partitions and the checks."""
    rows, stray, results = measure_staging(db, p.checks, staging, day, expected)
    if stray:
        raise WorkFailed(f"built rows outside the day (partitions {', '.join(sorted(stray))}); the target must be "
                         "partitioned by day and build() must write only the day")
    if rows == 0 and not p.allow_empty:
        raise WorkFailed("built 0 rows; nothing was swapped in",
                         hint="if an empty day is normal, declare the pipeline with allow_empty=True")
    for check, bad, found in results:
        log.info("check %s: %s", check.name, "ok" if not bad else check.explain(bad, found))
    for check, bad, found in results:
        if bad:
            raise WorkFailed(f"check {check.name} failed: {check.explain(bad, found)}; the target was not touched")
    return rows


def measure_staging(db, checks, staging: str, day: date, expected: str,
             only: bool = False) -> tuple[int, list[str], list[tuple[Any, int, Any]]]:
    """(the staging table's rows, its partitions other than ``expected``, each check's offending count and what it
    found). The rows, the partitions and every aggregate or single-value check share one scan; a custom check's
    query runs on its own. ``only``: measure the partition ``expected`` alone (a day of a range build)."""
    together = [c for c in checks if c.expr or c.scalar]
    table = f"(SELECT * FROM `{staging}` WHERE _partition_id = {{pid:String}})" if only else f"`{staging}`"
    columns = ["count()", "groupUniqArrayIf(_partition_id, _partition_id != {pid:String})"]
    for c in together:
        columns.append(f"toInt64({c.expr})" if c.expr else f"toInt64(({c.sql.replace('{table}', table)}))")
        columns.append(c.found.replace("{table}", table) if c.found else "NULL")
    where = " WHERE _partition_id = {pid:String}" if only else ""
    row = db.query(f"SELECT {', '.join(columns)} FROM `{staging}`{where}", {"day": day, "pid": expected}).result_rows[0]
    measured = {id(c): (int(row[2 + 2 * i] or 0), row[3 + 2 * i]) for i, c in enumerate(together)}
    for c in checks:
        if id(c) not in measured:
            measured[id(c)] = (int(db.scalar(c.sql.replace("{table}", table), {"day": day, "pid": expected}) or 0),
                               None)
    return int(row[0]), list(row[1]), [(c, *measured[id(c)]) for c in checks]


def swap_in(db, p: Pipeline, staging: str, pid: str, rows: int) -> None:
    if rows == 0:
        db.command(f"ALTER TABLE `{p.target}` DROP PARTITION ID '{pid}'")
    else:
        db.command(f"ALTER TABLE `{p.target}` REPLACE PARTITION ID '{pid}' FROM `{staging}`")
