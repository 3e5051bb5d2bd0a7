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
        output.info(f"{verb} {len(done)} item(s)" + ("; nothing was changed" if dry_run else ""))
    else:
        output.info("nothing to clean")
    for note in notes:
        output.info(f"note: {note}")


@task(help={
    "json": "print the checks as JSON",
    "junit": "also write the checks as JUnit XML to this file (one test case per check), for CI dashboards",
})
def check(c, json=False, junit=None):
    """The health verdict: database, migrations, pipelines, cron, freshness, failed runs, disk, locks, pid files."""
    from pathlib import Path

    from ops.runtime import health
    from ops.core import output
    from ops.core.errors import BadInput, WorkFailed

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
            raise BadInput(f"--junit {junit}: cannot write it: {exc.strerror}") from None
    if json:
        output.print_json({**verdict, "checks": results})
    else:
        mark = {"pass": "ok", "warn": "WARN", "fail": "FAIL"}
        output.print_table([(r["name"], mark[r["status"]], r["reason"]) for r in results], ["check", "status", "reason"])
        output.info(("healthy" if verdict["healthy"] else "unhealthy")
                    + f": {verdict['passed']} passed, {verdict['warnings']} warning(s), {verdict['failed']} failed"
                    + (f"; JUnit XML in {junit}" if junit else ""))
    if not verdict["healthy"]:
        failed = [r["name"] for r in results if r["status"] == "fail"]
        raise WorkFailed(f"unhealthy: {', '.join(failed)} failed", hint="the reasons are above")


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


ns = Collection("proc", list_, kill, clean, check, logs)
