"""chops' own processes: a pid file per working process, so they can be listed, stopped and cleaned up safely.

Every chops process that does work (a pipeline run, a backfill, migrations, a deploy) calls :func:`working`, which
writes ``<paths.var>/run/<pid>.json``: the pid, the process's start time (to recognise a reused pid), its command
line, what it is working on and, where known, its progress. The file is rewritten atomically as the work moves
on and removed when the process exits. A pid file whose process is gone, or whose pid now belongs to another
process, is stale: never signalled, only cleaned.

On top of the pid files: :func:`select` and :func:`kill` (SIGTERM, a grace period, SIGKILL; only processes whose
pid file is still theirs), :func:`clean_plan` and :func:`clean` (what dead processes leave behind: stale pid files
and locks, orphaned staging tables, old logs), and :func:`find_log` / :func:`follow` for the run logs. The health
verdict built on them is ``ops.runtime.health``.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ops.core.pidfile import run_dir
from ops.core import process

@dataclass
class Process:
    """One pid file and what is known of its process."""

    path: Path
    pid: int
    kind: str
    what: str
    since: str
    command: str
    progress: str | None
    host: str
    create_time: float | None
    state: str  # running | stale

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "kind": self.kind, "what": self.what, "since": self.since, "progress": self.progress,
                "command": self.command, "host": self.host, "state": self.state, "pid_file": str(self.path)}


def is_ours(pid: int, create_time: float | None, host: str | None = None) -> bool:
    """Whether ``pid`` is still the process that wrote the pid file (same host, same start time), still running
    (a zombie has exited)."""
    if host and host != socket.gethostname():
        return False
    if create_time is None:
        return False
    now = process.create_time(pid)
    return now is not None and abs(now - float(create_time)) < 0.05 and not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that has exited but not been waited for by its parent: gone, though its pid still answers."""
    import psutil

    try:
        return pid > 0 and psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def processes(settings) -> list[Process]:
    """Every pid file, with its process running or stale."""
    out = []
    directory = run_dir(settings)
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            pid = int(data["pid"])
            if pid <= 0:
                raise ValueError(pid)  # 0 and -1 would signal whole process groups: never a pid of ours
        except (OSError, ValueError, KeyError, TypeError):
            out.append(Process(path, 0, "?", "unreadable pid file", "?", "?", None, "?", None, "stale"))
            continue
        state = "running" if is_ours(pid, data.get("create_time"), data.get("host")) else "stale"
        out.append(Process(path, pid, data.get("kind", "?"), data.get("what", ""), data.get("since", "?"),
                           data.get("command", "?"), data.get("progress"), data.get("host", "?"),
                           data.get("create_time"), state))
    return out


# --- which processes a name or pid means ------------------------------------------------------------------------------

# The kinds of work that write pid files (``working(settings, kind, …)``).
KINDS = ("pipeline.run", "backfill", "db.migrate", "db.rollback", "deploy")


def labels(p: Process) -> set[str]:
    """The names a process answers to: its kind, what it works on, and for a run its pipeline, for a backfill its
    plan id (``pipeline.run`` writes ``"events_ingest 2026-11-25"``, a backfill ``"plan 3f2a…"``)."""
    names = {p.kind, p.what}
    words = p.what.split()
    if p.kind == "pipeline.run" and words:
        names.add(words[0])
    if p.kind == "backfill" and len(words) == 2 and words[0] == "plan":
        names.add(words[1])
    return names


def select(settings, name: str | None = None, everything: bool = False, known: Iterable[str] = ()) -> list[Process]:
    """The running chops processes that ``name`` (a pid, a pipeline, a kind or a backfill plan id) or
    ``everything`` means. Only processes with a pid file that still belongs to them are ever returned: a pid
    that is not chops', or whose pid file is stale, is refused (``BadInput``), whoever asks."""
    from ops.core.errors import BadInput

    if name is not None and not str(name).strip():
        name = None
    if name and everything:
        raise BadInput("name one process (--name NAME|PID) or use --all, not both")
    if not name and not everything:
        raise BadInput("name a process (--name NAME|PID) or use --all", hint="inv proc.list shows what runs")
    found = processes(settings)
    running = [p for p in found if p.state == "running" and p.pid != os.getpid()]
    if everything:
        return running
    name = str(name).strip()
    if name.lstrip("-").isdigit():
        pid = int(name)
        mine = [p for p in found if p.pid == pid]
        if not mine:
            raise BadInput(f"pid {pid} is not a chops process (no pid file); refusing to signal it",
                           hint="inv proc.list shows chops' processes")
        if not any(p.state == "running" for p in mine):
            raise BadInput(f"pid {pid} is not a chops process (its pid file is stale: the process is gone or the pid "
                           "was reused); refusing to signal it", hint="inv proc.clean removes the stale pid file")
        return [p for p in mine if p.state == "running" and p.pid != os.getpid()]
    matching = [p for p in running if name in labels(p)]
    if matching:
        return matching
    every = set(KINDS) | set(known) | {n for p in found for n in labels(p)}
    if name not in every:
        import difflib

        close = difflib.get_close_matches(name, sorted(every), n=3, cutoff=0.5)
        raise BadInput(f"unknown name {name!r}: not a pipeline, a kind of work or a pid",
                       hint=f"did you mean {', '.join(close)}?" if close else "inv proc.list shows what runs")
    raise BadInput(f"no running chops process is working on {name}", hint="inv proc.list shows what runs")


