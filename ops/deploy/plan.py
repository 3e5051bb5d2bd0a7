"""Plan, then apply: what a deploy (or a rollback) to one target will do, as plain data, computed from the source and
the target's facts without changing anything. ``inv deploy.plan`` and ``--dry-run`` print it; ``ops.deploy.apply``
consumes the same object.

:func:`make_plan` and :func:`choose_rollback` are pure given the facts; :func:`plan_details` adds what only
``deploy.plan`` shows (file changes, pending migrations, the cron diff, what pruning would remove), reading the
target's database through ``inv db.status --json`` of its ``current``.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

from ops.core.errors import BadInput, ChopsError
from ops.core.settings import load_settings
from ops.deploy.actions import Action, LockState
from ops.deploy.facts import Facts, check_target, gather
from ops.deploy.helper import example_keys, prune_plan
from ops.deploy.lock import Alive, lock_state
from ops.deploy.source import Source, manifest, release_name, venv_key
from ops.deploy.targets import Target
from ops.deploy.transport import Remote, SshOptions, last_line
from ops.pipelines import cron
from ops.pipelines.definition import load_pipelines


@dataclass(frozen=True)
class Plan:
    """What a deploy (or a rollback) to one target will do: plain data, computed from the source and the target's
    facts. ``release`` is the release to make current (None when the same revision stays current)."""

    target: Target
    revision: str
    commit: str
    release: str | None
    current: str | None
    current_revision: str | None
    action: Action  # deploy | no-op | reverify | rollback
    venv: str
    venv_ready: bool
    current_venv: str | None
    env: dict[str, Any]
    lock: dict[str, Any]
    dirty: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)  # deploy.plan only: files, migrations, cron

    @property
    def dependencies_change(self) -> bool:
        return self.current_venv != self.venv

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["target"] = self.target.as_dict()
        d["dependencies_change"] = self.dependencies_change
        return d


def env_report(target_keys: Iterable[str] | None, example: Mapping[str, bool] | None,
               current_example: Mapping[str, bool] | None) -> dict[str, Any]:
    """Key names only: ``missing`` (required by .env.example, not set on the target), ``added`` (new in this
    release's .env.example and not set), ``extra`` (set on the target, not in .env.example)."""
    keys = set(target_keys or ())
    example = dict(example or {})
    before = set(current_example or ()) if current_example is not None else None
    return {"exists": target_keys is not None, "set": len(keys),
            "missing": sorted(k for k, required in example.items() if required and k not in keys),
            "added": sorted(k for k in example if before is not None and k not in before and k not in keys),
            "extra": sorted(k for k in keys if k not in example)}


def example_keys_local(root: Path) -> dict[str, bool]:
    return example_keys(str(root / "config" / ".env.example")) or {}


def make_plan(target: Target, source: Source, facts: Facts, stale_after: float, force: bool = False,
              now: datetime | None = None, here: str | None = None,
              alive: Alive | None = None) -> Plan:
    """The plan for one target. Pure given the facts: a no-op when the same revision is current and healthy, a
    re-verification (schedule, then verify) when it is current but not known healthy (a deploy died after its switch)
    or its cron entries are paused (a deploy died during the pause), else a new release."""
    key = venv_key(facts.python, source.requirements)
    current = facts.current
    cur = facts.release(current)
    state, reason = lock_state(facts.raw.get("lock"), stale_after, here, alive)
    if cur and cur["revision"] == source.revision and not force:
        # a deploy that died after pausing cron left the pause standing: the entries are installed again
        paused = facts.raw.get("cron_paused") and target.cron
        action = Action.NO_OP if cur.get("healthy") and state is not LockState.STALE and not paused \
            else Action.REVERIFY
        release = None
    else:
        action, release = Action.DEPLOY, release_name(source, [r["name"] for r in facts.releases], now)
    return Plan(target=target, revision=source.revision, commit=source.commit, release=release, current=current,
                current_revision=cur["revision"] if cur else None, action=action, venv=key,
                venv_ready=facts.venv_ready(key), current_venv=cur["venv"] if cur else None,
                env=env_report(facts.raw.get("env", {}).get("keys"), example_keys_local(source.root),
                               facts.raw.get("env_example_current") if current else None),
                lock={"state": state, "reason": reason, "holder": facts.raw.get("lock")}, dirty=source.dirty)


def file_changes(local: Mapping[str, str], remote: Mapping[str, str] | None) -> dict[str, list[str]]:
    """Which files a deploy would add, change and remove compared with the target's current release. Pure."""
    remote = dict(remote or {})
    return {"added": sorted(set(local) - set(remote)),
            "changed": sorted(p for p in local if p in remote and local[p] != remote[p]),
            "removed": sorted(set(remote) - set(local))}


def migration_ids(root: Path, settings) -> list[str]:
    directory = root / settings.get("migrations.dir")
    return sorted(p.stem for p in directory.glob("*.sql") if not p.stem.endswith(".rollback"))


def pending_migrations(local_ids: Iterable[str], status_rows: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The migrations this tree has that the target's database has not applied, and any dirty one. Pure."""
    rows = status_rows or []
    applied = {r["id"] for r in rows if r.get("state") in ("applied", "drifted")}
    return {"pending": [i for i in local_ids if i not in applied],
            "dirty": sorted(r["id"] for r in rows if r.get("state") == "dirty")}


def source_settings(root: Path, target: Target):
    """The settings of the tree at ``root`` in the target's environment, without this machine's .env."""
    return load_settings(root, environ={"CHOPS_ENV": target.environment,
                                        "CHOPS_ENV_FILE": str(root / ".no-such-env-file")})


def target_settings(local, target: Target):
    """``local`` (see :func:`source_settings`) as the target's ``current`` would see them (paths under it), for
    rendering its cron entries here. Values set only in the target's .env are not known here."""
    current = Path(target.path) / "current"
    return dataclasses.replace(local, root=current, env_file=current / ".env")


def cron_plan(root: Path, target: Target, crontab_text: str | None):
    """The crontab change the pipelines of the tree at ``root`` would make on the target (``ops.pipelines.cron.Plan``)."""
    from crontab import CronTab

    local = source_settings(root, target)
    there = target_settings(local, target)
    tab = CronTab(tab=crontab_text or "")
    if not target.cron:
        return cron.unschedule(there, {}, all=True, crontab=tab)
    return cron.plan(there, load_pipelines(local), all=True, crontab=tab,
                     bin_dir=Path(target.path) / "current" / ".venv" / "bin")


def plan_details(settings, remote: Remote, plan: Plan, source: Source, facts: Facts) -> dict[str, Any]:
    """The rest of ``deploy.plan``: file changes, dependencies, pending migrations and the cron diff."""
    details: dict[str, Any] = {"files": file_changes(manifest(source), facts.raw.get("manifest")),
                               "dependencies": {"venv": plan.venv, "current_venv": plan.current_venv,
                                                "change": plan.dependencies_change,
                                                "venv_on_target": plan.venv_ready}}
    local_ids = migration_ids(source.root, source_settings(source.root, plan.target))
    if plan.current:
        done, rows = remote.inv_json(f"{plan.target.path}/current", plan.target.environment, "db.status",
                                     extra_env={"CHOPS_CLICKHOUSE__LOCK_TIMEOUT": "10"}, timeout=120, check=False)
        if rows is None:
            details["migrations"] = {"pending": None, "dirty": [], "error": last_line(done.stderr) or "unknown"}
        else:
            details["migrations"] = pending_migrations(local_ids, rows)
    else:
        details["migrations"] = {"pending": local_ids, "dirty": [], "note": "no release on the target yet"}
    try:
        lines = (facts.raw.get("crontab") or {}).get("lines") or []
        cp = cron_plan(source.root, plan.target, "".join(line + "\n" for line in lines))
        details["cron"] = {"summary": cp.summary(), "diff": cp.diff(), "changed": cp.changed,
                           "runs_cron": plan.target.cron}
    except ChopsError as exc:
        details["cron"] = {"error": exc.line(), "runs_cron": plan.target.cron}
    found = list(facts.releases)
    if plan.release:
        found.append({"name": plan.release, "complete": True, "healthy": "yes", "bad": None, "venv": plan.venv,
                      "revision": plan.revision})
    details["prune"] = prune_plan(sorted(found, key=lambda r: r["name"]), plan.release or plan.current,
                                  settings.get("deploy.keep_releases"))
    return details


def plan(settings, target: Target, source: Source, options: SshOptions, force: bool = False) -> Plan:
    """Everything a deploy would do to ``target``, changing nothing."""
    remote = Remote(target, options)
    try:
        facts = gather(remote, manifest=True)
        check_target(facts, target, options)
        the_plan = make_plan(target, source, facts, settings.get("deploy.stale_lock_after"), force=force)
        return dataclasses.replace(the_plan, details=plan_details(settings, remote, the_plan, source, facts))
    finally:
        remote.close()  # the shared connection ends with the command


def choose_rollback(facts: Facts, to: str | None) -> dict[str, Any]:
    """The release to roll back to: ``to``, or the newest healthy release before ``current`` (else the newest
    complete one that is not BAD). Pure given the facts."""
    current = facts.current
    if to:
        found = facts.release(to)
        if found is None:
            names = [r["name"] for r in facts.releases]
            close = difflib.get_close_matches(to, names, n=3, cutoff=0.5)
            raise BadInput(f"no release {to!r} on the target",
                           hint=f"did you mean {', '.join(close)}?" if close else f"releases: {', '.join(names) or 'none'}")
        if not found["complete"]:
            raise BadInput(f"release {to} is incomplete (its sync never finished); it cannot be current")
        if to == current:
            raise BadInput(f"release {to} is already current")
        return found
    if current is None:
        raise BadInput("the target has no current release to roll back from")
    older = [r for r in facts.releases if r["name"] < current and r["complete"] and not r["bad"]]
    healthy = [r for r in older if r["healthy"]]
    if not older:
        raise BadInput(f"there is no earlier release to roll back to (current: {current})",
                       hint="inv deploy.status shows the releases")
    return (healthy or older)[-1]



def rollback_plan(target: Target, facts: Facts, chosen: Mapping[str, Any]) -> Plan:
    """The plan of a rollback to ``chosen`` (from :func:`choose_rollback`): its release made current again, its venv
    already there, nothing shipped. Pure."""
    return Plan(target=target, revision=chosen["revision"], commit=chosen["revision"], release=chosen["name"],
                current=facts.current, current_revision=facts.current_revision, action=Action.ROLLBACK,
                venv=chosen["venv"] or "", venv_ready=True, current_venv=None, env={}, lock={})
