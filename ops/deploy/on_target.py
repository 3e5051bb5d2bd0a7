"""What a deploy runs on the target, inside a release, before the switch: ``inv deploy.smoke`` (:func:`smoke`) and
``inv deploy.drain`` (:func:`pause`). The deployer reads their ``--json`` answers (``ops.deploy.apply``)."""

from __future__ import annotations

import importlib
import os
import pkgutil
import time
from typing import Any, Callable

import ops
from ops.clickhouse.client import connect_existing
from ops.core.errors import ChopsError, WorkFailed
from ops.migrations.migrator import Migrations
from ops.pipelines import cron
from ops.pipelines.definition import load_pipelines
from ops.runtime import pidfiles

def smoke(settings) -> list[dict[str, Any]]:
    """The quick check of a new release before the switch: every ops module imports, the configuration loads,
    the database answers, every migration of this release is applied, every pipeline loads. One
    ``{"check", "ok", "detail"}`` per check; a check that needs the database is left out when it does not answer."""
    out: list[dict[str, Any]] = []

    def check(name: str, body: Callable[[], str]) -> None:
        try:
            out.append({"check": name, "ok": True, "detail": body()})
        except Exception as exc:  # noqa: BLE001 - each failure is reported by name
            detail = exc.line() if isinstance(exc, ChopsError) else f"{type(exc).__name__}: {exc}"
            out.append({"check": name, "ok": False, "detail": detail})

    check("imports", _imports)
    check("configuration", lambda: f"environment {settings.env}, {len(settings.values)} keys")
    db_holder: list = []

    def database() -> str:
        db = connect_existing(settings, wait=settings.get("proc.db_wait"))
        db_holder.append(db)
        return f"reachable: {db.scalar('SELECT version()')}"

    check("database", database)
    if db_holder:
        def migrations() -> str:
            rows = Migrations(settings, db_holder[0]).status()
            # ahead: applied by a newer release this one does not have the file of (a warning of health, not drift)
            off = [f"{r['id']} {r['state']}" for r in rows if r["state"] not in ("applied", "ahead")]
            if off:
                raise WorkFailed("not applied: " + ", ".join(off))
            ahead = [r["id"] for r in rows if r["state"] == "ahead"]
            return f"all {len(rows) - len(ahead)} applied" + (f"; ahead: {', '.join(ahead)}" if ahead else "")

        check("migrations", migrations)
        db_holder[0].close()

    def pipelines() -> str:
        registry = load_pipelines(settings)
        if registry.errors:
            raise WorkFailed("; ".join(sorted(registry.errors.values())))
        return f"{len(registry.pipelines)} pipelines load"

    check("pipelines", pipelines)
    return out


def _imports() -> str:
    names = [m.name for m in pkgutil.walk_packages(ops.__path__, "ops.")]
    for name in names:
        importlib.import_module(name)
    return f"{len(names)} modules"


def smoke_failures(results: list[dict[str, Any]]) -> list[str]:
    """``check: detail`` of each failed check of :func:`smoke`."""
    return [f"{r['check']}: {r['detail']}" for r in results if not r["ok"]]


def pause(settings, timeout: float, unschedule: bool, poll: float = 0.5, dry_run: bool = False) -> dict[str, Any]:
    """Remove this project's cron entries (``unschedule``), then wait up to ``timeout`` seconds for running chops
    processes to end. Returns how many entries were removed and which processes still run. ``dry_run``: how many
    entries would be removed and which processes run now; nothing is removed and nobody is waited for."""
    removed = 0
    if unschedule:
        if not dry_run:
            cron.mark_paused(settings, by="a deploy")  # before the entries go: a deploy killed now is still seen
        p = cron.unschedule(settings, {}, all=True)
        removed = len(p.of("remove"))
        if not dry_run:
            cron.apply(p)
    started = time.monotonic()
    while True:
        running = [x.as_dict() for x in pidfiles.processes(settings) if x.state == "running" and x.pid != os.getpid()]
        if dry_run or not running or time.monotonic() - started >= timeout:
            break
        time.sleep(poll)
    answer = {"unscheduled": removed, "running": running, "waited": round(time.monotonic() - started, 1)}
    return {**answer, "waited": 0.0, "dry_run": True} if dry_run else answer
