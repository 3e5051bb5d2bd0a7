"""pipeline.schedule / unschedule / crontab / doctor: the pipelines' entries in this user's crontab; alert-test:
the alert a failed run (cron's above all) sends.

Registered into the ``pipeline`` collection by ``ops.cli.pipeline`` through ``TASKS``.
"""

from __future__ import annotations

from ops.cli.base import settings, task

_NAME_HELP = "a pipeline (repeat --name for several, or a,b)"


def _require_scope(names, everything):
    from ops.core.errors import BadInput

    if not names and not everything:
        raise BadInput("name pipelines or use --all", hint="e.g. --name events_ingest, or --all")


def _registry():
    from ops.pipelines.definition import load_pipelines

    return load_pipelines(settings())


def _rows(changes):
    return [(c.action, c.pipeline, c.schedule, c.command) for c in changes]


def _warn_daemon():
    from ops.pipelines import cron
    from ops.core import output

    if cron.daemon_pid() is None:
        output.info("warning: no cron daemon is running, so no entry will fire "
                    "(start it: service cron start, or /usr/sbin/cron)")


def _warn_shell_only():
    from ops.pipelines import cron
    from ops.core import output

    names = cron.shell_only_variables(settings())
    if names:
        output.info(f"warning: {', '.join(names)} set in this shell will not reach cron jobs "
                    f"(put them in config/{settings().env}.toml or .env)")


def _show(plan, dry_run, json, verb):
    from ops.core import output

    if json:
        return output.print_json({**plan.as_dict(), "dry_run": dry_run})
    if dry_run:
        diff = plan.diff()
        for line in diff:
            print(line)
        output.info(f"would {verb}: {plan.summary()}; nothing was changed" if diff
                    else f"nothing to {verb}: the crontab is already as planned ({plan.summary()})")
        return
    if plan.changes:
        output.print_table(_rows(plan.changes), ["action", "pipeline", "schedule", "command"])
    output.info(plan.summary() + ("" if plan.changed else "; the crontab was not changed"))


def _selected(registry, name, select, exclude, everything):
    """The pipelines ``--select``/``--name`` (and ``--exclude``) choose among the scheduled ones, as names; None
    with ``--all`` and nothing excluded (the whole crontab of this project is then in scope)."""
    from ops.core.errors import BadInput
    from ops.pipelines.selection import joined, select as choose

    chosen = joined(select, name)
    if chosen is not None and everything:
        raise BadInput("name pipelines (--select, --name) or use --all, not both")
    if chosen is None and (not everything or exclude is None):
        return None
    picked = choose(registry, chosen, exclude, why_not=lambda p: None if p.schedule else "has no schedule")
    return list(picked.names)


@task(iterable=["name"], help={
    "name": _NAME_HELP,
    "select": "pipelines, comma-separated; b+ adds what depends on b, +b what b depends on (those scheduled)",
    "exclude": "pipelines to leave out (the same syntax as --select)",
    "all": "every scheduled pipeline; also removes the entries of pipelines that are gone or unscheduled",
    "dry_run": "print the crontab diff (+/- lines) and change nothing",
    "json": "print the plan as JSON",
})
def schedule(c, name=None, all=False, dry_run=False, json=False, select=None, exclude=None):
    """Install one cron entry per scheduled pipeline in this user's crontab (idempotent; others' lines untouched)."""
    from ops.pipelines import cron

    registry = _registry()
    names = _selected(registry, name, select, exclude, all)
    everything = all and names is None
    _require_scope(names, everything)
    plan = cron.plan(settings(), registry, names=names, all=everything)
    if not dry_run:
        cron.apply(plan)
        if everything:
            cron.end_pause(settings())
    _show(plan, dry_run, json, "schedule")
    if not json:
        _warn_shell_only()
        _warn_daemon()


@task(iterable=["name"], help={
    "name": _NAME_HELP,
    "all": "every entry of this project (of this checkout), whether its pipeline exists or not",
    "dry_run": "print the crontab diff (+/- lines) and change nothing",
    "json": "print the plan as JSON",
})
def unschedule(c, name=None, all=False, dry_run=False, json=False):
    """Remove pipelines' cron entries from this user's crontab (other lines are kept byte for byte)."""
    from ops.pipelines import cron

    everything = all
    _require_scope(name, everything)
    plan = cron.unschedule(settings(), _registry(), names=name, all=everything)
    if not dry_run:
        cron.apply(plan)
        if everything:
            cron.end_pause(settings())
    _show(plan, dry_run, json, "unschedule")