# --- stopping them ----------------------------------------------------------------------------------------------------

def _after_sigkill(p: Process) -> str:
    """What a SIGKILL leaves behind, and what tidies it up."""
    if p.kind == "pipeline.run":
        return ("its ledger row stays 'running' (shown as died) until the next run of that day closes it; "
                "inv proc.clean drops its staging table and clears its lock")
    if p.kind == "backfill":
        plan = p.what.split()[-1]
        return f"partitions it was running are left 'running' (shown as died); continue with: inv backfill --resume {plan}"
    if p.kind in ("db.migrate", "db.rollback"):
        return "a migration it was running is dirty: inv db.status shows it; inv db.migrate --resume or inv db.rollback"
    return "it had no chance to clean up; inv proc.clean removes what it left"


def _gone(p: Process) -> bool:
    return not is_ours(p.pid, p.create_time, p.host)


def _signal(p: Process, sig: int) -> str:
    """Send ``sig`` if ``p`` is still the process of its pid file (checked just before): 'sent', 'gone' or 'denied'."""
    if _gone(p):
        return "gone"
    try:
        os.kill(p.pid, sig)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        return "denied"
    return "sent"


DENIED = "not allowed to signal it: it belongs to another user (run as that user)"


def kill(targets: list[Process], grace: float, poll: float = 0.1, notify=None) -> list[dict[str, Any]]:
    """SIGTERM each target, wait up to ``grace`` seconds for all of them, SIGKILL the ones still there. Before every
    signal the pid is checked to still be the process of its pid file (pids are reused). A pid file the process
    could not remove (SIGKILL) is removed here. Returns one outcome per target; ``ended`` False when it still runs."""
    import signal as signals
    import time

    notify = notify or (lambda message: None)
    started = time.monotonic()
    outcomes: dict[int, dict[str, Any]] = {}
    waiting: list[Process] = []
    for p in targets:
        outcome = outcomes[p.pid] = {**p.as_dict(), "signal": None, "ended": True, "seconds": 0.0, "note": ""}
        sent = _signal(p, signals.SIGTERM)
        if sent == "sent":
            outcome["signal"] = "SIGTERM"
            waiting.append(p)
            notify(f"sent SIGTERM to pid {p.pid} ({p.kind} {p.what}); waiting up to {grace:g}s")
        else:
            outcome.update(ended=sent == "gone", note="it had already ended" if sent == "gone" else DENIED)
    deadline = started + grace
    while waiting and time.monotonic() < deadline:
        time.sleep(poll)
        for p in [p for p in waiting if _gone(p)]:
            waiting.remove(p)
            outcomes[p.pid].update(seconds=round(time.monotonic() - started, 2), note="ended after SIGTERM")
    for p in waiting:
        sent = _signal(p, signals.SIGKILL)
        if sent == "sent":
            outcomes[p.pid].update(signal="SIGKILL", note=f"still running after {grace:g}s, so SIGKILLed; "
                                                          + _after_sigkill(p))
            notify(f"pid {p.pid} still running after {grace:g}s: sent SIGKILL")
        else:
            outcomes[p.pid]["note"] = "ended after SIGTERM" if sent == "gone" else DENIED
    for p in waiting:
        end = time.monotonic() + 10
        while not _gone(p) and time.monotonic() < end:
            time.sleep(poll)
        outcomes[p.pid].update(ended=_gone(p), seconds=round(time.monotonic() - started, 2))
        if not _gone(p) and outcomes[p.pid]["signal"] == "SIGKILL":
            outcomes[p.pid]["note"] = "did not end even after SIGKILL (stuck in the kernel? see: ps -o stat -p PID)"
    for p in targets:
        if outcomes[p.pid]["ended"]:
            _remove_pid_file_of(p)
    return [outcomes[p.pid] for p in targets]


def _remove_pid_file_of(p: Process) -> None:
    """Remove the pid file of an ended process, if it is still the one it wrote."""
    try:
        data = json.loads(p.path.read_text())
    except (OSError, ValueError):
        return
    if data.get("pid") == p.pid and data.get("create_time") == p.create_time and _gone(p):
        try:
            p.path.unlink()
        except FileNotFoundError:
            pass


