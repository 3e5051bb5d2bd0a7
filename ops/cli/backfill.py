"""backfill: history, partition by partition, through the same runner as cron and manual runs."""

from __future__ import annotations

from invoke import Collection

from ops.cli.base import settings, task, whole_number

_SELECT = "pipelines, comma-separated; b+ adds what depends on b, +b what b depends on (default: every backfillable one)"
_EXCLUDE = "pipelines to leave out (the same syntax as --select)"
_JOBS = "the same as --select (its older name)"


def _range(s, days, start, end, max_days):
    from ops.pipelines.backfill import resolve_range

    limit = s.get("backfill.max_days") if max_days is None else whole_number(max_days, "--max-days")
    return resolve_range(days, start, end, max_days=limit)


def _selection(registry, select, jobs, exclude):
    from ops.core import output
    from ops.pipelines import backfill
    from ops.pipelines.selection import joined

    chosen = backfill.select_jobs(registry, joined(select, jobs), exclude)
    for name, why in chosen.left_out:
        output.info(f"note: {name} left out: it {why}")
    return chosen.names


@task(name="run", default=True, help={
    "days": "the last N complete days, ending yesterday (UTC)",
    "start": "first day, YYYY-MM-DD (inclusive)",
    "end": "last day, YYYY-MM-DD (inclusive; default yesterday)",
    "select": _SELECT + "; dependencies run first each day",
    "exclude": _EXCLUDE,
    "jobs": _JOBS,
    "parallel": "partitions at once (default: backfill.parallel)",
    "dry_run": "print the plan (a summary per pipeline); store and run nothing",
    "details": "with --dry-run: list every partition with its status and rows",
    "reprocess": "which partitions to build: missing (default: never succeeded, or rows gone), failed, stale (built "
                 "before their upstream was rebuilt) or all; what depends on them that day is rebuilt too",
    "force": "the same as --reprocess all",
    "rerun_failed": "the same as --reprocess failed",
    "newest_first": "run the newest days first",
    "fail_fast": "stop starting partitions after the first failure",
    "resume": "continue the plan with this id: only what it has not done yet",
    "max_days": "allow more days than backfill.max_days",
    "json": "print the plan and outcomes as JSON",
})
def run(c, days=None, start=None, end=None, jobs=None, parallel=None, dry_run=False, force=False, rerun_failed=False,
        newest_first=False, fail_fast=False, resume=None, max_days=None, json=False, select=None, exclude=None,
        reprocess=None, details=False):
    """Backfill a range of days for the backfillable pipelines: a frozen plan, run in parallel, resumable."""
    from ops.clickhouse.client import connect
    from ops.core import output
    from ops.core.errors import BadInput
    from ops.pipelines import backfill, ledger
    from ops.pipelines.definition import load_pipelines
    from ops.pipelines.reprocess import Reprocess

    s = settings()
    parallel = whole_number(parallel if parallel is not None else s.get("backfill.parallel"), "--parallel")
    registry = load_pipelines(s)
    if resume:
        given = (days, start, end, select, exclude, jobs, reprocess)
        if any(v is not None for v in given) or force or rerun_failed:
            raise BadInput("--resume takes the plan as it was made; give no range, selection or reprocessing with it")
        db = connect(s)
        plan = backfill.load(db, resume)
        return _execute(s, db, registry, plan, parallel, fail_fast, json, resumed=True)
    mode = Reprocess.of(reprocess, force, rerun_failed)
    first, last = _range(s, days, start, end, max_days)
    names = _selection(registry, select, jobs, exclude)
    db = connect(s)
    ledger.require_table(db)
    plan = backfill.make_plan(s, db, registry, first, last, names, reprocess=mode, newest_first=newest_first)
    if dry_run:
        return _print_plan(plan, json, details)
    if not plan.items:
        return _nothing_to_do(plan, json)
    backfill.store(db, plan)
    output.info(f"plan {plan.id}: {output.plural(len(plan.items), 'partition')} to run, {len(plan.skipped)} skipped "
                f"({plan.start} .. {plan.end}; {', '.join(plan.jobs)}; reprocess {plan.reprocess}; "
                f"{parallel} at a time)")
    return _execute(s, db, registry, plan, parallel, fail_fast, json)


