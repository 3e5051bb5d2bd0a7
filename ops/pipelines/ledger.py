"""The run ledger: one row per attempt of a pipeline partition (table ``run_ledger``, migrations 0001 and 0007).

An attempt is written when it starts (``running``) and again when it ends; the table is a ReplacingMergeTree
keyed by ``run_id`` and versioned by ``updated_at``, so ``FINAL`` reads each attempt's latest state. An attempt
left ``running`` by a process that is gone is reported as ``died``. Each attempt records the run ids of the
upstream partitions it read (``upstream``: each dependency's newest success for the day when it started), so a
partition built before its upstream was rebuilt is found by one query (:func:`partition_states`).
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, Mapping

from ops import ROOT
from ops.core.errors import WorkFailed
from ops.core.process import Liveness, liveness
from ops.core.timefmt import stamp_micro, utc_now

TABLE = "run_ledger"
COLUMNS = ("run_id", "pipeline", "partition", "attempt", "status", "trigger", "plan_id", "rows_written",
           "started_at", "finished_at", "duration_s", "error", "host", "pid", "code_version", "log_path",
           "upstream", "updated_at")


class RunStatus(StrEnum):
    """The state of an attempt, and of a partition by its newest attempt.

    The ledger's ``status`` column holds the first four (``RUNNING`` while it runs, then how it ended). The others
    are never written: ``DIED`` is read for a ``RUNNING`` attempt whose process is gone, ``GONE`` for a partition
    whose ledger says ``SUCCEEDED`` but whose rows are no longer in the target, ``STALE`` for one built from an
    upstream partition rebuilt since (``ops.pipelines.reprocess``), and ``SKIPPED`` is a run's answer when the day
    had already succeeded."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    KILLED = "killed"
    DIED = "died"
    GONE = "gone"
    STALE = "stale"
    SKIPPED = "skipped"


#: How an attempt can end badly: a partition whose newest attempt is one of these failed.
FAILURES = frozenset({RunStatus.FAILED, RunStatus.KILLED, RunStatus.DIED})


class Trigger(StrEnum):
    """Who asked for a run (the ledger's ``trigger`` column)."""

    MANUAL = "manual"
    CRON = "cron"
    BACKFILL = "backfill"


@lru_cache(maxsize=1)
def code_version() -> str:
    """The code's version: the REVISION file a deploy writes, else the git commit, else 'unknown'."""
    revision = ROOT / "REVISION"
    if revision.exists():
        return revision.read_text().strip()[:40] or "unknown"
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=5)
        sha = out.stdout.strip()
        if out.returncode == 0 and sha:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


_checked: set[tuple[str, str]] = set()


def require_table(db) -> None:
    """The ledger exists and has the columns this code writes (asked once per process and database)."""
    key = (db.target.url, db.name)
    if key in _checked:
        return
    found = db.rows("SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {t:String}",
                    {"t": TABLE})
    if not found:
        raise WorkFailed("the run ledger table does not exist", hint="run: inv db.migrate")
    if "upstream" not in {r["name"] for r in found}:
        raise WorkFailed("the run ledger has no upstream column yet (migration 0007_run_ledger_upstream)",
                         hint="run: inv db.migrate")
    _checked.add(key)


def write(db, row: dict[str, Any]) -> None:
    """Append one state of an attempt (all columns)."""
    record = dict(row)
    record["partition"] = str(record["partition"])
    for key in ("started_at", "finished_at"):
        if isinstance(record.get(key), datetime):
            record[key] = stamp_micro(record[key])
    record["updated_at"] = stamp_micro()
    db.insert_rows(TABLE, [{k: record.get(k) for k in COLUMNS}])


def new_row(run_id: str, pipeline: str, day: date, attempt: int, trigger: Trigger, plan_id: str,
            log_path: str, upstream: Mapping[str, str] | None = None) -> dict:
    """The ``running`` row of a new attempt; ``upstream``: the run id each dependency's day was built by."""
    return {
        "run_id": run_id, "pipeline": pipeline, "partition": day, "attempt": attempt, "status": RunStatus.RUNNING,
        "trigger": trigger, "plan_id": plan_id or "", "rows_written": 0, "started_at": utc_now(),
        "finished_at": None, "duration_s": None, "error": "", "host": socket.gethostname(), "pid": os.getpid(),
        "code_version": code_version(), "log_path": log_path, "upstream": dict(upstream or {}),
    }