@task(help={"json": "print as JSON"})
def crontab(c, json=False):
    """Show the installed cron entries of this project next to the expected ones (ok, missing, differs, stale)."""
    from ops.pipelines import cron
    from ops.core import output

    registry = _registry()
    rows = cron.installed_vs_expected(settings(), registry)
    if json:
        return output.print_json({"daemon_pid": cron.daemon_pid(), "entries": rows})
    output.print_table([(r["pipeline"], r["state"], r["expected"], r["installed"],
                         r["command"] or r["expected_command"]) for r in rows],
                       ["pipeline", "state", "expected", "installed", "command"])
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no pipelines"
    off = [r for r in rows if r["state"] in ("missing", "differs", "stale", "duplicate")]
    output.info(summary + ("; run: inv pipeline.schedule --all" if off else ""))
    for module, error in sorted((getattr(registry, "errors", None) or {}).items()):
        output.info(f"warning: {error} (its entry, if any, shows as stale)")
    _warn_shell_only()
    _warn_daemon()


@task(iterable=["name"], help={
    "name": _NAME_HELP + "; default: every scheduled pipeline",
    "json": "print the results as JSON",
})
def doctor(c, name=None, json=False):
    """Run each scheduled cron command with --dry-run in cron's bare environment (writes no data)."""
    from ops.core import output
    from ops.core.errors import WorkFailed
    from ops.pipelines import cron_doctor

    rows = cron_doctor.doctor(settings(), _registry(), names=name)
    if not json:
        _warn_shell_only()
    if json:
        output.print_json(rows)
    else:
        output.print_table([(r["pipeline"], r["status"], "" if r["exit_code"] is None else r["exit_code"],
                             f"{r['seconds']:.1f}", r["last_line"]) for r in rows],
                           ["pipeline", "status", "exit", "seconds", "last line of output"], right=["exit", "seconds"])
    failed = [r["pipeline"] for r in rows if r["status"] != "ok"]
    if failed:
        raise WorkFailed(f"{len(failed)} of {output.plural(len(rows), 'cron command')} "
                         f"{'fails' if len(failed) == 1 else 'fail'} in cron's environment: "
                         + ", ".join(failed), hint="see the last line of each; rerun with --json for the commands")
    if not json:
        output.info(f"{output.plural(len(rows), 'cron command')} {'works' if len(rows) == 1 else 'work'} in "
                    "cron's environment" if rows else "no scheduled pipelines")


@task(name="alert-test", help={
    "dry_run": "print the facts (JSON on stdin, CHOPS_ALERT_* variables) and the command; run nothing",
    "json": "print the command's exit status and output (and the facts) as JSON",
})
def alert_test(c, dry_run=False, json=False):
    """Fire a test alert: run [alerts] on_failure with realistic facts of a failed run, marked as a test."""
    from ops.core import output
    from ops.core.errors import WorkFailed
    from ops.pipelines import alerts

    s = settings()
    command = alerts.require_command(s)
    alerts.timeout_of(s)
    registry = _registry()
    named = sorted(registry.pipelines)
    data = alerts.sample_payload(s, next((n for n in named if registry.pipelines[n].schedule), named[0] if named
                                       else "example"))
    if dry_run:
        if json:
            return output.print_json({"command": command, "facts": data, "environment": alerts.environment(data),
                                      "dry_run": True})
        output.info(f"would run: {command}")
        for key, value in sorted(alerts.environment(data).items()):
            output.info(f"  {key}={value}")
        print(output.to_json(data))
        return output.info("dry run: the command was not run")
    sent = alerts.send(s, data, command)
    if json:
        output.print_json({**sent.as_dict(), "facts": data})
    else:
        for stream, text in (("stdout", sent.stdout), ("stderr", sent.stderr)):
            for line in text.rstrip().splitlines():
                output.info(f"  {stream}: {line}")
        if sent.ok:
            output.info(f"test alert sent: `{command}` exited 0 in {sent.seconds:.1f}s")
    if not sent.ok:
        raise WorkFailed(sent.line().replace("alert not sent", "test alert failed"),
                         hint="fix [alerts] on_failure; inv pipeline.alert-test --dry-run shows what it gets")


TASKS = (schedule, unschedule, crontab, doctor, alert_test)
