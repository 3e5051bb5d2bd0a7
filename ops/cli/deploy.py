"""deploy: releases on a target over ssh and rsync (plan, apply, verify, roll back), its status and its lock."""

from __future__ import annotations

from invoke import Collection

from ops.cli.base import settings, task, whole_number

_WHERE = {
    "host": "a host (repeat --host, or a,b); several roll out like a target of config/deploy.toml",
    "target": "a target of config/deploy.toml (repeat, or a,b)",
    "user": "ssh user on the target (default: the target's, else ~/.ssh/config's, else [defaults] of "
            "config/deploy.toml)",
    "port": "ssh port (default: the target's, else ~/.ssh/config's, else [defaults] of config/deploy.toml, else 22)",
    "path": "absolute deploy path on the target (default: the target's)",
    "environment": "config overlay the target runs with (default: the target's, else prod)",
    "accept_new_host_key": "accept and record the host key of a target never seen before (deploy.accept_new_host_key)",
}
_SOURCE = "the git checkout to ship (default: this project's own)"
_LIMIT = "only these hosts (or roles) of the chosen targets (repeat, or a,b)"
_WAIT = "seconds to wait for a deploy lock another deploy holds (default 0: refuse at once)"
_PARALLEL = "hosts deployed at once after the canary (default: the target's parallel, else 1)"


def _source(source, allow_dirty):
    from pathlib import Path

    from ops.core.errors import BadInput
    from ops.deploy.source import read_source

    root = Path(source).resolve() if source else settings().root
    if not root.is_dir():
        raise BadInput(f"--source {source}: no such directory")
    return read_source(root, allow_dirty=allow_dirty)


def _targets(host, target, user, port, path, environment):
    return _fleet(host, target, user, port, path, environment, None).targets


def _fleet(host, target, user, port, path, environment, limit):
    """The hosts, validated, with the user and port ssh will use; root refused here, before anything else is read."""
    from ops.deploy.targets import refuse_root, resolve_fleet
    from ops.deploy.transport import ssh_config_file

    s = settings()
    fleet = resolve_fleet(host, target, user=user, port=port, path=path, environment=environment, limit=limit,
                          root=s.root, ssh_config=ssh_config_file(s) or None)
    refuse_root(fleet.targets, s.get("deploy.allow_root"))
    return fleet


def _number(value, flag, minimum=1):
    return None if value is None else whole_number(value, flag, minimum=minimum)


def _show_plans(fleet, plans, order, json, rollback_on_failure=None):
    """One plan in full; several as a table, one row per host, after the rollout order."""
    from ops.core import output
    from ops.deploy.fleet import describe_rollout

    batch = {t: b for b in order for t in b.targets}
    if json:
        return output.print_json([{**p.as_dict(), "batch": batch[p.target].number,
                                   "canary": batch[p.target].canary} for p in plans])
    if len(plans) == 1:
        return _show_plan(plans[0], False)
    for line in describe_rollout(fleet, order, rollback_on_failure):
        print(line)
    rows = []
    for p in plans:
        files = p.details.get("files", {})
        m = p.details.get("migrations", {})
        pending = "?" if m.get("pending") is None else str(len(m["pending"])) + (" DIRTY" if m.get("dirty") else "")
        b = batch[p.target]
        rows.append((p.target.host, f"{b.number}{' canary' if b.canary else ''}", p.current_revision or "-",
                     str(p.action), p.release or p.current or "-",
                     "/".join(str(len(files.get(k, []))) for k in ("added", "changed", "removed")),
                     ("build" if not p.venv_ready else "ready") if p.dependencies_change else "reused", pending,
                     p.lock["state"] if p.lock["state"] == "free" else f"{p.lock['state']}: {p.lock['reason']}"))
    output.print_table(rows, ["host", "batch", "current", "action", "release", "files +/~/-", "venv",
                              "migrations", "lock"])
    output.info("nothing was changed")


def _options(accept_new_host_key):
    from ops.deploy.transport import SshOptions

    return SshOptions.from_settings(settings(), accept_new_host_key)


