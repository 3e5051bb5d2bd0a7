"""What dead processes leave behind, found and removed: stale pid files and lock files, the migration lock of a
holder that is gone, orphaned staging tables, and logs past ``proc.log_retention_days``.

:func:`clean_plan` says what would go, as plain data, and :func:`clean` removes it, checking each item again just
before. Nothing of a running process is ever in a plan, and nothing held by a process on another host: whether a
process is gone is :func:`ops.core.process.liveness`'s answer, which cannot judge another host.
"""

from __future__ import annotations

import fcntl
import re
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ops.core.locks import read_holder
from ops.core.process import Holder, Liveness, liveness
from ops.migrations.yoyo_backend import LOCK_TABLE, ClickHouseBackend, describe
from ops.pipelines import ledger
from ops.pipelines.runner import staging_tables
from ops.runtime import logs
from ops.runtime.config import setting, shown_path
from ops.runtime.pidfiles import State, processes


def lock_files(settings) -> list[Path]:
    return sorted((settings.path("paths.var") / "locks").glob("*.lock"))


def stale_lock(path: Path, clear: bool = False) -> Holder | None:
    """The holder recorded in lock file ``path`` when that lock is stale: nobody holds the ``flock`` (a live holder
    always does) and the recorded process is gone. None otherwise. With ``clear``, the dead holder's record is
    emptied under the lock, exactly as a release does. The file itself stays: removing a lock file that another
    process has just opened would let two processes hold the same lock."""
    try:
        fh = open(path, "r+")
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None  # held: its holder is alive
        try:
            holder = read_holder(path)
            if holder is None or not holder.gone():
                return None
            if clear:
                fh.seek(0)
                fh.truncate()
                fh.flush()
            return holder
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# A partition's lock, as the runner names it: pipeline-<pipeline>-<YYYY-MM-DD>.lock (a pipeline name has no '-').
PARTITION_LOCK = re.compile(r"^pipeline-(?P<pipeline>[a-z][a-z0-9_]*)-(?P<day>\d{4}-\d{2}-\d{2})\.lock$")


def stale_locks(settings) -> list[dict[str, Any]]:
    """Every lock file under ``<paths.var>/locks`` left behind by a process that is gone; a partition's lock says
    the work it was taken for as a pid file does (``work_kind`` pipeline.run, ``work`` "<pipeline> <day>")."""
    out = []
    for path in lock_files(settings):
        holder = stale_lock(path)
        if holder is not None:
            m = PARTITION_LOCK.match(path.name)
            out.append({"path": str(path), "what": shown_path(settings, path), "pid": holder.pid,
                        "work_kind": "pipeline.run" if m else "", "work": f"{m['pipeline']} {m['day']}" if m else "",
                        "reason": f"left by pid {holder.pid} ({holder.command}) since {holder.since}, which is gone"})
    return out


def stale_pid_files(settings) -> list[dict[str, Any]]:
    """Pid files of this host whose process is gone or whose pid now belongs to another process, with the work
    they were written for (``work_kind``, ``work``: "pipeline.run", "events_ingest 2026-11-25")."""
    out = []
    here = socket.gethostname()
    for p in processes(settings):
        if p.state is not State.STALE or p.host not in ("?", here):
            continue  # another host's pid file cannot be judged here
        if p.pid <= 0:
            why = "unreadable"
        elif liveness(here, p.pid) is Liveness.GONE:
            why = f"pid {p.pid} ({p.kind} {p.what}) is gone"
        else:
            why = f"pid {p.pid} ({p.kind} {p.what}) is gone; the pid now belongs to another process"
        out.append({"path": str(p.path), "what": shown_path(settings, p.path), "pid": p.pid, "reason": why,
                    "work_kind": p.kind, "work": p.what})
    return out


def _migration_backend(settings, db) -> ClickHouseBackend:
    return ClickHouseBackend(db, cluster=settings.get("clickhouse.cluster") or None)