def running_for(since: str, now: datetime | None = None) -> str | None:
    """How long ago a pid file's ``since`` was ("3m 12s", "2h 5m", "1d 4h"); None when it cannot be read."""
    try:
        started = datetime.strptime(since, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        return None
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - started).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s" if minutes else f"{seconds}s"


# --- what dead processes leave behind ---------------------------------------------------------------------------------

def _rel(settings, path: Path) -> str:
    try:
        return str(Path(path).relative_to(settings.root))
    except ValueError:
        return str(path)


def _holder_gone(host: str, pid: int, since: str) -> bool:
    """Whether the process a lock record names is provably gone: on this host, and dead or its pid reused by a
    process that started after the record was written. Another host's holder cannot be judged: never gone."""
    if host != socket.gethostname():
        return False
    started = process.create_time(pid) if pid > 0 else None
    if started is None or _zombie(pid):
        return True
    try:
        since_ts = datetime.strptime(since, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=timezone.utc).timestamp()
    except (TypeError, ValueError):
        return False
    return started > since_ts + 1


def lock_files(settings) -> list[Path]:
    return sorted((settings.path("paths.var") / "locks").glob("*.lock"))


def stale_lock(path: Path, clear: bool = False):
    """The holder recorded in lock file ``path`` when that lock is stale: nobody holds the ``flock`` (a live holder
    always does) and the recorded process is gone. None otherwise. With ``clear``, the dead holder's record is
    emptied under the lock, exactly as a release does. The file itself stays: removing a lock file that another
    process has just opened would let two processes hold the same lock."""
    import fcntl

    from ops.core.locks import read_holder

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
            if holder is None or not _holder_gone(holder.host, holder.pid, holder.since):
                return None
            if clear:
                fh.seek(0)
                fh.truncate()
                fh.flush()
            return holder
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def stale_locks(settings) -> list[dict[str, Any]]:
    """Every lock file under ``<paths.var>/locks`` left behind by a process that is gone."""
    out = []
    for path in lock_files(settings):
        holder = stale_lock(path)
        if holder is not None:
            out.append({"path": str(path), "what": _rel(settings, path), "pid": holder.pid,
                        "reason": f"left by pid {holder.pid} ({holder.command}) since {holder.since}, which is gone"})
    return out


def stale_pid_files(settings) -> list[dict[str, Any]]:
    """Pid files of this host whose process is gone or whose pid now belongs to another process."""
    out = []
    for p in processes(settings):
        if p.state != "stale" or p.host not in ("?", socket.gethostname()):
            continue  # another host's pid file cannot be judged here
        if p.pid <= 0:
            why = "unreadable"
        elif process.create_time(p.pid) is None or _zombie(p.pid):
            why = f"pid {p.pid} ({p.kind} {p.what}) is gone"
        else:
            why = f"pid {p.pid} ({p.kind} {p.what}) is gone; the pid now belongs to another process"
        out.append({"path": str(p.path), "what": _rel(settings, p.path), "pid": p.pid, "reason": why})
    return out


def stale_migration_lock(settings, db) -> dict[str, Any] | None:
    """The migration lock (a table whose COMMENT names its holder) when its holder is provably gone."""
    from ops.migrations.yoyo_backend import ClickHouseBackend, describe

    holder = ClickHouseBackend(db, cluster=settings.get("clickhouse.cluster") or None).holder()
    if not holder:
        return None
    try:
        pid = int(holder.get("pid", 0))
    except (TypeError, ValueError):
        return None
    if not _holder_gone(str(holder.get("host")), pid, str(holder.get("since"))):
        return None
    return {"holder": holder, "reason": f"held by {describe(holder)}, which is gone"}


def orphan_staging_tables(db) -> list[dict[str, Any]]:
    """Staging tables (``_chops_staging_<pipeline>_<yyyymmdd>_<run8>``) whose run is not running any more. A table
    whose run is in the ledger as running, by a live process (or on another host, which cannot be judged), is kept."""
    from ops.pipelines import ledger
    from ops.pipelines.runner import staging_tables

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
    """Run logs (``<paths.logs>/pipelines/<name>/*.log``) and cron logs (``<paths.logs>/cron/*.log``) last written
    more than ``days`` days ago. ``days`` 0 keeps every log."""
    import time

    if days <= 0:
        return []
    root = settings.path("paths.logs")
    cutoff = (now if now is not None else time.time()) - days * 86400
    out = []
    for path in sorted([*(root / "pipelines").glob("*/*.log"), *(root / "cron").glob("*.log")]):
        try:
            written = path.stat().st_mtime
        except OSError:
            continue
        if path.is_file() and written < cutoff:
            last = datetime.fromtimestamp(written, timezone.utc).strftime("%Y-%m-%d")
            out.append({"path": str(path), "what": _rel(settings, path),
                        "reason": f"older than {days} days (last written {last})"})
    return out