def _nothing_to_do(plan, as_json):
    from ops.core import output
    from ops.pipelines import backfill

    if as_json:
        output.print_json({"plan": {**plan.summary(), "id": None}, "summary": backfill.summarize([], plan),
                           "outcomes": [], "stored": False})
    output.info(f"nothing to do: {output.plural(len(plan.skipped), 'partition')} skipped ({plan.start} .. {plan.end}; "
                f"reprocess {plan.reprocess}); no plan was stored")
    _say_stale(plan)


def _say_stale(plan):
    from ops.core import output

    if plan.stale:
        first = plan.stale[0]
        output.info(f"{output.plural(len(plan.stale), 'partition')} stale, e.g. {first.pipeline} {first.day}: {first.stale}; "
                    f"rebuild them: inv backfill --start {plan.start} --end {plan.end} --reprocess stale")


def _execute(s, db, registry, plan, parallel, fail_fast, as_json, resumed=False):
    from ops.core import output
    from ops.pipelines import alerts
    from ops.pipelines import backfill
    from ops.pipelines.scheduler import OutcomeStatus

    done = backfill.done_before(db, plan)
    if resumed:
        output.info(f"resuming plan {plan.id} ({plan.start} .. {plan.end}, {len(plan.items)} partitions, "
                    f"{len(done)} done already)")
    with output.Progress(len(plan.items), f"backfill {plan.id}", done=len(done)) as bar:
        def progress(o, n, total):
            detail = f"{o.rows:,} rows" if o.status == OutcomeStatus.SUCCEEDED else (o.error or "")
            bar.step(f"{o.pipeline} {o.day} {o.status} {detail} {o.seconds:.1f}s".rstrip())

        outcomes = backfill.execute(s, plan, registry, parallel=parallel, fail_fast=fail_fast, progress=progress,
                                    db=db, done=done)
    summary = backfill.summarize(outcomes, plan)
    if as_json:
        output.print_json({"plan": plan.summary(), "summary": summary,
                           "outcomes": [o.__dict__ for o in outcomes]})
    else:
        heads = ["done", "failed", "killed", "blocked", "not run", "skipped", "stale", "rows", "time"]
        output.print_table([(r["pipeline"], *[r[k] for k in backfill.SUMMARY], f"{r['rows']:,}",
                             f"{r['seconds']:.1f}s") for r in summary], ["pipeline", *heads],
                           title=f"backfill {plan.id}", right=heads)
    alerts.after_backfill(s, db, plan, outcomes)  # [alerts] on_failure hears of failed and killed partitions
    _finish(plan, outcomes)


def _finish(plan, outcomes):
    import signal

    from ops.core.errors import WorkFailed
    from ops.core.output import plural
    from ops.pipelines import backfill
    from ops.pipelines.interrupt import Stopped
    from ops.pipelines.scheduler import OutcomeStatus

    resume = f"inv backfill --resume {plan.id}"
    by = backfill.stopped_by(outcomes)
    if by:
        killed = sum(o.status == OutcomeStatus.KILLED for o in outcomes)
        left = sum(o.status == OutcomeStatus.NOT_STARTED for o in outcomes)
        raise Stopped(f"backfill {plan.id} stopped by {by}: {plural(killed, 'partition')} killed, {left} not started",
                      signal.Signals[by], hint=f"resume: {resume}")
    _say_stale(plan)
    failed = [o for o in outcomes if o.status in (OutcomeStatus.FAILED, OutcomeStatus.BLOCKED,
                                                  OutcomeStatus.NOT_STARTED)]
    if failed:
        first_error = next((o for o in failed if o.status == OutcomeStatus.FAILED), failed[0])
        raise WorkFailed(f"{plural(len(failed), 'partition')} did not succeed; first: {first_error.pipeline} "
                         f"{first_error.day}: {first_error.error}",
                         hint=f"fix it, then: {resume} (or --reprocess failed: the failed partitions and "
                              "everything downstream of them)")