def stale_migration_lock(settings, db) -> dict[str, Any] | None:
    """The migration lock (a table whose COMMENT names its holder) when its holder is provably gone."""
    holder = _migration_backend(settings, db).holder()
    if not holder:
        return None
    record = Holder.from_dict(holder)
    if record is None or not record.gone():
        return None
    return {"holder": holder, "reason": f"held by {describe(holder)}, which is gone"}


def orphan_staging_tables(db) -> list[dict[str, Any]]:
    """Staging tables (``_chops_staging_<pipeline>_<yyyymmdd>_<run8>``) whose run is not running any more. A table
    whose run is in the ledger as running, by a live process (or on another host, which cannot be judged), is kept."""
    out = []
    for name, pipeline, run in staging_tables(db):
        runs = ledger.runs_of(db, pipeline, run)
        if runs is None:
            return []  # no ledger: no run has ever made a staging table here
        if any(r["status"] == "running" and ledger.alive(r["host"], r["pid"]) for r in runs):
            continue
        if not runs:
            why = f"no run {run} in the ledger"
        elif any(r["status"] == "running" for r in runs):
            died = next(r for r in runs if r["status"] == "running")
            why = f"its run {run} died (pid {died['pid']} on {died['host']} is gone)"
        else:
            why = f"its run {run} has ended ({runs[0]['status']})"
        out.append({"what": name, "table": name, "reason": why})
    return out


def old_logs(settings, days: int, now: float | None = None) -> list[dict[str, Any]]:
    """Run logs and cron logs (:func:`ops.runtime.logs.every_log`) last written more than ``days`` days ago. ``days``
    0 keeps every log."""
    if days <= 0:
        return []
    cutoff = (now if now is not None else time.time()) - days * 86400
    out = []
    for path in logs.every_log(settings):
        try:
            written = path.stat().st_mtime
        except OSError:
            continue
        if path.is_file() and written < cutoff:
            last = datetime.fromtimestamp(written, timezone.utc).strftime("%Y-%m-%d")
            out.append({"path": str(path), "what": shown_path(settings, path),
                        "reason": f"older than {days} days (last written {last})"})
    return out


def clean_plan(settings, db=None, now: float | None = None) -> list[dict[str, Any]]:
    """What :func:`clean` would remove, as plain data: stale pid files, stale locks, the migration lock of a dead
    holder and orphaned staging tables (these two only with ``db``), and logs past ``proc.log_retention_days``.
    Nothing of a running process is ever in it."""
    items = [{"kind": "pid file", **x} for x in stale_pid_files(settings)]
    items += [{"kind": "lock", **x} for x in stale_locks(settings)]
    if db is not None:
        lock = stale_migration_lock(settings, db)
        if lock:
            items.append({"kind": "migration lock", "what": LOCK_TABLE, "reason": lock["reason"]})
        items += [{"kind": "staging table", **x} for x in orphan_staging_tables(db)]
    items += [{"kind": "log", **x} for x in old_logs(settings, setting(settings, "proc.log_retention_days"), now)]
    return items


def clean(settings, items: list[dict[str, Any]], db=None, now: float | None = None) -> list[dict[str, Any]]:
    """Remove what ``items`` (a :func:`clean_plan`) names, checking each again just before: a lock taken, a pid
    file rewritten or a log written since the plan was made is left alone. Returns what was removed."""
    removed = []
    again = {(i["kind"], i["what"]) for i in clean_plan(settings, db, now)}
    for item in items:
        kind = item["kind"]
        if (kind, item["what"]) not in again:
            continue
        if kind == "lock":
            if stale_lock(Path(item["path"]), clear=True) is None:
                continue
        elif kind == "pid file":
            try:
                Path(item["path"]).unlink()
            except FileNotFoundError:
                continue
        elif kind == "log":
            if not logs.remove(settings, Path(item["path"])):
                continue
        elif kind == "migration lock":
            _migration_backend(settings, db).break_lock()
        elif kind == "staging table":
            db.command(f"DROP TABLE IF EXISTS `{item['table']}` SYNC")
        removed.append(item)
    return removed