def _show_plan(p, json):
    from ops.core import output

    if json:
        return output.print_json(p.as_dict())
    t, d = p.target, p.details
    pairs = [("target", f"{t.label()} (environment {t.environment}, cron {'on' if t.cron else 'off'})")]
    if p.action == "deploy":
        pairs.append(("action", f"new release {p.release} of {p.revision}; current: "
                                f"{p.current or 'none'} ({p.current_revision or '-'})"))
    else:
        pairs.append(("action", f"{p.action}: {p.revision} is already current ({p.current}); only health is checked"))
    if p.dirty:
        pairs.append(("work tree", f"DIRTY ({len(p.dirty)} changed files): a deploy needs --allow-dirty"))
    files = d.get("files", {})
    pairs.append(("files", ", ".join(f"{len(files.get(k, []))} {k}" for k in ("added", "changed", "removed"))))
    for kind in ("added", "changed", "removed"):
        names = files.get(kind, [])
        if names:
            pairs.append((f"  {kind}", ", ".join(names[:15]) + (f" … (+{len(names) - 15})" if len(names) > 15 else "")))
    deps = d.get("dependencies", {})
    pairs.append(("dependencies", f"change: venv {p.venv} ({'already on the target' if p.venv_ready else 'to build'})"
                  if deps.get("change") else f"unchanged: venv {p.venv} reused"))
    m = d.get("migrations", {})
    if m.get("pending") is None:
        pairs.append(("migrations", f"unknown: {m.get('error')}"))
    else:
        text = f"{len(m['pending'])} pending" + (f": {', '.join(m['pending'])}" if m["pending"] else "")
        if m.get("dirty"):
            text += (f"; DIRTY: {', '.join(m['dirty'])} (a deploy refuses before shipping anything; see it with "
                     "inv deploy.exec … -- db.status)")
        pairs.append(("migrations", text + (f" ({m['note']})" if m.get("note") else "")))
    cron = d.get("cron", {})
    pairs.append(("cron", cron.get("error") or cron.get("summary", "")))
    env = p.env
    bits = [f"{output.plural(env['set'], 'key')} set" if env["exists"] else "none yet (created empty, mode 0600)"]
    bits += [f"{label}: {', '.join(env[k])}" for k, label in (("missing", "MISSING required"),
                                                             ("added", "new in .env.example"),
                                                             ("extra", "not in .env.example")) if env[k]]
    pairs.append(("shared/.env", "; ".join(bits)))
    lock = p.lock
    pairs.append(("lock", {"free": "free", "held": f"HELD by {lock['reason']}",
                           "stale": f"stale ({lock['reason']}): a deploy takes it over"}[lock["state"]]))
    if d.get("prune"):
        pairs.append(("then removes", ", ".join(d["prune"])))
    output.print_pairs(pairs)
    for line in cron.get("diff", []):
        print(line)
    output.info("nothing was changed")


@task(name="run", default=True, iterable=["host", "target", "limit"], help={
    **_WHERE,
    "source": _SOURCE,
    "allow_dirty": "ship the work tree with its uncommitted changes (the release is named <sha>-dirty)",
    "force": "make a new release even when this commit is already current",
    "limit": _LIMIT,
    "parallel": _PARALLEL,
    "canary": "hosts deployed first, as a batch of their own (default: the target's canary, else 1; 0: none)",
    "wait": _WAIT,
    "no_rollback": "when a host fails, leave the hosts already switched on the new release (default: the target's "
                   "rollback_on_failure, else roll them back)",
    "dry_run": "print the rollout order and the plan of each host (like deploy.plan) and change nothing",
    "json": "print the outcome of each host as JSON",
})
def run(c, host=None, target=None, user=None, port=None, path=None, environment=None, source=None,
        allow_dirty=False, accept_new_host_key=False, force=False, limit=None, parallel=None, canary=None, wait=None,
        no_rollback=False, dry_run=False, json=False):
    """Deploy this commit as a new release: sync, provision, migrate, test, switch, verify; roll back if unhealthy."""
    from ops.core import output
    from ops.deploy import fleet as rollout
    from ops.deploy import plan as deploy_plan

    s = settings()
    fleet = _fleet(host, target, user, port, path, environment, limit)
    at_once, first = _number(parallel, "--parallel"), _number(canary, "--canary", minimum=0)
    seconds = _number(wait, "--wait", minimum=0) or 0
    source = _source(source, allow_dirty or dry_run)
    options = _options(accept_new_host_key)
    back = False if no_rollback else None  # None: each target's rollback_on_failure
    if dry_run:
        order = rollout.rollout_order(fleet, at_once, first)
        plans = [deploy_plan.plan(s, t, source, options, force=force) for t in fleet.targets]
        return _show_plans(fleet, plans, order, json, back)
    outcomes = rollout.deploy(s, fleet, source, options, notify=output.info, force=force, wait=seconds,
                              parallel=at_once, canary=first, rollback_on_failure=back)
    if json:
        return output.print_json([o.as_dict() for o in outcomes])
    for o in outcomes:
        verdict = (o.health or {}).get("summary", "")
        if o.result == "no-op":
            output.info(f"{o.target.host}: nothing to deploy, {source.revision} is already current ({o.release}); "
                        f"health re-verified: {verdict} ({o.seconds:.1f}s)")
        else:
            output.info(f"{o.target.host}: {o.release} is current ({o.result}); {verdict} ({o.seconds:.1f}s)")


