"""The run ledger: one row per attempt of a pipeline partition (table ``run_ledger``, migrations 0001 and 0007).

An attempt is written when it starts (``running``) and again when it ends; the table is a ReplacingMergeTree
keyed by ``run_id`` and versioned by ``updated_at``, so ``FINAL`` reads each attempt's latest state. An attempt
left ``running`` by a process that is gone is reported as ``died``. Each attempt records the run ids of the
upstream partitions it read (``upstream``: each dependency's newest success for the day when it started), so a
partition built before its upstream was rebuilt is found by one query (:func:`partition_states`).

On a server every state is inserted as it happens. On the embedded engine a backfill writes them through a
write-ahead file (:func:`batched`): each state is appended to ``<data path>.ledger-pending/<pid>-….jsonl`` before the
work it describes goes on, and the rows reach the table in one INSERT every ``BATCH_ROWS`` states or
``BATCH_SECONDS`` seconds and at the end. The process's own reads fold its pending rows in (:func:`attempts`) or
write them first; a run killed mid-way leaves the file, and the next reader replays it before it reads (on the
embedded engine no other process can read meanwhile: it holds the engine). So a killed run stays visible: its
``running`` row says ``died``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import uuid
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import Any, Collection, Iterator, Mapping

from ops import ROOT
from ops.core.errors import WorkFailed
from ops.core.process import Liveness, liveness
from ops.core.timefmt import parse_micro, stamp_micro, utc_now

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
    _replay(db)
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
    """Append one state of an attempt (all columns): at once, or, in a :func:`batched` block of this thread, to
    its write-ahead file (the table gets it with the next batch)."""
    record = dict(row)
    record["partition"] = str(record["partition"])
    for key in ("started_at", "finished_at"):
        if isinstance(record.get(key), datetime):
            record[key] = stamp_micro(record[key])
    record["updated_at"] = stamp_micro()
    record = {k: record.get(k) for k in COLUMNS}
    pending = _pending.get(db)
    if pending is None or pending.thread is not threading.current_thread():
        db.insert_rows(TABLE, [record])
        return
    pending.add(record, row)
    if len(pending.records) >= BATCH_ROWS or time.monotonic() - pending.since >= BATCH_SECONDS:
        pending.flush(db)


# --- batched writes through a write-ahead file (embedded engine) -------------------------------------------------

BATCH_ROWS = 500  # states kept before one INSERT (a backfill of small days writes two per partition)
BATCH_SECONDS = 10.0  # ... or this long after the first of them


class _Pending:
    """A batch of ledger states not in the table yet: in memory (to insert, and to fold into this process's
    reads) and in its write-ahead file, appended to before the work a state describes goes on."""

    def __init__(self, path: Path):
        self.path = path
        self.thread = threading.current_thread()
        self.records: list[dict[str, Any]] = []
        self.rows: dict[str, dict[str, Any]] = {}  # run_id -> the attempt's latest state, as attempts() reads it
        # The attempts of the span's days in the table, by day (then run id): a day's are found without a scan.
        self.known: dict[date, dict[str, dict[str, Any]]] | None = None
        self.span: tuple[date, date] | None = None
        self.since = time.monotonic()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _live.add(path)

    def add(self, record: dict[str, Any], row: dict[str, Any]) -> None:
        line = (json.dumps(record, default=str) + "\n").encode()
        if os.write(self.fd, line) != len(line):
            raise OSError(f"short write to {self.path}")
        if not self.records:
            self.since = time.monotonic()
        self.records.append(record)
        self.rows[record["run_id"]] = _as_read(row)

    def flush(self, db) -> None:
        """Insert the batch, then empty the file (a kill in between inserts the same versions again: harmless)."""
        if self.records:
            db.insert_rows(TABLE, self.records)
            os.ftruncate(self.fd, 0)
        if self.known is not None:
            for run_id, row in self.rows.items():
                self.known.setdefault(row["partition"], {})[run_id] = row
        self.records, self.rows = [], {}

    def close(self) -> None:
        os.close(self.fd)
        _live.discard(self.path)
        if not self.records:
            self.path.unlink(missing_ok=True)


_pending: "weakref.WeakKeyDictionary[Any, _Pending]" = weakref.WeakKeyDictionary()
_live: set[Path] = set()  # the write-ahead files open in this process, whichever thread and connection own them
_replaying = threading.Lock()


def _journal_dir(db) -> Path | None:
    """Where the write-ahead files of ``db``'s ledger live: beside the embedded engine's data; None on a server."""
    path = getattr(db.target, "path", None)
    return Path(f"{path}.ledger-pending") if db.target.kind == "embedded" and path else None


@contextmanager
def batched(db, since: date | None = None, until: date | None = None) -> Iterator[None]:
    """Within the block, this thread's :func:`write` calls on ``db`` go through a write-ahead file and reach the
    table in batches (and at the end: an error there names the file, which the next reader replays). Only on the
    embedded engine, where no other process can touch the ledger meanwhile (so with ``since`` and ``until``, the
    attempts of those days are read once here, and :func:`attempts` of one of them needs no query); elsewhere,
    and nested, it does nothing."""
    folder = _journal_dir(db)
    if folder is None or db in _pending:
        yield
        return
    _replay(db)
    folder.mkdir(parents=True, exist_ok=True)
    pending = _Pending(folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl")
    if since and until:
        pending.known = {}
        for r in _select(db, since=since, until=until):
            pending.known.setdefault(r["partition"], {})[r["run_id"]] = r
        pending.span = (since, until)
    _pending[db] = pending
    try:
        yield
    except BaseException:
        try:
            pending.flush(db)
        except Exception:  # the original error matters more; the file is replayed by the next reader
            pass
        raise
    else:
        try:
            pending.flush(db)
        except Exception as exc:
            raise WorkFailed(f"the run ledger could not take {len(pending.records)} pending row(s): {exc}",
                             hint=f"they are kept in {pending.path}; the next chops command writes them") from None
    finally:
        _pending.pop(db, None)
        pending.close()


def _replay(db) -> None:
    """Write what a killed process left in its write-ahead files (on the embedded engine, a file not open in this
    process is a dead process's: the engine admits one process at a time), then remove them."""
    folder = _journal_dir(db)
    if folder is None or not folder.is_dir():
        return
    with _replaying:  # threads of one backfill share the folder: one replays, the others then find nothing
        for path in sorted(folder.glob("*.jsonl")):
            if path not in _live:
                _replay_file(db, path)


def _replay_file(db, path: Path) -> None:
    records = []
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # a line torn by the kill: the state before it stands
            continue
    if records:
        db.insert_rows(TABLE, records)
    path.unlink(missing_ok=True)


def _sync(db) -> None:
    """Before a read that does not fold pending rows in: a dead process's files, and this thread's batch, written."""
    _replay(db)
    pending = _pending.get(db)
    if pending is not None and pending.records:
        pending.flush(db)


def _naive(value: Any) -> Any:
    return parse_micro(stamp_micro(value)) if isinstance(value, datetime) else value


def _as_read(row: dict[str, Any]) -> dict[str, Any]:
    """A pending state in the shape :func:`attempts` reads one from the table."""
    out = {k: row.get(k) for k in COLUMNS if k not in ("upstream", "updated_at")}
    out.update(run_id=str(row["run_id"]), status=str(row["status"]), trigger=str(row["trigger"]),
               started_at=_naive(row.get("started_at")), finished_at=_naive(row.get("finished_at")))
    return out


def _fold(rows: list[dict[str, Any]], pending: _Pending | None, keep,
          known: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """``rows`` read from the table (or ``known`` ones: by run id) with this thread's pending states of the attempts
    ``keep`` accepts in place, newest first."""
    if known is not None:
        rows = [dict(r) for r in known.values() if keep(r)]
    if pending is None or not pending.rows:
        return rows if known is None else sorted(rows, key=lambda r: (r["started_at"], r["attempt"]), reverse=True)
    mine = {run_id: dict(r) for run_id, r in pending.rows.items() if keep(r)}
    merged = [r for r in rows if str(r["run_id"]) not in mine] + list(mine.values())
    merged.sort(key=lambda r: (r["started_at"], r["attempt"]), reverse=True)
    return merged


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
             since: date | None = None, until: date | None = None,
             pipelines: list[str] | None = None) -> list[dict[str, Any]]:
    """Attempts, newest first, each in its latest state, with ``status`` 'died' for a dead 'running' one; of
    ``pipeline``, or of any of ``pipelines`` (one query for a run and its dependencies). Pending states of this
    thread's :func:`batched` block are folded in; within its days, a day's attempts come from what it read at
    its start and wrote since, without a query."""
    _replay(db)

    def keep(r: dict[str, Any]) -> bool:
        return ((not pipeline or r["pipeline"] == pipeline) and (not pipelines or r["pipeline"] in pipelines)
                and (not day or r["partition"] == day) and (not since or r["partition"] >= since)
                and (not until or r["partition"] <= until))

    pending = _pending.get(db)
    if pending is None or pending.thread is not threading.current_thread():
        rows = _select(db, pipeline, day, limit, since, until, pipelines)
    elif pending.known is not None and day and pending.span[0] <= day <= pending.span[1]:
        rows = _fold([], pending, keep, pending.known.get(day, {}))[:limit or None]
    else:
        rows = _fold(_select(db, pipeline, day, limit, since, until, pipelines), pending, keep)[:limit or None]
    for r in rows:
        r["run_id"] = str(r["run_id"])
        r["status"] = _status(r["status"], r["host"], r["pid"], r["started_at"])
    return rows


def _select(db, pipeline: str | None = None, day: date | None = None, limit: int | None = None,
            since: date | None = None, until: date | None = None,
            pipelines: list[str] | None = None) -> list[dict[str, Any]]:
    """The attempts :func:`attempts` asks for, as the table has them (stored statuses)."""
    where, params = _days(since, until)
    if pipeline:
        where.append("pipeline = {p:String}")
        params["p"] = pipeline
    if pipelines:
        where.append("has({ps:Array(String)}, pipeline)")
        params["ps"] = list(pipelines)
    if day:
        where.append("partition = {d:Date}")
        params["d"] = day
    sql = (f"SELECT toString(run_id) AS run_id, pipeline, partition, attempt, toString(status) AS status, "
           f"toString(trigger) AS trigger, plan_id, rows_written, started_at, finished_at, duration_s, error, host, "
           f"pid, code_version, log_path FROM {TABLE} FINAL {'WHERE ' + ' AND '.join(where) if where else ''} "
           f"ORDER BY started_at DESC, attempt DESC {f'LIMIT {int(limit)}' if limit else ''}")
    return db.rows(sql, params)


#: The order of attempts, newest last: ``(started_at, attempt)`` as one number, which ``argMax`` compares several
#: times faster than the tuple (it keeps a tuple through a generic, serialising path). Both columns are the same in
#: every state of an attempt, so the newest attempt is found without ``FINAL``.
_NEWEST = "toInt128(toUnixTimestamp64Micro(started_at)) * 4294967296 + attempt"


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


# The facts of a PartitionState, aggregated over the attempts of a (pipeline, partition) read with FINAL.
_STATE = (f"toString(argMax(status, {_NEWEST})) AS newest_status, argMax(host, {_NEWEST}) AS newest_host, "
          f"argMax(pid, {_NEWEST}) AS newest_pid, max(started_at) AS newest_start, "
          f"countIf(status = 'succeeded') AS successes, "
          f"toString(argMaxIf(run_id, {_NEWEST}, status = 'succeeded')) AS good_run, "
          f"maxIf(started_at, status = 'succeeded') AS good_started, "
          f"argMaxIf(upstream, {_NEWEST}, status = 'succeeded') AS good_upstream")


def _state(r: dict[str, Any]) -> PartitionState:
    """A row of :data:`_STATE` as a :class:`PartitionState`."""
    good = r["successes"] > 0
    status = _status(r["newest_status"], r["newest_host"], r["newest_pid"], r["newest_start"])
    return PartitionState(
        r["pipeline"], r["partition"], status, r["good_run"] if good else "", r["good_started"] if good else None,
        {k: str(v) for k, v in (r["good_upstream"] or {}).items()} if good else {})


def partition_states(db, start: date | None = None, end: date | None = None, *,
                     pipelines: Collection[str] | None = None) -> dict[tuple[str, date], PartitionState]:
    """Every partition's :class:`PartitionState` (of days in [start, end] when given; of ``pipelines`` when given),
    in one query."""
    _sync(db)
    where, params = _days(start, end)
    if pipelines is not None:
        where.append("has({ps:Array(String)}, pipeline)")
        params["ps"] = list(pipelines)
    rows = db.rows(f"SELECT pipeline, partition, {_STATE} FROM {TABLE} FINAL "
                   f"{'WHERE ' + ' AND '.join(where) if where else ''} GROUP BY pipeline, partition", params)
    return {(r["pipeline"], r["partition"]): _state(r) for r in rows}


_ATTEMPT = ("run_id", "attempt", "status", "trigger", "plan_id", "rows_written", "started_at", "finished_at",
            "duration_s", "error", "host", "pid", "code_version", "log_path")


def newest_by_pipeline(db) -> tuple[dict[str, dict[str, Any]], dict[str, PartitionState]]:
    """Per pipeline: its newest attempt (of any day; a backfill of old days runs after the newest one) in its
    latest state, with ``status`` 'died' for a dead 'running' one; and the :class:`PartitionState` of its newest
    day. One query, however many pipelines: one pass over the ledger finds both days, and only their attempts are
    read with FINAL."""
    _sync(db)
    attempt = ", ".join(f"toString({c})" if c in ("run_id", "status", "trigger") else c for c in _ATTEMPT)
    rows = db.rows(f"SELECT pipeline, partition, {_STATE}, argMax(tuple({attempt}), {_NEWEST}) AS newest_attempt "
                   f"FROM {TABLE} FINAL WHERE (pipeline, partition) IN (SELECT pipeline, "
                   f"arrayJoin([argMax(partition, {_NEWEST}), max(partition)]) FROM {TABLE} GROUP BY pipeline) "
                   f"GROUP BY pipeline, partition")  # key columns: filtered before FINAL
    latest: dict[str, dict[str, Any]] = {}
    newest: dict[str, PartitionState] = {}
    order = itemgetter("started_at", "attempt")  # what _NEWEST orders by
    for r in sorted(rows, key=lambda r: r["partition"]):
        a = dict(zip(_ATTEMPT, r["newest_attempt"]), pipeline=r["pipeline"], partition=r["partition"])
        if r["pipeline"] not in latest or order(a) > order(latest[r["pipeline"]]):
            latest[r["pipeline"]] = a
        newest[r["pipeline"]] = _state(r)  # the newest day comes last
    for a in latest.values():
        a["status"] = _status(a["status"], a["host"], a["pid"], a["started_at"])
    return latest, newest


def alive(host: str, pid: int, started_at: datetime | None = None) -> bool:
    """Whether the process that wrote an attempt still runs (unknowable on another host: assume it does)."""
    return liveness(host, pid, since=started_at) is not Liveness.GONE


def plan_states(db, plan_id: str) -> dict[tuple[str, date], RunStatus]:
    """The status of each (pipeline, day) by its newest attempt under backfill plan ``plan_id`` ('died' for a dead
    'running' one); a partition the plan has not tried yet is absent."""
    _sync(db)
    rows = db.rows(f"SELECT pipeline, partition, toString(argMax(status, updated_at)) AS status, "
                   f"argMax(host, updated_at) AS host, argMax(pid, updated_at) AS pid "
                   f"FROM {TABLE} FINAL WHERE plan_id = {{id:String}} GROUP BY pipeline, partition", {"id": plan_id})
    return {(r["pipeline"], r["partition"]): _status(r["status"], r["host"], r["pid"]) for r in rows}


def succeeded_in_plan(db, plan_id: str) -> set[tuple[str, date]]:
    """The (pipeline, day) partitions that an attempt under backfill plan ``plan_id`` built."""
    _sync(db)
    return {(r["pipeline"], r["partition"]) for r in db.rows(
        f"SELECT pipeline, partition FROM {TABLE} FINAL WHERE plan_id = {{id:String}} AND status = 'succeeded'",
        {"id": plan_id})}


def runs_by_pipeline(db) -> dict[str, dict[str, Any]]:
    """Per pipeline: its number of attempts, its last success (``finished_at``) and the status of its newest attempt."""
    _sync(db)
    require_table(db)
    rows = db.rows(f"SELECT pipeline, count() AS attempts, maxIf(finished_at, status = 'succeeded') AS last_success, "
                   f"argMax(toString(status), started_at) AS last_status FROM {TABLE} FINAL GROUP BY pipeline")
    return {r["pipeline"]: r for r in rows}


def recent_attempts(db, since: datetime) -> list[dict[str, Any]]:
    """Every attempt of each (pipeline, day) that had an attempt started since ``since``, oldest first; a 'running'
    one whose process is gone has status 'died'."""
    _sync(db)
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
    _sync(db)
    if not db.has_table(TABLE):
        return None
    return db.rows(f"SELECT toString(run_id) AS run_id, toString(status) AS status, host, pid FROM {TABLE} FINAL "
                   "WHERE startsWith(toString(run_id), {r:String}) AND pipeline = {p:String}",
                   {"r": run_prefix, "p": pipeline})


def attempts_of_run(db, run_prefix: str) -> list[dict[str, Any]]:
    """The attempts whose run id starts with ``run_prefix`` (of any pipeline), each in its latest state with
    ``status`` 'died' for a dead 'running' one: what ``inv proc.ack RUN_ID`` acknowledges."""
    _sync(db)
    require_table(db)
    rows = db.rows(f"SELECT toString(run_id) AS run_id, pipeline, partition, attempt, toString(status) AS status, "
                   f"started_at, error, host, pid FROM {TABLE} FINAL WHERE startsWith(toString(run_id), {{r:String}}) "
                   "ORDER BY started_at DESC", {"r": run_prefix})
    for r in rows:
        r["status"] = _status(r["status"], r["host"], r["pid"], r["started_at"])
    return rows