def setting(settings, key: str, minimum: float = 0, maximum: float | None = None):
    """A ``proc.*`` setting, checked to be in range (a ConfigError naming where it was set, otherwise)."""
    from ops.core.errors import ConfigError

    value = settings.get(key)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum:g} and {maximum:g}" if maximum is not None else f">= {minimum:g}"
        raise ConfigError(f"{settings.sources.get(key, 'config')}: {key} must be {bounds}, got {value:g}")
    return value


def connect(settings):
    """A connection for health checks and cleaning: never creates the data directory or the database, and waits
    at most ``proc.db_wait`` seconds for an embedded engine that another chops process has open."""
    from ops.clickhouse.client import connect_existing

    return connect_existing(settings, wait=setting(settings, "proc.db_wait"))


def clean_plan(settings, db=None, now: float | None = None) -> list[dict[str, Any]]:
    """What :func:`clean` would remove, as plain data: stale pid files, stale locks, the migration lock of a dead
    holder and orphaned staging tables (these two only with ``db``), and logs past ``proc.log_retention_days``.
    Nothing of a running process is ever in it."""
    items = [{"kind": "pid file", **x} for x in stale_pid_files(settings)]
    items += [{"kind": "lock", **x} for x in stale_locks(settings)]
    if db is not None:
        lock = stale_migration_lock(settings, db)
        if lock:
            from ops.migrations.yoyo_backend import LOCK_TABLE

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
        elif kind in ("pid file", "log"):
            try:
                Path(item["path"]).unlink()
            except FileNotFoundError:
                continue
            if kind == "log" and Path(item["path"]).parent.parent.name == "pipelines":
                try:
                    Path(item["path"]).parent.rmdir()  # only when that was its pipeline's last log
                except OSError:
                    pass
        elif kind == "migration lock":
            from ops.migrations.yoyo_backend import ClickHouseBackend

            ClickHouseBackend(db, cluster=settings.get("clickhouse.cluster") or None).break_lock()
        elif kind == "staging table":
            db.command(f"DROP TABLE IF EXISTS `{item['table']}` SYNC")
        removed.append(item)
    return removed


# --- run logs ---------------------------------------------------------------------------------------------------------

def find_log(settings, name: str | None = None, day=None, known: Iterable[str] = ()) -> Path:
    """The newest run log of pipeline ``name`` (of any pipeline without one), of ``day`` when given. Read from the
    log directory, not the ledger, so it works while a run holds the embedded database."""
    import difflib

    from ops.core.errors import BadInput

    base = settings.path("paths.logs") / "pipelines"
    if name:
        if name not in set(known) and not (base / name).is_dir():
            close = difflib.get_close_matches(name, sorted(set(known)), n=3, cutoff=0.5)
            raise BadInput(f"unknown pipeline {name!r}",
                           hint=f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(known)) or 'none'}")
        folders = [base / name]
    else:
        folders = sorted(p for p in base.glob("*") if p.is_dir())
    pattern = f"{day.isoformat()}_*.log" if day else "*.log"
    files = [f for folder in folders for f in folder.glob(pattern) if f.is_file()]
    if files:
        return max(files, key=lambda f: (f.stat().st_mtime, f.name))
    who = name or "any pipeline"
    if day:
        days = sorted({f.name.split("_", 1)[0] for folder in folders for f in folder.glob("*.log")}, reverse=True)
        hint = f"days with logs: {', '.join(days[:7])}" + (" …" if len(days) > 7 else "") if days else None
        raise BadInput(f"no run log of {who} for {day} under {_rel(settings, base)}", hint=hint)
    raise BadInput(f"no run log of {who} under {_rel(settings, base)}: it has not run here yet",
                   hint=f"run it: inv pipeline.run {name}" if name else "run a pipeline: inv pipeline.run NAME")


def follow(path: Path, write, poll: float = 0.5, stop=lambda: False) -> None:
    """Write the file to ``write`` (bytes), then whatever is appended to it, polling like ``tail -f`` until ``stop()``
    says so (or the caller is interrupted). A file truncated meanwhile is read again from its start."""
    import time

    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(65536)
            if chunk:
                write(chunk)
                continue
            if stop():
                return
            try:
                if Path(path).stat().st_size < fh.tell():
                    fh.seek(0)
            except OSError:
                pass  # removed meanwhile (proc.clean): keep reading what is open
            time.sleep(poll)