@task(iterable=["host", "target", "limit"], help={**_WHERE, "source": _SOURCE,
                                         "force": "plan a new release even when this commit is current",
                                         "limit": _LIMIT, "parallel": _PARALLEL,
                                         "canary": "hosts deployed first, as a batch of their own "
                                                   "(default: the target's, else 1)",
                                         "json": "print the plan of each host as JSON"})
def plan(c, host=None, target=None, user=None, port=None, path=None, environment=None, source=None,
         accept_new_host_key=False, force=False, limit=None, parallel=None, canary=None, json=False):
    """What a deploy would do, changing nothing: files, dependencies, migrations, cron diff, .env keys, the lock;
    over several hosts, the rollout order and a table, one row per host."""
    from ops.deploy import fleet as rollout
    from ops.deploy import plan as deploy_plan

    s = settings()
    fleet = _fleet(host, target, user, port, path, environment, limit)
    order = rollout.rollout_order(fleet, _number(parallel, "--parallel"), _number(canary, "--canary", minimum=0))
    source = _source(source, True)
    options = _options(accept_new_host_key)
    plans = [deploy_plan.plan(s, t, source, options, force=force) for t in fleet.targets]
    _show_plans(fleet, plans, order, json)


@task(iterable=["host", "target", "limit"], help={
    **_WHERE, "to": "the release to make current (default: the newest healthy release before current)",
    "limit": _LIMIT, "parallel": "hosts rolled back at once (default: the target's parallel)", "wait": _WAIT,
    "with_migrations": "first undo the migrations the release rolled back to lacks (db.rollback in the current "
                       "release); without it they stay applied (a warning: the database is ahead)",
    "json": "print the outcome as JSON"})
def rollback(c, host=None, target=None, user=None, port=None, path=None, environment=None, accept_new_host_key=False,
             to=None, limit=None, parallel=None, wait=None, with_migrations=False, json=False):
    """Make an earlier release current again (cron entries follow), then verify its health; unhealthy: switch back."""
    from ops.core import output
    from ops.core.errors import BadInput
    from ops.deploy import fleet as rollout

    fleet = _fleet(host, target, user, port, path, environment, limit)
    if to and len(fleet.targets) > 1:
        raise BadInput("--to names one release of one host; give one host (--limit HOST)")
    outcomes = rollout.rollback(settings(), fleet, _options(accept_new_host_key), output.info, to=to,
                                wait=_number(wait, "--wait", minimum=0) or 0, parallel=_number(parallel, "--parallel"),
                                with_migrations=with_migrations)
    if json:
        return output.print_json([o.as_dict() for o in outcomes])
    for o in outcomes:
        output.info(f"{o.target.host}: rolled back from {o.previous} to {o.release}; "
                    f"{(o.health or {}).get('summary', '')} ({o.seconds:.1f}s)")


@task(iterable=["host", "target", "limit"], help={**_WHERE, "audit": "how many audit lines to show (default 10)",
                                         "limit": _LIMIT, "json": "print as JSON (a list: one object per host)"})
