"""The health verdict (``inv proc.check``): a list of checks, each ``pass``, ``warn`` or ``fail`` with a reason.

:func:`checks` gathers the facts (the database, the migration journal, the crontab, the run ledger, the disk, the
lock and pid files) and hands them to one small function per check; those functions are pure, so every verdict
can be tested without a machine in that state. What fails and what only warns:

* **database**: unreachable (a full disk too: its lock file cannot be written) → fail. Busy (another chops process
  has the embedded engine open for longer than ``proc.db_wait``) → warn: the engine demonstrably works, it is in
  use; the checks that need it are not run.
* **migrations**: any pending, dirty or drifted migration → fail; applied migrations this release has no file
  of (the database is ahead of it: a newer release applied them) → warn.
* **pipelines**: a pipeline module that does not load → fail, naming each with its error (its cron entry would
  fail every time; the other pipelines load and run).
* **cron**: no entry installed at all → warn, so a fresh install is healthy ("run inv pipeline.schedule --all");
  entries installed but missing, different, stale or duplicated → fail; entries removed by a deploy's pause that
  was never ended (the deploy died between pausing and scheduling) → fail; as expected but no cron daemon → warn.
* **freshness**: a scheduled pipeline whose last success is older than twice its interval → fail; one with
  attempts but no success → fail; one never run at all → warn (a fresh install, before its first scheduled run).
* **failed runs**: a day's state is its newest attempt. A day whose newest attempt failed (or whose process died)
  in the last 24 hours → fail, unless that attempt was acknowledged (``inv proc.ack``); a failure superseded by a
  later success passes; newest attempt killed on purpose (SIGTERM, ``proc.kill``) and not rerun, or a retry still
  running → warn; failures of a pipeline that no longer exists (its module deleted) → warn, naming it.
* **staging tables**: staging tables whose run died or ended without dropping them → warn (``inv proc.clean``).
* **disk**: less free space than ``proc.min_free_disk_percent`` where the embedded database really is (wherever
  ``clickhouse.url`` and symlinks put it), var/ or the logs live → fail.
* **locks**: a lock file or the migration lock left by a process that is gone → fail (``inv proc.clean``), unless
  the work it was taken for has succeeded since (a killed run, then resumed).
* **pid files**: a pid file whose process is gone → fail (``inv proc.clean``), unless its work has succeeded since:
  the day of a ``pipeline.run``, every partition of a backfill's plan, or (migrations) nothing pending or dirty.

The verdict is healthy when nothing fails; warnings are reported, never fatal.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable

from ops.clickhouse.client import connect_existing
from ops.core.urls import target
from ops.core.errors import ChopsError, LockTimeout
from ops.core.output import human_bytes, plural
from ops.core.timefmt import aware, duration, utc_now
from ops.migrations.migrator import Migrations
from ops.pipelines import backfill, cron, ledger
from ops.pipelines.ledger import FAILURES, RunStatus
from ops.pipelines.definition import load_pipelines, next_run
from ops.runtime import acks, janitor
from ops.runtime.config import setting, shown_path
from ops.runtime.pidfiles import State, processes

PASS, WARN, FAIL = "pass", "warn", "fail"
NAMES = ("database", "migrations", "pipelines", "cron", "freshness", "failed runs", "staging tables", "disk", "locks",
         "pid files")
RECENT = timedelta(days=1)  # "failed runs in the last day"
FRESHNESS_FACTOR = 2  # "last success younger than twice its interval"


def result(name: str, status: str, reason: str) -> dict[str, Any]:
    return {"name": name, "status": status, "reason": reason}


def verdict(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Healthy when nothing fails; the count of each status."""
    count = {s: sum(1 for r in results if r["status"] == s) for s in (PASS, WARN, FAIL)}
    return {"healthy": count[FAIL] == 0, "passed": count[PASS], "warnings": count[WARN], "failed": count[FAIL]}


