"""proc: chops' own processes (list, kill, clean), the health verdict (check) and the run logs (logs)."""

from __future__ import annotations

from invoke import Collection

from ops.cli.base import settings, task, whole_number


def _known_names():
    """Every pipeline name (for a clear 'unknown name'); a pipelines folder that does not load names none."""
    from ops.core.errors import ChopsError
    from ops.pipelines.definition import load_pipelines

    try:
        return load_pipelines(settings()).names()
    except ChopsError:
        return []


@task(name="list", help={"json": "print as JSON"})
def list_(c, json=False):
    """Running chops processes from their pid files: pid, what, since, progress; stale pid files are marked."""
    from ops.core import output
    from ops.core.timefmt import since
    from ops.runtime.pidfiles import processes

    rows = [{**p.as_dict(), "running_for": since(p.since)} for p in processes(settings())]
    if json:
        return output.print_json(rows)
    if not rows:
        return output.info("no chops process is running")
    output.print_table([(r["pid"], r["kind"], r["what"], r["since"], r["running_for"] or "-", r["progress"] or "-",
                         r["state"] if r["state"] == "running" else "STALE (inv proc.clean)", r["command"])
                        for r in rows],
                       ["pid", "kind", "what", "since", "for", "progress", "state", "command"], right=["pid"])


@task(help={
    "name": "a pipeline, a kind of work (pipeline.run, backfill, db.migrate, db.rollback, deploy), a backfill plan id, "
            "or a pid from inv proc.list",
    "all": "every running chops process",
    "grace": "seconds between SIGTERM and SIGKILL (default: proc.kill_grace)",
    "dry_run": "list what would be signalled; send nothing",
    "json": "print the outcome as JSON",
})
def kill(c, name=None, all=False, grace=None, dry_run=False, json=False):
    """Stop chops processes: SIGTERM, then SIGKILL after the grace period; only pids from chops' own pid files."""
    from ops.core import output
    from ops.core.errors import WorkFailed
    from ops.runtime import pidfiles

    s = settings()
    grace = whole_number(grace if grace is not None else s.get("proc.kill_grace"), "--grace", minimum=0)
    targets = pidfiles.select(s, name, all, known=_known_names() if name else ())
    if dry_run or not targets:
        rows = [p.as_dict() for p in targets]
        if json:
            return output.print_json({"dry_run": dry_run, "grace": grace, "would_signal": rows})
        if targets:
            output.print_table([(r["pid"], r["kind"], r["what"], r["since"], r["command"]) for r in rows],
                               ["pid", "kind", "what", "since", "command"], right=["pid"])
        output.info(f"dry run: would send SIGTERM to {len(rows)} process(es), SIGKILL after {grace}s; nothing was sent"
                    if targets else "no chops process is running; nothing to kill")
        return
    outcomes = pidfiles.kill(targets, grace, notify=None if json else output.info)
    if json:
        output.print_json({"dry_run": False, "grace": grace, "outcomes": outcomes})
    else:
        for o in outcomes:
            output.info(f"pid {o['pid']} ({o['kind']} {o['what']}): {o['note']}")
    running = [o for o in outcomes if not o["ended"]]
    if running:
        raise WorkFailed(f"{len(running)} process(es) still running; pid {running[0]['pid']}: {running[0]['note']}")


@task(help={"dry_run": "list what would be removed; remove nothing", "json": "print what was removed as JSON"})
def clean(c, dry_run=False, json=False):
    """Remove what dead processes left: stale pid files and locks, orphaned staging tables, old logs (proc.log_retention_days)."""
    from ops.clickhouse.client import connect_existing
    from ops.core import output
    from ops.core.errors import ChopsError, LockTimeout
    from ops.runtime import janitor
    from ops.runtime.config import setting

    s = settings()
    notes, db = [], None
    try:
        db = connect_existing(s, wait=setting(s, "proc.db_wait"))
    except LockTimeout as exc:
        notes.append(f"staging tables and the migration lock were not checked: {exc.message}; run again later")
    except ChopsError as exc:
        notes.append(f"staging tables and the migration lock were not checked: {exc.line()}")
    plan = janitor.clean_plan(s, db)
    done = plan if dry_run else janitor.clean(s, plan, db)
    verb = "would remove" if dry_run else "removed"
    if json:
        return output.print_json({"dry_run": dry_run, verb.replace(" ", "_"): done, "notes": notes})
    if done:
        output.print_table([(i["kind"], i["what"], i["reason"]) for i in done], [verb, "what", "why"])
        output.info(f"{verb} {output.plural(len(done), 'item')}" + ("; nothing was changed" if dry_run else ""))
    else:
        output.info("nothing to clean")
    for note in notes:
        output.info(f"note: {note}")


