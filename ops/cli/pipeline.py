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
    """Every pipeline: schedule, next run, target, depends, backfillable, last run and its age."""
    from ops.pipelines import ledger
    from ops.core import output
    from ops.clickhouse.client import connect
    from ops.core.errors import ChopsError
    from ops.pipelines.definition import load_pipelines

    s = settings()
    registry = load_pipelines(s)
    last, note = {}, None
    try:
        db = connect(s)
        ledger.require_table(db)
        for p in registry.pipelines.values():
            tries = ledger.attempts(db, p.name, limit=1)
            last[p.name] = tries[0] if tries else None
    except ChopsError as exc:
        note = f"last runs unknown: {exc.line()}"
    rows = []
    for p in registry.ordered():
        run = last.get(p.name)
        nxt = p.next_run()
        rows.append({
            "name": p.name, "description": p.description, "schedule": p.schedule,
            "next_run": nxt.strftime("%Y-%m-%d %H:%M UTC") if nxt else None, "target": p.target,
            "depends_on": list(p.depends_on), "backfillable": p.backfillable,
            "last_status": run["status"] if run else None,
            "last_day": run["partition"].isoformat() if run else None,
            "last_started": run["started_at"].isoformat() if run else None,
            "last_age": _age(run["started_at"]) if run else None,
        })
    if json:
        return output.print_json({"pipelines": rows, "errors": registry.errors})
    output.print_table(
        [(r["name"], r["schedule"] or "-", r["next_run"] or "-", r["target"], ", ".join(r["depends_on"]) or "-",
          "yes" if r["backfillable"] else "no",
          f"{r['last_status']} {r['last_day']} ({r['last_age']})" if r["last_status"] else "never run")
         for r in rows],
        ["pipeline", "schedule", "next run", "target", "depends on", "backfill", "last run"])
    for module, error in sorted(registry.errors.items()):
        output.info(f"warning: {error}")
    if note:
        output.info(note)


@task(help={
    "name": "the pipeline",
    "date": "the day to build: YYYY-MM-DD, today or yesterday (in the pipeline's time zone; default yesterday)",
    "force": "rebuild a day that already succeeded",
    "dry_run": "check everything and say what would happen; write nothing",
    "trigger": "who asked: manual (default), cron or backfill (recorded in the ledger)",
    "allow_future": "accept a date after today",
    "json": "print the result as JSON",
})
def run(c, name, date="yesterday", force=False, dry_run=False, trigger="manual", allow_future=False, json=False):
    """Build one day of a pipeline in staging, check it, and swap it in atomically (REPLACE PARTITION)."""
    from ops.core import output
    from ops.pipelines.runner import run_pipeline

    from ops.pipelines.ledger import RunStatus

    r = run_pipeline(settings(), name, date, trigger=trigger, force=force, dry_run=dry_run,
                     allow_future=allow_future, notify=output.info)
    if json:
        return output.print_json(r.as_dict())
    if r.dry_run:
        deps = ", ".join(f"{d}: {s}" for d, s in r.depends.items()) or "none"
        output.info(f"{r.pipeline} {r.day}: would {r.would}; target {r.target} has {r.rows_now:,} rows for the day; "
                    f"last run {r.last_status or 'never'}; depends: {deps}; nothing was changed")
    elif r.status is RunStatus.SKIPPED:
        output.info(f"{r.pipeline} {r.day}: skipped, {r.reason}")
    else:
        output.info(f"{r.pipeline} {r.day}: succeeded, {r.rows:,} rows in {r.seconds:.2f}s (attempt {r.attempt}; "
                    f"log {r.log})")


@task(help={"name": "only this pipeline", "date": "only this day (YYYY-MM-DD)", "limit": "at most this many attempts (default 30)",
            "json": "print as JSON"})
def history(c, name=None, date=None, limit="30", json=False):
    """The run ledger: every attempt with its status, rows, duration, trigger and error."""
    from datetime import date as Date

    from ops.pipelines import ledger
    from ops.core import output
    from ops.clickhouse.client import connect
    from ops.core.errors import BadInput
    from ops.pipelines.definition import load_pipelines

    s = settings()
    if name:
        load_pipelines(s).get(name)
    day = None
    if date:
        try:
            day = Date.fromisoformat(date)
        except ValueError:
            raise BadInput(f"date {date!r} must be YYYY-MM-DD") from None
    limit = whole_number(limit, "--limit")
    db = connect(s)
    ledger.require_table(db)
    rows = ledger.attempts(db, name, day, limit=limit)
    if json:
        return output.print_json(rows)
    output.print_table(
        [(r["started_at"].strftime("%Y-%m-%d %H:%M:%S"), r["pipeline"], r["partition"], r["attempt"], r["status"],
          f"{r['rows_written']:,}", f"{r['duration_s']:.2f}s" if r["duration_s"] is not None else "-", r["trigger"],
          (r["error"] or "")[:80]) for r in rows],
        ["started (UTC)", "pipeline", "day", "try", "status", "rows", "took", "trigger", "error"],
        right=["try", "rows", "took"])


ns = Collection("pipeline", list_, run, history, *pipeline_schedule.TASKS, *pipeline_data.TASKS)
