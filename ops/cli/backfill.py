"""backfill: history, partition by partition, through the same runner as cron and manual runs."""

from __future__ import annotations

from invoke import Collection

from ops.cli.base import settings, task, whole_number


def _range(s, days, start, end, max_days):
    from ops.pipelines.backfill import resolve_range

    limit = s.get("backfill.max_days") if max_days is None else whole_number(max_days, "--max-days")
    return resolve_range(days, start, end, max_days=limit)


@task(name="run", default=True, help={
    "days": "the last N complete days, ending yesterday (UTC)",
    "start": "first day, YYYY-MM-DD (inclusive)",
    "end": "last day, YYYY-MM-DD (inclusive; default yesterday)",
    "jobs": "comma-separated pipelines (default: every backfillable one); dependencies run first each day",
    "parallel": "partitions at once (default: backfill.parallel)",
    "dry_run": "print the plan with each partition's status and rows; store and run nothing",
    "force": "redo partitions that already succeeded",
    "rerun_failed": "only partitions whose last attempt failed",
    "newest_first": "run the newest days first",
    "fail_fast": "stop starting partitions after the first failure",
    "resume": "continue the plan with this id: only what it has not done yet",
    "max_days": "allow more days than backfill.max_days",
    "json": "print the plan and outcomes as JSON",
})
def run(c, days=None, start=None, end=None, jobs=None, parallel=None, dry_run=False, force=False, rerun_failed=False,
        newest_first=False, fail_fast=False, resume=None, max_days=None, json=False):
    """Backfill a range of days for the backfillable pipelines: a frozen plan, run in parallel, resumable."""
    from ops.clickhouse.client import connect
    from ops.core import output
    from ops.core.errors import BadInput, WorkFailed
    from ops.pipelines import backfill, ledger
    from ops.pipelines.definition import load_pipelines
    from ops.pipelines.scheduler import OutcomeStatus

    s = settings()
    parallel = whole_number(parallel if parallel is not None else s.get("backfill.parallel"), "--parallel")
    registry = load_pipelines(s)
    if resume:
        if days is not None or start or end or jobs or force or rerun_failed:
            raise BadInput("--resume takes the plan as it was made; give no range, jobs or --force with it")
        db = connect(s)
        plan = backfill.load(db, resume)
        output.info(f"resuming plan {plan.id} ({plan.start} .. {plan.end}, {len(plan.items)} partitions)")
    else:
        first, last = _range(s, days, start, end, max_days)
        names = backfill.select_jobs(registry, jobs)
        db = connect(s)
        ledger.require_table(db)
        plan = backfill.make_plan(s, db, registry, first, last, names,
                                  reprocess=backfill.Reprocess.of(force, rerun_failed), newest_first=newest_first)
        if dry_run:
            return _print_plan(db, registry, plan, json)
        backfill.store(db, plan)
        output.info(f"plan {plan.id}: {len(plan.items)} partitions to run, {len(plan.skipped)} skipped "
                    f"({plan.start} .. {plan.end}; {', '.join(plan.jobs)}; {parallel} at a time)")
    with output.Progress(len(plan.items), f"backfill {plan.id}") as bar:
        def progress(o, n, total):
            detail = f"{o.rows:,} rows" if o.status == OutcomeStatus.SUCCEEDED else (o.error or "")
            bar.step(f"{o.pipeline} {o.day} {o.status} {detail} {o.seconds:.1f}s".rstrip())

        outcomes = backfill.execute(s, plan, registry, parallel=parallel, fail_fast=fail_fast, progress=progress,
                                    db=db)
    summary = backfill.summarize(outcomes, plan)
    failed = [o for o in outcomes if o.status in (OutcomeStatus.FAILED, OutcomeStatus.BLOCKED,
                                                  OutcomeStatus.NOT_STARTED)]
    if json:
        output.print_json({"plan": plan.summary(), "summary": summary,
                           "outcomes": [o.__dict__ for o in outcomes]})
    else:
        output.print_table([(r["pipeline"], r["succeeded"], r["skipped"], r["failed"], r["blocked"], f"{r['rows']:,}",
                             f"{r['seconds']:.1f}s") for r in summary],
                           ["pipeline", "succeeded", "skipped", "failed", "blocked", "rows", "time"],
                           title=f"backfill {plan.id}", right=["succeeded", "skipped", "failed", "blocked", "rows", "time"])
    if failed:
        first_error = next((o for o in failed if o.status == OutcomeStatus.FAILED), failed[0])
        raise WorkFailed(f"{len(failed)} partition(s) did not succeed; first: {first_error.pipeline} "
                         f"{first_error.day}: {first_error.error}",
                         hint=f"fix it, then: inv backfill --resume {plan.id} (or --rerun-failed)")


