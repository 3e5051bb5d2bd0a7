"""pipeline: the pipelines: list, run, history (and scheduling with cron)."""

from __future__ import annotations

from invoke import Collection

from ops.cli import pipeline_data, pipeline_schedule
from ops.cli.base import settings, task, whole_number


def _age(t) -> str:
    from ops.core.timefmt import aware, utc_now

    seconds = (utc_now() - aware(t)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


@task(name="list", help={"json": "print as JSON"})
def list_(c, json=False):
    """Every pipeline: schedule, next run, target, depends, backfillable, its newest day's state, its latest attempt,
    stale days."""
    from ops.pipelines import ledger
    from ops.core import output
    from ops.clickhouse.client import connect
    from ops.core.errors import ChopsError
    from ops.pipelines.definition import load_pipelines

    s = settings()
    registry = load_pipelines(s)
    latest, newest, stale, note = {}, {}, {}, None
    try:
        db = connect(s)
        ledger.require_table(db)
        latest, newest = ledger.newest_by_pipeline(db)
        stale = _stale_days(db, registry)
    except ChopsError as exc:
        note = f"last runs unknown: {exc.line()}"
    rows = [_listing(p, newest.get(p.name), latest.get(p.name), stale.get(p.name, [])) for p in registry.ordered()]
    if json:
        return output.print_json({"pipelines": rows, "errors": registry.errors})
    output.print_table(
        [(r["name"], r["schedule"] or "-", r["next_run"] or "-", r["target"], ", ".join(r["depends_on"]) or "-",
          "yes" if r["backfillable"] else "no",
          f"{r['last_status']} {r['last_day']}" if r["last_status"] else "never run",
          _attempt(r["latest_attempt"]), len(r["stale_days"]) or "-")
         for r in rows],
        ["pipeline", "schedule", "next run", "target", "depends on", "backfill", "last run", "latest attempt",
         "stale days"])
    for module, error in sorted(registry.errors.items()):
        output.info(f"warning: {error}")
    if any(r["stale_days"] for r in rows):
        output.info("stale days were built before their upstream was rebuilt: see inv backfill.counts; rebuild them "
                    "with inv backfill --start D --end D --reprocess stale")
    if note:
        output.info(note)


def _listing(p, newest, attempt, stale) -> dict:
    """One pipeline of ``pipeline.list``: "last run" is its newest day's state (``last_day``, ``last_status``), the
    latest attempt (of any day: a backfill of old days runs after the newest one) is ``latest_attempt``."""
    nxt = p.next_run()
    return {
        "name": p.name, "description": p.description, "schedule": p.schedule,
        "next_run": nxt.strftime("%Y-%m-%d %H:%M UTC") if nxt else None, "target": p.target,
        "depends_on": list(p.depends_on), "backfillable": p.backfillable,
        "last_status": str(newest.status) if newest else None,
        "last_day": newest.day.isoformat() if newest else None,
        "latest_attempt": {
            "status": attempt["status"], "day": attempt["partition"].isoformat(),
            "started_at": attempt["started_at"].isoformat(), "age": _age(attempt["started_at"]),
        } if attempt else None,
        "stale_days": [str(d) for d in stale],
    }


def _attempt(attempt) -> str:
    return f"{attempt['status']} {attempt['day']} ({attempt['age']})" if attempt else "-"


def _stale_days(db, registry):
    """Per pipeline, the days whose data was built before an upstream day it read was rebuilt (from the partition
    states of the pipelines with dependencies and of those they depend on, and one catalog query)."""
    from ops.pipelines import ledger
    from ops.pipelines.reprocess import has_data, stale_reason

    downstream = {p.name: p for p in registry.pipelines.values() if p.depends_on}
    if not downstream:
        return {}
    involved = set(downstream) | {d for p in downstream.values() for d in p.depends_on}
    states = ledger.partition_states(db, pipelines=involved)
    rows = db.partition_rows_of({p.target for p in downstream.values()})
    out = {}
    for (name, day), state in sorted(states.items(), key=lambda kv: kv[0][1]):
        p = downstream.get(name)
        if p and has_data(state, p, rows[p.target]) and stale_reason(state, p.depends_on, states):
            out.setdefault(name, []).append(day)
    return out


@task(help={
    "name": "the pipeline",
    "date": "the day to build: YYYY-MM-DD, today or yesterday (in the pipeline's time zone; default yesterday)",
    "force": "rebuild a day that already succeeded",
    "dry_run": "check what the run would (target, dependencies, inputs) and say what it would do, or why it would "
               "refuse (exit 1); write nothing",
    "trigger": "who asked: manual (default), cron or backfill (recorded in the ledger)",
    "allow_future": "accept a date after today",
    "json": "print the result as JSON",
})
def run(c, name, date="yesterday", force=False, dry_run=False, trigger="manual", allow_future=False, json=False):
    """Build one day of a pipeline in staging, check it, and swap it in atomically (REPLACE PARTITION)."""
    from ops.core import output
    from ops.core.errors import WorkFailed
    from ops.pipelines.definition import load_pipelines
    from ops.pipelines.interrupt import Interrupted, Stopped
    from ops.pipelines.ledger import RunStatus
    from ops.pipelines import alerts
    from ops.pipelines.runner import run_pipeline

    s = settings()
    with alerts.on_run_failure(s, name, date, trigger, dry_run):  # [alerts] on_failure hears of a failed run
        # a cron run imports only NAME's module and its upstream ones: another module's error cannot stop it
        registry = load_pipelines(s, only=[name]) if trigger == "cron" else None
        try:
            r = run_pipeline(s, name, date, trigger=trigger, force=force, dry_run=dry_run,
                             allow_future=allow_future, registry=registry, notify=output.info)
        except Interrupted as exc:
            message = exc.message if exc.run_id else f"{name} {date}: {exc.message} before an attempt began"
            raise Stopped(message, exc.signum, hint=f"run it again: inv pipeline.run {name} --date {date}") from None
    if json:
        output.print_json(r.as_dict())
    elif r.dry_run:
        deps = ", ".join(f"{d}: {s}" for d, s in r.depends.items()) or "none"
        inputs = f"; inputs: {output.plural(len(r.inputs), 'file')}" if r.inputs else ""
        output.info(f"{r.pipeline} {r.day}: would {r.would}; target {r.target} has {r.rows_now:,} rows for the day; "
                    f"last run {r.last_status or 'never'}; depends: {deps}{inputs}; nothing was changed")
    if r.dry_run and r.refusal:
        raise WorkFailed(f"{r.pipeline} {r.day}: would refuse: {r.refusal}", hint=r.hint or None)
    if json or r.dry_run:
        return
    if r.status is RunStatus.SKIPPED:
        output.info(f"{r.pipeline} {r.day}: skipped, {r.reason}")
    else:
        output.info(f"{r.pipeline} {r.day}: succeeded, {r.rows:,} rows in {r.seconds:.2f}s (attempt {r.attempt}; "
                    f"log {r.log})")


@task(help={"name": "only this pipeline", "date": "only this day (YYYY-MM-DD)", "limit": "at most this many attempts (default 30)",
            "json": "print as JSON"})
def history(c, name=None, date=None, limit="30", json=False):
    """The run ledger: every attempt with its status, rows, duration, trigger and error."""
    from datetime import timezone

    from ops.pipelines import ledger
    from ops.core import output
    from ops.clickhouse.client import connect
    from ops.pipelines.definition import load_pipelines, parse_day
    from ops.runtime import acks

    s = settings()
    if name:
        load_pipelines(s).get(name)
    day = parse_day(date, timezone.utc, allow_future=True) if date else None
    limit = whole_number(limit, "--limit")
    db = connect(s)
    ledger.require_table(db)
    rows = acks.attach(db, ledger.attempts(db, name, day, limit=limit))
    if json:
        return output.print_json(rows)
    output.print_table(
        [(r["started_at"].strftime("%Y-%m-%d %H:%M:%S"), r["pipeline"], r["partition"], r["attempt"],
          f"{r['status']} (acked)" if r["acknowledged"] else r["status"],
          f"{r['rows_written']:,}", f"{r['duration_s']:.2f}s" if r["duration_s"] is not None else "-", r["trigger"],
          "; ".join(filter(None, [(r["error"] or "")[:80], acks.describe(r["acknowledged"])]))) for r in rows],
        ["started (UTC)", "pipeline", "day", "try", "status", "rows", "took", "trigger", "error"],
        right=["try", "rows", "took"])


ns = Collection("pipeline", list_, run, history, *pipeline_schedule.TASKS, *pipeline_data.TASKS)