@task(help={
    "json": "print the checks as JSON",
    "junit": "also write the checks as JUnit XML to this file (one test case per check), for CI dashboards",
})
def check(c, json=False, junit=None):
    """The health verdict: database, migrations, pipelines, cron, freshness, failed runs, staging tables, disk, locks, pid files."""
    from pathlib import Path

    from ops.core import output
    from ops.core.errors import BadInput, WorkFailed
    from ops.core.locks import DISK_FULL, FREE_SPACE
    from ops.runtime import health

    path = None
    if junit:
        path = Path(junit)
        if path.is_dir():
            raise BadInput(f"--junit {junit} is a directory; give a file name")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInput(f"--junit {junit}: cannot create its directory: {exc.strerror}") from None
    results = health.checks(settings())
    verdict = health.verdict(results)
    if path is not None:
        try:
            path.write_text(health.junit_xml(results), encoding="utf-8")
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise WorkFailed(f"--junit {junit}: cannot write it: {exc.strerror}", hint=FREE_SPACE) from None
            raise BadInput(f"--junit {junit}: cannot write it: {exc.strerror}") from None
    if json:
        output.print_json({**verdict, "checks": results})
    else:
        mark = {"pass": "ok", "warn": "WARN", "fail": "FAIL"}
        output.print_table([(r["name"], mark[r["status"]], r["reason"]) for r in results], ["check", "status", "reason"])
        output.info(("healthy" if verdict["healthy"] else "unhealthy")
                    + f": {verdict['passed']} passed, {output.plural(verdict['warnings'], 'warning')}, "
                      f"{verdict['failed']} failed"
                    + (f"; JUnit XML in {junit}" if junit else ""))
    if not verdict["healthy"]:
        failed = [r["name"] for r in results if r["status"] == "fail"]
        raise WorkFailed(f"unhealthy: {output.plural(len(failed), 'check')} failed: {', '.join(failed)}",
                         hint="the reasons are above")


@task(help={
    "run_id": "the failed run to acknowledge: its run id, or its first 8 or more characters (inv proc.check names it; "
              "inv pipeline.history --json shows them all)",
    "pipeline": "instead of one run: every day of this pipeline whose newest attempt failed (it need not exist any "
                "more: acknowledging the runs of a deleted pipeline is what this is for)",
    "date": "with --pipeline: only this day (YYYY-MM-DD)",
    "note": "why it needs nothing more (shown with the run in inv pipeline.history)",
    "dry_run": "list what would be acknowledged; record nothing",
    "json": "print what was (or would be) acknowledged as JSON",
})
def ack(c, run_id=None, pipeline=None, date=None, note="", dry_run=False, json=False):
    """Acknowledge a failed run so proc.check no longer fails on it; recorded with who and when, shown in pipeline.history."""
    from datetime import date as Date

    from ops.clickhouse.client import connect
    from ops.core import output
    from ops.core.errors import BadInput
    from ops.pipelines import ledger
    from ops.runtime import acks

    day = None
    if date:
        try:
            day = Date.fromisoformat(date)
        except ValueError:
            raise BadInput(f"--date {date!r} must be YYYY-MM-DD") from None
    db = connect(settings())
    ledger.require_table(db)
    chosen = acks.plan(db, run_id, pipeline, day)
    done = chosen if dry_run else {**chosen, "acknowledged": acks.record(db, chosen["to_ack"], note)}
    if json:
        return output.print_json({"dry_run": dry_run, **done})
    rows = [(a["run_id"][:8], a["pipeline"], a["day"], a["status"], a["started_at"].strftime("%Y-%m-%d %H:%M"),
             a["error"][:80]) for a in chosen["to_ack"]]
    if rows:
        output.print_table(rows, ["run", "pipeline", "day", "status", "started (UTC)", "error"])
    for a in chosen["already"]:
        output.info(f"run {a['run_id'][:8]} ({a['pipeline']} {a['day']}) was acknowledged already by "
                    f"{a['acknowledged']['by']} at {a['acknowledged']['at']:%Y-%m-%d %H:%M} UTC")
    if dry_run:
        return output.info(f"dry run: would acknowledge {output.plural(len(rows), 'failed run')} as {acks.who()}; "
                           "nothing was recorded")
    if rows:
        output.info(f"acknowledged {output.plural(len(rows), 'failed run')} as {done['acknowledged']['by']}; "
                    "inv proc.check no longer fails on them")


@task(help={
    "name": "the pipeline (default: whichever wrote a run log last)",
    "date": "that day's newest attempt (YYYY-MM-DD, today or yesterday); default: the latest run",
    "follow": "keep printing what the run writes, like tail -f, until interrupted (Ctrl-C)",
})
def logs(c, name=None, date=None, follow=False):
    """Print the run log of a pipeline (its latest run by default), from wherever paths.logs keeps it."""
    import sys

    from ops.core import output
    from ops.pipelines.definition import parse_day, zone
    from ops.runtime import logs as run_logs

    s = settings()
    day = parse_day(date, zone("UTC")) if date else None
    path = run_logs.find_log(s, name, day, known=_known_names() if name else ())
    output.info(f"==> {path} <==")

    def write(chunk: bytes) -> None:
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()

    if not follow:
        return write(path.read_bytes())
    try:
        run_logs.follow(path, write)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how following ends


ns = Collection("proc", list_, kill, clean, check, ack, logs)