def _print_plan(db, registry, plan, as_json):
    from ops.core import output
    from ops.pipelines.runner import partition_status

    rows = []
    for item in plan.items:
        st = partition_status(db, registry.get(item.pipeline), item.day)
        rows.append({"pipeline": item.pipeline, "day": item.day, "action": "run",
                     "status": st["last"]["status"] if st["last"] else "never run", "rows": st["rows"]})
    for name, day, why in plan.skipped:
        st = partition_status(db, registry.get(name), day)
        rows.append({"pipeline": name, "day": day, "action": f"skip ({why})",
                     "status": st["last"]["status"] if st["last"] else "never run", "rows": st["rows"]})
    rows.sort(key=lambda r: (r["day"], plan.jobs.index(r["pipeline"])), reverse=plan.newest_first)
    if as_json:
        return output.print_json({"plan": plan.summary(), "partitions": rows, "dry_run": True})
    output.print_table([(r["day"], r["pipeline"], r["action"], r["status"], f"{r['rows']:,}") for r in rows],
                       ["day", "pipeline", "action", "status now", "rows now"], right=["rows now"],
                       title=f"plan (dry run): {len(plan.items)} to run, {len(plan.skipped)} skipped")
    output.info("dry run: nothing was stored or run")


@task(name="list", help={"json": "print as JSON"})
def list_(c, json=False):
    """Backfillable pipelines, and the ones that cannot be backfilled or failed to load, with the reason."""
    from ops.core import output
    from ops.pipelines.definition import load_pipelines

    registry = load_pipelines(settings())
    rows = [{"pipeline": p.name, "backfillable": p.backfillable, "target": p.target,
             "depends_on": list(p.depends_on), "checks": [c_.name for c_ in p.checks],
             "problem": "" if p.backfillable else "backfillable=False"} for p in registry.ordered()]
    rows += [{"pipeline": module.rsplit(".", 1)[-1], "backfillable": False, "target": "", "depends_on": [],
              "checks": [], "problem": error} for module, error in sorted(registry.errors.items())]
    if json:
        return output.print_json(rows)
    output.print_table([(r["pipeline"], "yes" if r["backfillable"] else "no", r["target"],
                         ", ".join(r["depends_on"]) or "-", ", ".join(r["checks"]) or "-", r["problem"])
                        for r in rows], ["pipeline", "backfillable", "target", "depends on", "checks", "problem"])