def status(c, host=None, target=None, user=None, port=None, path=None, environment=None, accept_new_host_key=False,
           audit="10", limit=None, json=False):
    """Releases on the target (current, healthy, BAD), the lock, the last deploys from its audit log, its health;
    over several hosts, a table, one row per host."""
    from ops.core import output
    from ops.core.errors import WorkFailed
    from ops.deploy import status as deploy_status
    from ops.deploy.fleet import each_host

    lines = whole_number(audit, "--audit", minimum=0)
    fleet = _fleet(host, target, user, port, path, environment, limit)
    options = _options(accept_new_host_key)
    read = each_host(fleet, lambda t: deploy_status.status(settings(), t, options, audit=lines), output.info)
    if len(read) == 1 and not isinstance(read[0][1], dict):
        raise read[0][1]
    results = [r if isinstance(r, dict) else {"target": t.as_dict(), "error": r.line()} for t, r in read]
    failed = [r for r in results if "error" in r]
    if json:
        output.print_json(results)
    elif len(results) > 1:
        _status_table(results)
    if failed:
        raise WorkFailed(f"{len(failed)} of {len(results)} hosts could not be read: " +
                         "; ".join(f"{r['target']['host']}: {r['error']}" for r in failed))
    if json or len(results) > 1:
        return
    for r in results:
        t = r["target"]
        output.print_pairs([
            ("target", f"{t['user']}@{t['host']}:{t['port']}{t['path']} (environment {t['environment']})"),
            ("current", f"{r['current'] or 'none'} ({r['current_revision'] or '-'})"),
            ("lock", {"free": "free", "held": f"held by {r['lock']['reason']}",
                      "stale": f"STALE: {r['lock']['reason']} (the next deploy takes it over; or inv deploy.unlock)"}
             [r["lock"]["state"]]),
            ("cron entries", r["cron_entries"]),
            ("health", (r["health"] or {}).get("summary", "no current release")),
        ])
        for failed in (r["health"] or {}).get("failed", []):
            output.info(f"  FAIL {failed}")
        for warning in (r["health"] or {}).get("warnings", []):
            output.info(f"  warning: {warning}")
        if r["releases"]:
            output.print_table([(x["name"], x["revision"] or "-",
                                 "current" if x["name"] == r["current"] else
                                 ("BAD" if x["bad"] else "healthy" if x["healthy"] else
                                  "incomplete" if not x["complete"] else ""),
                                 x["venv"] or "-", x["bad"] or "") for x in reversed(r["releases"])],
                               ["release", "revision", "state", "venv", "why bad"])
        if r["audit"]:
            output.print_table([(a.get("at"), a.get("who"), a.get("action"), a.get("from") or "-", a.get("to") or "-",
                                 a.get("result"), "" if a.get("seconds") is None else f"{a['seconds']:.1f}",
                                 a.get("error") or a.get("note") or "") for a in reversed(r["audit"])],
                               ["at", "who", "action", "from", "to", "result", "seconds", "note"], title="last deploys",
                               right=["seconds"])


def _status_table(results):
    """One row per host: its current release, health, lock, cron entries, releases and last deploy."""
    from ops.core import output

    rows = []
    for r in results:
        t = r["target"]
        if "error" in r:
            rows.append((t["host"], "-", "-", f"UNREADABLE: {r['error']}", "-", "-", "-", "-"))
            continue
        bad = sum(1 for x in r["releases"] if x["bad"])
        last = r["audit"][-1] if r["audit"] else {}
        rows.append((t["host"], r["current"] or "none", r["current_revision"] or "-",
                     (r["health"] or {}).get("summary", "no current release"),
                     r["lock"]["state"], r["cron_entries"], f"{len(r['releases'])}" + (f" ({bad} BAD)" if bad else ""),
                     f"{last.get('action')} {last.get('result')} at {last.get('at')}" if last else "-"))
    output.print_table(rows, ["host", "current", "revision", "health", "lock", "cron", "releases", "last deploy"],
                       right=["cron"])


@task(iterable=["host", "target"], help={**_WHERE, "force": "remove the lock even if its holder is running here"})
def unlock(c, host=None, target=None, user=None, port=None, path=None, environment=None, accept_new_host_key=False,
           force=False):
    """Remove the deploy lock of a deploy that is gone (a live one on this machine needs --force)."""
    from ops.core import output
    from ops.deploy import status as deploy_status
    from ops.deploy.lock import describe_holder

    for t in _targets(host, target, user, port, path, environment):
        r = deploy_status.unlock(settings(), t, _options(accept_new_host_key), force=force)
        if not r["released"]:
            output.info(f"{t.host}: the deploy lock is free; nothing to remove")
        else:
            output.info(f"{t.host}: removed the deploy lock of {describe_holder(r['holder'])} "
                        f"({r['state']}: {r['reason']})")