def attempts(db, pipeline: str | None = None, day: date | None = None, limit: int | None = None,
             since: date | None = None, until: date | None = None) -> list[dict[str, Any]]:
    """Attempts, newest first, each in its latest state, with ``status`` 'died' for a dead 'running' one."""
    where, params = _days(since, until)
    if pipeline:
        where.append("pipeline = {p:String}")
        params["p"] = pipeline
    if day:
        where.append("partition = {d:Date}")
        params["d"] = day
    sql = (f"SELECT run_id, pipeline, partition, attempt, toString(status) AS status, toString(trigger) AS trigger, "
           f"plan_id, rows_written, started_at, finished_at, duration_s, error, host, pid, code_version, log_path "
           f"FROM {TABLE} FINAL {'WHERE ' + ' AND '.join(where) if where else ''} "
           f"ORDER BY started_at DESC, attempt DESC {f'LIMIT {int(limit)}' if limit else ''}")
    rows = db.rows(sql, params)
    for r in rows:
        r["run_id"] = str(r["run_id"])
        r["status"] = _status(r["status"], r["host"], r["pid"], r["started_at"])
    return rows


def _days(since: date | None, until: date | None) -> tuple[list[str], dict[str, Any]]:
    """The WHERE terms and parameters that keep the partitions of days in [since, until] (either end open)."""
    where, params = [], {}
    if since:
        where.append("partition >= {since:Date}")
        params["since"] = since
    if until:
        where.append("partition <= {until:Date}")
        params["until"] = until
    return where, params


def _status(stored: str, host: str, pid: int, started_at: datetime | None = None) -> RunStatus:
    """A stored status as chops reports it: ``running`` becomes ``died`` once its process is gone."""
    status = RunStatus(stored)
    if status is RunStatus.RUNNING and not alive(host, pid, started_at):
        return RunStatus.DIED
    return status


@dataclass(frozen=True)
class PartitionState:
    """One partition's ledger facts: its newest attempt, and its newest success with the upstream runs it read."""

    pipeline: str
    day: date
    status: RunStatus  # of the newest attempt ('died' for a dead 'running' one)
    good_run: str = ""  # the newest succeeded attempt's run id ('' when none)
    good_started: datetime | None = None
    good_upstream: Mapping[str, str] = field(default_factory=dict)


def partition_states(db, start: date | None = None, end: date | None = None) -> dict[tuple[str, date], PartitionState]:
    """Every partition's :class:`PartitionState` (of days in [start, end] when given), in one query."""
    where, params = _days(start, end)
    newest = "(started_at, attempt)"
    rows = db.rows(
        f"SELECT pipeline, partition, toString(argMax(status, {newest})) AS newest_status, "
        f"argMax(host, {newest}) AS newest_host, argMax(pid, {newest}) AS newest_pid, max(started_at) AS newest_start, "
        f"countIf(status = 'succeeded') AS successes, "
        f"toString(argMaxIf(run_id, {newest}, status = 'succeeded')) AS good_run, "
        f"maxIf(started_at, status = 'succeeded') AS good_started, "
        f"argMaxIf(upstream, {newest}, status = 'succeeded') AS good_upstream "
        f"FROM {TABLE} FINAL {'WHERE ' + ' AND '.join(where) if where else ''} GROUP BY pipeline, partition", params)
    return {(r["pipeline"], r["partition"]): PartitionState(
        r["pipeline"], r["partition"], _status(r["newest_status"], r["newest_host"], r["newest_pid"], r["newest_start"]),
        r["good_run"] if r["successes"] else "", r["good_started"] if r["successes"] else None,
        {k: str(v) for k, v in (r["good_upstream"] or {}).items()} if r["successes"] else {}) for r in rows}