def _span(delta: timedelta) -> str:
    """An interval as people say it: 24h, 1h, 15m, 7d."""
    minutes = int(delta.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d" if minutes >= 2880 else f"{minutes // 60}h"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


# --- the pure checks -------------------------------------------------------------------------------------------------

def migrations_result(rows: list[dict[str, Any]], findings: Iterable[dict[str, str]] = ()) -> dict[str, Any]:
    """From ``Migrations.status()`` rows and ``validate()`` findings."""
    name = "migrations"
    problems = []
    dirty = [r for r in rows if r["state"] == "dirty"]
    drifted = [r for r in rows if r["state"] == "drifted"]
    pending = [r for r in rows if r["state"] == "pending"]
    if dirty:
        problems.append("dirty: " + "; ".join(f"{r['id']} ({r['note']})" for r in dirty)
                        + " (fix the file and run inv db.migrate --resume, or undo it with inv db.rollback)")
    if drifted:
        problems.append("drifted: " + ", ".join(f"{r['id']} ({r['note']})" for r in drifted)
                        + " (restore the file; a change goes in a new migration)")
    if pending:
        problems.append(f"not applied: {', '.join(r['id'] for r in pending)} (run: inv db.migrate)")
    other = [f for f in findings if f.get("level") == "error" and f.get("check") not in ("dirty", "drift", "conflict")]
    if other:
        more = f" (and {len(other) - 1} more: inv db.validate)" if len(other) > 1 else ""
        problems.append(other[0]["message"] + more)
    if problems:
        return result(name, FAIL, "; ".join(problems))
    ahead = [r["id"] for r in rows if r["state"] == "ahead"]
    if ahead:  # a newer release applied them and this one was rolled back to: it runs fine, say so
        files = "file" if len(ahead) == 1 else "files"
        return result(name, WARN, f"database is ahead of this release: {', '.join(ahead)} applied, {files} not in "
                                  f"this release (the other {len(rows) - len(ahead)} applied)")
    return result(name, PASS, f"all {len(rows)} applied, none dirty or drifted")


def pipelines_result(names: Iterable[str], errors: dict[str, str]) -> dict[str, Any]:
    """Each module that did not load, with its error (the others load and run)."""
    names = list(names)
    if errors:
        return result("pipelines", FAIL, f"{plural(len(errors), 'pipeline module')} did not load: "
                      + "; ".join(sorted(errors.values())) + f" ({plural(len(names), 'other pipeline')} "
                      + ("loads and runs)" if len(names) == 1 else "load and run)"))
    return result("pipelines", PASS, f"{plural(len(names), 'pipeline')} load" if len(names) != 1 else "1 pipeline loads")


def cron_result(rows: list[dict[str, Any]], broken: Iterable[str] = (), daemon_running: bool = True,
                paused: dict[str, Any] | None = None) -> dict[str, Any]:
    """From ``ops.pipelines.cron.installed_vs_expected`` rows. ``broken``: pipelines whose module did not load (their entries
    are not stale; the pipelines check reports them). ``paused``: a deploy's pause that was not ended."""
    name = "cron"
    broken = set(broken)
    rows = [r for r in rows if not (r["state"] == "stale" and r["pipeline"] in broken)]
    scheduled = [r for r in rows if r["state"] != "not scheduled"]
    if not scheduled:
        return result(name, PASS, "no pipeline has a schedule; nothing to install")
    if paused and any(r["state"] == "missing" for r in scheduled):
        return result(name, FAIL, f"cron entries were removed by {paused.get('by', '?')} at {paused.get('since', '?')} "
                                  "and not installed again, so no pipeline runs on schedule (if no deploy is running "
                                  "now: inv pipeline.schedule --all, or deploy again)")
    if not any(r["installed"] for r in rows):
        return result(name, WARN, f"no cron entries; {plural(len(scheduled), 'scheduled pipeline')} run only by hand "
                                  "(run: inv pipeline.schedule --all)")
    off = [r for r in rows if r["state"] in ("missing", "differs", "stale", "duplicate")]
    if off:
        return result(name, FAIL, "entries not as expected: " + ", ".join(f"{r['pipeline']} {r['state']}" for r in off)
                      + " (inv pipeline.crontab shows them; fix with: inv pipeline.schedule --all)")
    ok = sum(1 for r in rows if r["state"] == "ok")
    if not daemon_running:
        return result(name, WARN, f"{ok} entries installed as expected, but no cron daemon is running, so none fires "
                                  "(start it: service cron start)")
    return result(name, PASS, f"{ok} entries installed as expected")


def interval(schedule: str, now: datetime) -> timedelta:
    """How long a schedule may leave between two runs: the longest gap between its consecutive firings over the
    next week or so (two firings at least), so a weekday schedule allows for the weekend."""
    fires = [next_run(schedule, now)]
    while len(fires) < 2 or (fires[-1] - fires[0] < timedelta(days=8) and len(fires) < 200):
        fires.append(next_run(schedule, fires[-1]))
    return max(b - a for a, b in zip(fires, fires[1:]))


def freshness_result(scheduled: dict[str, str], runs: dict[str, dict[str, Any]], now: datetime) -> dict[str, Any]:
    """``scheduled``: pipeline → cron schedule; ``runs``: pipeline → {attempts, last_success (datetime or None),
    last_status}. A pipeline is fresh when its last success finished less than twice its interval ago."""
    name = "freshness"
    if not scheduled:
        return result(name, PASS, "no pipeline has a schedule")
    stale, never_ok, never_run, fresh = [], [], [], []
    for pipeline, schedule in sorted(scheduled.items()):
        info = runs.get(pipeline) or {}
        limit = interval(schedule, now) * FRESHNESS_FACTOR
        last = info.get("last_success")
        if last is None:
            if info.get("attempts"):
                never_ok.append(f"{pipeline} has never succeeded ({plural(info['attempts'], 'attempt')}, the last "
                                f"{info.get('last_status')})")
            else:
                never_run.append(pipeline)
            continue
        age = now - aware(last)
        if age > limit:
            stale.append(f"{pipeline} last succeeded {duration(age, precise=False)} ago, more than twice its "
                         f"{_span(limit / FRESHNESS_FACTOR)} interval")
        else:
            fresh.append((age, pipeline))
    if stale or never_ok:
        return result(name, FAIL, "; ".join(stale + never_ok) + " (inv pipeline.history shows its runs)")
    if never_run:
        return result(name, WARN, f"never run: {', '.join(never_run)} (a fresh install: it runs at its first "
                                  "scheduled time, or now with inv pipeline.run NAME)")
    oldest = max(fresh)
    return result(name, PASS, f"{plural(len(fresh), 'scheduled pipeline')} succeeded within twice their interval "
                              f"(the oldest success: {oldest[1]}, {duration(oldest[0], precise=False)} ago)")


def _age_order(a: dict[str, Any]) -> tuple:
    return aware(a["started_at"]), a.get("attempt") or 0


def newest_attempts(attempts: Iterable[dict[str, Any]]) -> dict[tuple[str, Any], dict[str, Any]]:
    """The newest attempt of each (pipeline, day): a day's state is its newest attempt."""
    return {(a["pipeline"], a["partition"]): a for a in sorted(attempts, key=_age_order)}


def _failure(a: dict[str, Any]) -> str:
    error = " ".join(str(a.get("error") or "").split())
    return (f"{a['pipeline']} {a['partition']} {a['status']} at {aware(a['started_at']):%Y-%m-%d %H:%M} UTC"
            + (f" ({error[:120]})" if error else "") + (f", run {str(a['run_id'])[:8]}" if a.get("run_id") else ""))


def failed_runs_result(attempts: list[dict[str, Any]], now: datetime, window: timedelta = RECENT,
                       known: Iterable[str] | None = None, acked: Iterable[str] = ()) -> dict[str, Any]:
    """``attempts``: ledger rows (run_id, pipeline, partition, status with 'died' for a dead 'running', started_at,
    error) of every day that had an attempt recently. A day's state is its newest attempt: a failure superseded by a
    later success passes, a newest attempt that failed in the window fails unless it was acknowledged (``acked``:
    run ids, ``inv proc.ack``). ``known``: the pipelines that exist (None: not known); the failures of any other are a
    warning naming it: a pipeline since deleted is never rerun."""
    name = "failed runs"
    since, acked, known = now - window, set(acked), set(known) if known is not None else None
    failures, killed, retrying, gone, acknowledged, retried = [], [], [], {}, 0, 0
    by_day: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for a in attempts:
        by_day.setdefault((a["pipeline"], a["partition"]), []).append(a)
    for (pipeline, _), tries in sorted(by_day.items(), key=lambda item: (item[0][0], str(item[0][1]))):
        tries.sort(key=_age_order)
        latest = tries[-1]
        recent = [a for a in tries if a["status"] in FAILURES and aware(a["started_at"]) >= since]
        if latest["status"] == RunStatus.SUCCEEDED:
            retried += len(recent)
        elif latest["status"] == RunStatus.RUNNING:
            retrying += [_failure(recent[-1]) + " — being retried"] if recent else []
        elif latest["status"] not in FAILURES or aware(latest["started_at"]) < since:
            continue
        elif str(latest.get("run_id")) in acked:
            acknowledged += 1
        elif known is not None and pipeline not in known:
            gone[pipeline] = gone.get(pipeline, 0) + 1
        else:
            (killed if latest["status"] == RunStatus.KILLED else failures).append(_failure(latest))
    return _failed_runs_verdict(name, failures, killed, retrying, gone, acknowledged, retried)


def _failed_runs_verdict(name: str, failures: list[str], killed: list[str], retrying: list[str],
                         gone: dict[str, int], acknowledged: int, retried: int) -> dict[str, Any]:
    notes = ([f"{plural(retried, 'failed run')} in the last day, each retried successfully"] if retried else []) + \
            ([f"{plural(acknowledged, 'failure')} acknowledged (inv pipeline.history shows by whom)"] if acknowledged else [])
    if failures:
        return result(name, FAIL, f"{plural(len(failures), 'day')} whose newest run failed in the last day: "
                      + "; ".join(failures[:5]) + (" …" if len(failures) > 5 else "")
                      + " (rerun: inv pipeline.run NAME --date DAY, or inv backfill --rerun-failed; if it needs "
                        "nothing more: inv proc.ack --run-id RUN)")
    warnings = killed + retrying
    if gone:
        warnings.append("failed runs of pipelines that no longer exist: "
                        + ", ".join(f"{p} ({plural(n, 'day')})" for p, n in sorted(gone.items()))
                        + f" (acknowledge them: inv proc.ack --pipeline {sorted(gone)[0]})")
    if warnings:
        return result(name, WARN, "; ".join(warnings) + (" (killed and not rerun)" if killed else ""))
    return result(name, PASS, "; ".join(notes) if notes else "no failed runs in the last day")


def disk_result(usages: list[dict[str, Any]], min_percent: float) -> dict[str, Any]:
    """``usages``: {what, free, total} per filesystem; fails below ``min_percent`` free."""
    name = "disk"
    if not usages:
        return result(name, WARN, "no disk to measure")

    def shown(u):
        return f"{u['what']} has {u['free'] / u['total'] * 100:.1f}% free ({human_bytes(u['free'])} of {human_bytes(u['total'])})"

    low = [u for u in usages if u["total"] and u["free"] / u["total"] * 100 < min_percent]
    if low:
        return result(name, FAIL, "; ".join(shown(u) for u in low) + f", below proc.min_free_disk_percent = {min_percent:g}")
    return result(name, PASS, "; ".join(shown(u) for u in usages))


def _done_since(items: list[dict[str, Any]], what: str) -> str:
    """The note on stale items whose work has been done since (a killed run, then resumed): they fail nothing."""
    done = [i for i in items if i.get("superseded")]
    if not done:
        return ""
    return (f"; {plural(len(done), what)} left by a process that died, whose work has succeeded since ("
            + "; ".join(f"{i['what']}: {i['superseded']}" for i in done[:3]) + (" …" if len(done) > 3 else "")
            + "; inv proc.clean removes them)")


def locks_result(files: list[dict[str, Any]], migration_lock: dict[str, Any] | None,
                 not_checked: str | None = None) -> dict[str, Any]:
    """``files``: stale lock files, ``superseded`` saying why one no longer matters; ``not_checked``: why the
    migration lock (it lives in the database) could not be looked at."""
    name = "locks"
    problems = [f"{f['what']} {f['reason']}" for f in files if not f.get("superseded")]
    if migration_lock:
        problems.append(f"the migration lock is {migration_lock['reason']}")
    if problems:
        return result(name, FAIL, "stale: " + "; ".join(problems) + " (run: inv proc.clean)")
    if not_checked:
        return result(name, WARN, f"no stale lock files; the migration lock was not checked: {not_checked}")
    return result(name, PASS, "no stale locks" + _done_since(files, "lock file"))


def pid_files_result(stale: list[dict[str, Any]], running: int) -> dict[str, Any]:
    """``stale``: pid files of processes that are gone, ``superseded`` saying why one no longer matters."""
    problems = [s for s in stale if not s.get("superseded")]
    if problems:
        return result("pid files", FAIL, "stale: " + "; ".join(f"{s['what']}: {s['reason']}" for s in problems)
                      + " (run: inv proc.clean)")
    return result("pid files", PASS, f"{plural(running, 'chops process', 'chops processes')} running, no stale pid files"
                  + _done_since(stale, "pid file"))


def staging_result(orphans: list[dict[str, Any]]) -> dict[str, Any]:
    """Staging tables whose run is over (it died, or ended without dropping it): space taken, nothing at risk."""
    if orphans:
        return result("staging tables", WARN, f"{len(orphans)} orphaned: "
                      + "; ".join(f"{o['what']} ({o['reason']})" for o in orphans[:5])
                      + (" …" if len(orphans) > 5 else "") + " (inv proc.clean drops them)")
    return result("staging tables", PASS, "no orphaned staging tables")


# --- gathering the facts -----------------------------------------------------------------------------------------

def _guarded(name: str, check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one check; an error inside it is that check's failure, never the end of the others."""
    started = time.monotonic()
    try:
        out = check()
    except ChopsError as exc:
        out = result(name, FAIL, exc.line())
    except Exception as exc:  # a health check reports, it does not crash: the error is its reason
        out = result(name, FAIL, f"the check itself failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
    out["seconds"] = round(time.monotonic() - started, 3)
    return out


def _open(settings) -> tuple[Any, dict[str, Any], str | None]:
    """The database and the database check; the third value says why the others cannot use it."""
    try:
        db = connect_existing(settings, wait=setting(settings, "proc.db_wait"))
        version = db.scalar("SELECT version()")
    except LockTimeout as exc:
        return None, result("database", WARN, f"busy: {exc.message}; the checks that need it were not run"), \
            "the database is busy"
    except ChopsError as exc:
        return None, result("database", FAIL, exc.line()), "the database is unreachable"
    engine = "embedded chDB" if db.target.kind == "embedded" else "ClickHouse server"
    return db, result("database", PASS, f"reachable: {engine} {version}, database {db.name}"), None


def _migrations(settings, db) -> dict[str, Any]:
    m = Migrations(settings, db)
    files = m.files()
    return migrations_result(m.status(), m.validate(check_sql=False, files=files))


def _cron(settings, registry) -> dict[str, Any]:
    try:
        rows = cron.installed_vs_expected(settings, registry)
    except ChopsError as exc:
        scheduled = sum(1 for p in registry.pipelines.values() if p.schedule)
        if not scheduled:
            return result("cron", PASS, "no pipeline has a schedule; nothing to install")
        return result("cron", WARN, f"cannot read the crontab ({exc.line()}), so {plural(scheduled, 'scheduled pipeline')} "
                                    "run only by hand")
    broken = {module.rsplit(".", 1)[-1] for module in registry.errors}
    return cron_result(rows, broken, daemon_running=cron.daemon_pid() is not None, paused=cron.paused(settings))


def _freshness(db, registry, now) -> dict[str, Any]:
    scheduled = {p.name: p.schedule for p in registry.pipelines.values() if p.schedule}
    return freshness_result(scheduled, ledger.runs_by_pipeline(db) if scheduled else {}, now)


def recent_attempts(db, now: datetime, window: timedelta = RECENT) -> list[dict[str, Any]]:
    """Every attempt of each (pipeline, day) that had an attempt started since ``now - window``; a 'running' one
    whose process is gone has status 'died'."""
    return ledger.recent_attempts(db, now - window)


def _failed_runs(db, registry, now: datetime) -> dict[str, Any]:
    """The failed-runs verdict with the acknowledgements of the failing days' newest attempts, and the pipelines
    that exist (when every module was looked at)."""
    attempts = recent_attempts(db, now)
    failing = [a["run_id"] for a in newest_attempts(attempts).values() if a["status"] in FAILURES]
    known = registry.known() if registry is not None and registry.selected is None else None
    return failed_runs_result(attempts, now, known=known, acked=acks.of_runs(db, failing))


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_usages(settings, db=None) -> list[dict[str, Any]]:
    """Free and total bytes of each filesystem chops writes to: the embedded database's (where its path really
    leads: ``clickhouse.url`` may place it anywhere, through symlinks), var/ and the logs, once per filesystem
    naming what lies on it; on a ClickHouse server, its disks."""
    tgt = target(settings)
    places = [(settings.path("paths.var"), None), (settings.path("paths.logs"), None)]
    if tgt.kind == "embedded":
        places.append((tgt.path, "the database"))
    by_device: dict[int, dict[str, Any]] = {}
    shown: list[Path] = []
    for path, label in places:
        real = _existing(path.resolve())
        usage = by_device.get(os.stat(real).st_dev)
        if usage is None:
            total, _, free = shutil.disk_usage(real)
            usage = by_device[os.stat(real).st_dev] = {"what": [], "free": free, "total": total}
        if not any(real.is_relative_to(other) for other in shown):  # var/log, var/clickhouse: said by var
            text = shown_path(settings, path)
            usage["what"].append(f"{label} {text}" if label else text)
            shown.append(real)
    out = [{**u, "what": ", ".join(u["what"])} for u in by_device.values() if u["what"]]
    if db is not None and db.target.kind == "server":
        for d in db.rows("SELECT name, free_space, total_space FROM system.disks"):
            out.append({"what": f"server disk {d['name']}", "free": int(d["free_space"]), "total": int(d["total_space"])})
    return out


def _superseded(db, item: dict[str, Any], migrations_ok: bool) -> str | None:
    """Why the work a stale pid file or lock file was for no longer needs it, or None: the day it was building has
    succeeded since, every partition of its backfill plan has, or (migrations) nothing is pending or dirty."""
    kind, work = item.get("work_kind"), str(item.get("work") or "").split()
    if kind == "pipeline.run" and len(work) == 2:
        newest = ledger.attempts(db, work[0], date.fromisoformat(work[1]), limit=1)
        return f"{work[0]} {work[1]} has succeeded since" if newest and newest[0]["status"] == RunStatus.SUCCEEDED \
            else None
    if kind == "backfill" and len(work) == 2:
        try:
            plan = backfill.load(db, work[1])
        except ChopsError:
            return None
        states = ledger.partition_states(db, plan.start, plan.end)
        if all(getattr(states.get((i.pipeline, i.day)), "status", None) == RunStatus.SUCCEEDED for i in plan.items):
            return f"every partition of plan {plan.id} has succeeded since"
    if kind in ("db.migrate", "db.rollback") and migrations_ok:
        return "no migration is pending or dirty"
    return None


def _mark_superseded(db, items: list[dict[str, Any]], migrations_ok: bool) -> list[dict[str, Any]]:
    if db is not None:
        for item in items:
            try:
                item["superseded"] = _superseded(db, item, migrations_ok)
            except (ChopsError, ValueError):
                item["superseded"] = None  # cannot tell: it stays a failure
    return items


def _locks(settings, db, unusable: str | None, migrations_ok: bool) -> dict[str, Any]:
    migration_lock = janitor.stale_migration_lock(settings, db) if db is not None else None
    files = _mark_superseded(db, janitor.stale_locks(settings), migrations_ok)
    return locks_result(files, migration_lock, not_checked=unusable if db is None else None)


def _pid_files(settings, db, migrations_ok: bool) -> dict[str, Any]:
    running = sum(1 for p in processes(settings) if p.state is State.RUNNING)
    return pid_files_result(_mark_superseded(db, janitor.stale_pid_files(settings), migrations_ok), running)


# long: one check after another, in the order they are reported; each is one line
def checks(settings, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every health check, in order, each ``{name, status, reason, seconds}``."""
    now = now or utc_now()
    started = time.monotonic()
    db, database, unusable = _open(settings)
    database["seconds"] = round(time.monotonic() - started, 3)
    out = [database]

    def needs_db(name: str, check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if db is None:
            return {**result(name, WARN, f"not checked: {unusable}"), "seconds": 0.0}
        return _guarded(name, check)

    registry: list = []

    def pipelines() -> dict[str, Any]:
        registry.append(load_pipelines(settings))
        return pipelines_result(registry[0].pipelines, registry[0].errors)

    try:
        out.append(needs_db("migrations", lambda: _migrations(settings, db)))
        migrations_ok = db is not None and out[-1]["status"] != FAIL  # a warning: only ahead, nothing pending
        out.append(_guarded("pipelines", pipelines))
        if registry:
            out.append(_guarded("cron", lambda: _cron(settings, registry[0])))
            out.append(needs_db("freshness", lambda: _freshness(db, registry[0], now)))
        else:
            out.append({**result("cron", WARN, "not checked: the pipelines did not load"), "seconds": 0.0})
            out.append({**result("freshness", WARN, "not checked: the pipelines did not load"), "seconds": 0.0})
        out.append(needs_db("failed runs", lambda: _failed_runs(db, registry[0] if registry else None, now)))
        out.append(needs_db("staging tables", lambda: staging_result(janitor.orphan_staging_tables(db))))
        out.append(_guarded("disk", lambda: disk_result(disk_usages(settings, db),
                                                        setting(settings, "proc.min_free_disk_percent", 0, 100))))
        out.append(_guarded("locks", lambda: _locks(settings, db, unusable, migrations_ok)))
        out.append(_guarded("pid files", lambda: _pid_files(settings, db, migrations_ok)))
    finally:
        if db is not None:
            db.close()
    return out


# --- JUnit XML for CI dashboards ---------------------------------------------------------------------------------

def junit_xml(results: list[dict[str, Any]], now: datetime | None = None) -> str:
    """The checks as one JUnit test suite, "chops health", one test case per check: a failing check is a failure;
    a warning is a passing case whose system-out says ``warn: …`` (it ran and found something to look at; JUnit's
    "skipped" would claim it did not run), and the suite's properties name the checks that warned."""
    from junit_xml import TestCase, TestSuite, to_xml_report_string

    cases = []
    for r in results:
        case = TestCase(r["name"], classname="chops.health", elapsed_sec=r.get("seconds"),
                        stdout=f"{r['status']}: {r['reason']}")
        if r["status"] == FAIL:
            case.add_failure_info(message=r["reason"], failure_type="health check failed")
        cases.append(case)
    v = verdict(results)
    properties = {"verdict": "healthy" if v["healthy"] else "unhealthy",
                  "warnings": ", ".join(r["name"] for r in results if r["status"] == WARN) or "none"}
    suite = TestSuite("chops health", cases, hostname=socket.gethostname(), properties=properties,
                      timestamp=(now or utc_now()).isoformat(timespec="seconds"))
    return to_xml_report_string([suite], prettyprint=True, encoding="utf-8")