# --- run on the target, inside a release, by a deploy (ops.deploy.on_target) -------------------------------------------

@task(help={"json": "print the checks as JSON (what a deploy reads)"})
def smoke(c, json=False):
    """The checks a deploy runs on a new release before switching to it: imports, configuration, database, migrations,
    pipelines."""
    from ops.core import output
    from ops.core.errors import WorkFailed
    from ops.deploy import on_target

    results = on_target.smoke(settings())
    if json:
        output.print_json(results)
    else:
        output.print_table([(r["check"], "ok" if r["ok"] else "FAIL", r["detail"]) for r in results],
                           ["check", "status", "detail"])
    failed = on_target.smoke_failures(results)
    if failed:
        raise WorkFailed("smoke check failed: " + "; ".join(failed))


@task(help={
    "timeout": "seconds to wait for running chops processes to end (default: deploy.drain_timeout)",
    "keep_cron": "leave this project's cron entries in place (a target without the crontab command)",
    "dry_run": "say how many cron entries would be removed and which processes run; change nothing, wait for nothing",
    "json": "print the result as JSON (what a deploy reads)",
})
def drain(c, timeout=None, keep_cron=False, dry_run=False, json=False):
    """Pause this project's cron entries and wait for running chops processes: what a deploy runs on the target before
    switching."""
    from ops.core import output
    from ops.deploy import on_target

    s = settings()
    seconds = whole_number(timeout if timeout is not None else s.get("deploy.drain_timeout"), "--timeout", minimum=0)
    answer = on_target.pause(s, seconds, unschedule=not keep_cron, dry_run=dry_run)
    if json:
        return output.print_json(answer)
    running, n = answer["running"], answer["unscheduled"]
    if dry_run:
        cron = "would leave the cron entries in place" if keep_cron else f"would remove {n} cron entries"
        output.info(f"dry run: {cron}, then wait up to {seconds}s for {len(running)} running chops process(es); "
                    "nothing was changed")
    else:
        cron = "cron entries left in place" if keep_cron else \
            f"removed {n} cron entries (paused until inv pipeline.schedule --all)"
        output.info(f"{cron}; waited {answer['waited']:g}s; {len(running)} chops process(es) still running")
    for r in running:
        output.info(f"  pid {r['pid']} ({r['kind']} {r['what']}) since {r['since']}")


@task(name="exec", iterable=["host", "target"], help={
    **_WHERE, "dry_run": "say where and what would run; run nothing",
    "json": "print each host's exit code and output as JSON"})
def exec_(c, host=None, target=None, user=None, port=None, path=None, environment=None, accept_new_host_key=False,
          dry_run=False, json=False):
    """Run an inv task in the current release on each host: inv deploy.exec --host H -- db.migrate --resume."""
    import shlex
    import sys

    from ops.core import output
    from ops.core.errors import WorkFailed
    from ops.deploy import status as deploy_status

    argv = shlex.split(c.remainder or "")
    targets = _targets(host, target, user, port, path, environment)
    options = _options(accept_new_host_key)
    results = []
    for t in targets:
        r = deploy_status.exec_in_current(settings(), t, options, argv, dry_run=dry_run)
        results.append(r)
        if json:
            continue
        if dry_run:
            output.info(f"{t.host}: would run {shlex.join(r['argv'])} in {r['directory']} ({r['release']})")
            continue
        sys.stdout.write(r["stdout"])
        sys.stderr.write(r["stderr"])
        output.info(f"{t.host}: {shlex.join(r['argv'])} in {r['release']}: exit {r['exit']}")
    if json:
        output.print_json(results)
    failed = [r for r in results if r.get("exit")]
    if failed:
        raise WorkFailed(f"{shlex.join(failed[0]['argv'])} failed on " + ", ".join(
            f"{r['host']} (exit {r['exit']})" for r in failed))


ns = Collection("deploy")
ns.add_task(run, default=True)
for t in (plan, rollback, status, unlock, exec_, smoke, drain):
    ns.add_task(t)