def _print_plan(plan, as_json, details):
    from ops.core import output
    from ops.pipelines import backfill

    summary = backfill.plan_summary(plan)
    if as_json:
        return output.print_json({"plan": plan.summary(), "summary": summary,
                                  "partitions": backfill.plan_partitions(plan), "dry_run": True})
    heads = ["run", "rebuild", "skipped", "failed now", "stale left"]
    output.print_table([(r["pipeline"], *[r[k] for k in backfill.PLAN_SUMMARY]) for r in summary],
                       ["pipeline", *heads], right=heads,
                       title=f"plan (dry run, {plan.start} .. {plan.end}): {output.plural(len(plan.items), 'partition')} "
                             f"to run, {len(plan.skipped)} skipped (reprocess {plan.reprocess})")
    if details:
        output.print_table([(r["day"], r["pipeline"], r["action"], r["status"], f"{r['rows']:,}")
                            for r in backfill.plan_partitions(plan)],
                           ["day", "pipeline", "action", "status now", "rows now"], right=["rows now"],
                           title="partitions")
    output.info("dry run: nothing was stored or run" + ("" if details else "; --details lists every partition"))


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
    "select": _SELECT, "exclude": _EXCLUDE, "jobs": _JOBS,
    "json": "print as JSON",
})
def counts(c, days=None, start=None, end=None, jobs=None, json=False, select=None, exclude=None):
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
    names = _selection(registry, select, jobs, exclude)
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
    gaps = sum(1 for g in data["coverage"] for v in g["days"].values() if v not in (RunStatus.SUCCEEDED,
                                                                                     RunStatus.STALE))
    flagged = sum(1 for t in data["tables"] for d in t["days"] if d["flags"])
    output.info(f"{output.plural(gaps, 'partition')} not succeeded, {len(data['stale'])} stale, "
                f"{output.plural(flagged, 'day')} flagged")
    for st in data["stale"][:5]:
        output.info(f"stale: {st['pipeline']} {st['day']}: {st['why']}")
    if data["stale"]:
        output.info(f"rebuild the stale ones: inv backfill --start {first} --end {last} --reprocess stale")


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
    "select": _SELECT, "exclude": _EXCLUDE, "jobs": _JOBS,
    "details": "list every check of every day, the passing ones too (default: the failures and a summary)",
    "json": "print every result as JSON",
})
def verify(c, days=None, start=None, end=None, jobs=None, json=False, select=None, exclude=None, details=False):
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
    names = _selection(registry, select, jobs, exclude)
    results = backfill.verify(connect(s), registry, first, last, names)
    failed = [r for r in results if not r["passed"]]
    if json:
        output.print_json(results)
    elif details or failed:
        shown = results if details else failed
        output.print_table([(r["day"], r["pipeline"], r["check"], f"{r['rows']:,}",
                             "ok" if r["passed"] else f"FAILED: {r['says']}") for r in shown],
                           ["day", "pipeline", "check", "rows", "result"], right=["rows"])
    partitions = len({(r["pipeline"], r["day"]) for r in results})
    summary = (f"{output.plural(len(results), 'check')} on {output.plural(partitions, 'partition')} "
               f"({first} .. {last}): {len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        first_bad = failed[0]
        raise WorkFailed(f"{summary}; first: {first_bad['pipeline']} {first_bad['day']} {first_bad['check']}: "
                         f"{first_bad['says']}", hint="rebuild those days: inv backfill --start DAY --end DAY "
                                                      "--reprocess all --select PIPELINE")
    output.info(summary + ("" if details or json else "; --details lists each"))


ns = Collection("backfill")
ns.add_task(run, default=True)
for t in (list_, counts, plans, verify):
    ns.add_task(t)