@task(help={
    "days": "the last N days, ending yesterday (default 14)",
    "start": "first day, YYYY-MM-DD", "end": "last day, YYYY-MM-DD",
    "jobs": "comma-separated pipelines (default: every backfillable one)",
    "json": "print as JSON",
})
def counts(c, days=None, start=None, end=None, jobs=None, json=False):
    """Rows per day per target, days without data and big day-over-day changes flagged, and a coverage grid."""
    from ops.pipelines import backfill
    from ops.core import output
    from ops.clickhouse.client import connect
    from ops.pipelines.definition import load_pipelines
    from ops.pipelines.ledger import RunStatus

    s = settings()
    if days is None and not start:
        days = 14
    first, last = _range(s, days, start, end, None)
    registry = load_pipelines(s)
    names = backfill.select_jobs(registry, jobs)
    db = connect(s)
    data = backfill.counts(db, registry, first, last, names, s.get("backfill.change_threshold"))
    if json:
        return output.print_json(data)
    day_list = [d["day"] for d in data["tables"][0]["days"]] if data["tables"] else []
    rows = []
    for i, day in enumerate(day_list):
        cells = []
        for t in data["tables"]:
            d = t["days"][i]
            cells.append(f"{d['rows']:,}" + (f"  ⚠ {'; '.join(d['flags'])}" if d["flags"] else ""))
        rows.append((day, *cells))
    output.print_table(rows, ["day", *[f"{t['target']} rows" for t in data["tables"]]],
                       title=f"rows per day ({first} .. {last})")
    header = ["pipeline", *[f"{d:%d}" for d in day_list]]
    grid = [(g["pipeline"], *[backfill.GRID.get(g["days"][str(d)], "?") for d in day_list]) for g in data["coverage"]]
    output.print_table(grid, header, title=f"coverage, days of {first:%Y-%m-%d} .. {last:%Y-%m-%d}")
    output.info(backfill.LEGEND)
    gaps = sum(1 for g in data["coverage"] for v in g["days"].values() if v != RunStatus.SUCCEEDED)
    flagged = sum(1 for t in data["tables"] for d in t["days"] if d["flags"])
    output.info(f"{gaps} partition(s) not succeeded, {flagged} day(s) flagged")


@task(help={"limit": "at most this many plans (default 10)", "json": "print as JSON"})
def plans(c, limit="10", json=False):
    """Recent backfill plans with their progress (from the run ledger)."""
    from ops.pipelines import backfill
    from ops.core import output
    from ops.clickhouse.client import connect

    rows = backfill.recent_plans(connect(settings()), limit=whole_number(limit, "--limit"))
    if json:
        return output.print_json(rows)
    output.print_table([(r["id"], r["created_at"], r["created_by"], f"{r['start']} .. {r['end']}", ", ".join(r["jobs"]),
                         r["partitions"], r["succeeded"], r["failed"], r["running"], r["pending"],
                         f"{r['done_percent']:.0f}%") for r in rows],
                       ["plan", "created", "by", "days", "jobs", "partitions", "ok", "failed", "running", "pending",
                        "done"], right=["partitions", "ok", "failed", "running", "pending", "done"])


@task(help={
    "days": "the last N days, ending yesterday (default 7)",
    "start": "first day, YYYY-MM-DD", "end": "last day, YYYY-MM-DD",
    "jobs": "comma-separated pipelines (default: every backfillable one)",
    "json": "print as JSON",
})
def verify(c, days=None, start=None, end=None, jobs=None, json=False):
    """Re-run the pipelines' checks on the data already in the targets, without rewriting anything."""
    from ops.pipelines import backfill
    from ops.core import output
    from ops.clickhouse.client import connect
    from ops.core.errors import WorkFailed
    from ops.pipelines.definition import load_pipelines

    s = settings()
    if days is None and not start:
        days = 7
    first, last = _range(s, days, start, end, None)
    registry = load_pipelines(s)
    names = backfill.select_jobs(registry, jobs)
    results = backfill.verify(connect(s), registry, first, last, names)
    failed = [r for r in results if not r["passed"]]
    if json:
        output.print_json(results)
    else:
        output.print_table([(r["day"], r["pipeline"], r["check"], f"{r['rows']:,}", r["bad"],
                             "ok" if r["passed"] else "FAILED") for r in results],
                           ["day", "pipeline", "check", "rows", "bad", "result"], right=["rows", "bad"])
    if failed:
        raise WorkFailed(f"{len(failed)} check(s) failed on existing data; first: {failed[0]['pipeline']} "
                         f"{failed[0]['day']} {failed[0]['check']}")


ns = Collection("backfill")
ns.add_task(run, default=True)
for t in (list_, counts, plans, verify):
    ns.add_task(t)