def alive(host: str, pid: int, started_at: datetime | None = None) -> bool:
    """Whether the process that wrote an attempt still runs (unknowable on another host: assume it does)."""
    return liveness(host, pid, since=started_at) is not Liveness.GONE


def plan_states(db, plan_id: str) -> dict[tuple[str, date], RunStatus]:
    """The status of each (pipeline, day) by its newest attempt under backfill plan ``plan_id`` ('died' for a dead
    'running' one); a partition the plan has not tried yet is absent."""
    rows = db.rows(f"SELECT pipeline, partition, toString(argMax(status, updated_at)) AS status, "
                   f"argMax(host, updated_at) AS host, argMax(pid, updated_at) AS pid "
                   f"FROM {TABLE} FINAL WHERE plan_id = {{id:String}} GROUP BY pipeline, partition", {"id": plan_id})
    return {(r["pipeline"], r["partition"]): _status(r["status"], r["host"], r["pid"]) for r in rows}


def succeeded_in_plan(db, plan_id: str) -> set[tuple[str, date]]:
    """The (pipeline, day) partitions that an attempt under backfill plan ``plan_id`` built."""
    return {(r["pipeline"], r["partition"]) for r in db.rows(
        f"SELECT pipeline, partition FROM {TABLE} FINAL WHERE plan_id = {{id:String}} AND status = 'succeeded'",
        {"id": plan_id})}


def runs_by_pipeline(db) -> dict[str, dict[str, Any]]:
    """Per pipeline: its number of attempts, its last success (``finished_at``) and the status of its newest attempt."""
    require_table(db)
    rows = db.rows(f"SELECT pipeline, count() AS attempts, maxIf(finished_at, status = 'succeeded') AS last_success, "
                   f"argMax(toString(status), started_at) AS last_status FROM {TABLE} FINAL GROUP BY pipeline")
    return {r["pipeline"]: r for r in rows}


def recent_attempts(db, since: datetime) -> list[dict[str, Any]]:
    """Every attempt of each (pipeline, day) that had an attempt started since ``since``, oldest first; a 'running'
    one whose process is gone has status 'died'."""
    require_table(db)
    rows = db.rows(
        f"SELECT toString(run_id) AS run_id, pipeline, partition, attempt, toString(status) AS status, started_at, "
        f"error, host, pid FROM {TABLE} FINAL WHERE (pipeline, partition) IN (SELECT pipeline, partition "
        f"FROM {TABLE} WHERE started_at >= {{since:DateTime64(6, 'UTC')}}) ORDER BY started_at",
        {"since": stamp_micro(since)})
    for r in rows:
        r["status"] = _status(r["status"], r["host"], r["pid"])
    return rows


def runs_of(db, pipeline: str, run_prefix: str) -> list[dict[str, Any]] | None:
    """The attempts of ``pipeline`` whose run id starts with ``run_prefix`` (run_id, status, host, pid); None when
    there is no ledger (no run has ever been made here)."""
    if not db.has_table(TABLE):
        return None
    return db.rows(f"SELECT toString(run_id) AS run_id, toString(status) AS status, host, pid FROM {TABLE} FINAL "
                   "WHERE startsWith(toString(run_id), {r:String}) AND pipeline = {p:String}",
                   {"r": run_prefix, "p": pipeline})


def attempts_of_run(db, run_prefix: str) -> list[dict[str, Any]]:
    """The attempts whose run id starts with ``run_prefix`` (of any pipeline), each in its latest state with
    ``status`` 'died' for a dead 'running' one: what ``inv proc.ack RUN_ID`` acknowledges."""
    require_table(db)
    rows = db.rows(f"SELECT toString(run_id) AS run_id, pipeline, partition, attempt, toString(status) AS status, "
                   f"started_at, error, host, pid FROM {TABLE} FINAL WHERE startsWith(toString(run_id), {{r:String}}) "
                   "ORDER BY started_at DESC", {"r": run_prefix})
    for r in rows:
        r["status"] = _status(r["status"], r["host"], r["pid"], r["started_at"])
    return rows
