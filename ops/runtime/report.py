"""The ops report (``inv report``): what a person looks at, gathered as plain data.

Every section comes from the function the matching ``--json`` output uses, never from a query of its own:

* health: :func:`ops.runtime.health.checks` and ``verdict`` (``inv proc.check --json``);
* the pipelines × days grid and the rows per day: :func:`ops.pipelines.backfill.counts` (``inv backfill.counts
  --json``: its coverage states, rows and ``backfill.change_threshold`` flags), with each cell's newest attempt from
  :func:`ops.pipelines.ledger.attempts` and its acknowledgement from :func:`ops.runtime.acks.attach`
  (``inv pipeline.history --json``);
* run durations: the same attempts;
* migrations: ``Migrations.status`` (``inv db.status --json``);
* backfill plans: :func:`ops.pipelines.backfill.recent_plans` (``inv backfill.plans --json``);
* deploys: the local index a deploy appends to, ``<paths.logs>/deploy/deploys.jsonl`` (one JSON object a line),
  read as a file: this layer does not import ``ops.deploy``. A missing file means no deploy; a line that is not a
  JSON object is counted and skipped.

:func:`gather` returns one dict; ``ops.runtime.report_html`` renders it, ``inv report --json`` prints it. A section
that cannot be gathered (no database, a table not migrated yet) says why in ``problems`` and the rest is still there.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable, Iterable

from ops.clickhouse.client import connect_existing
from ops.core.errors import ChopsError, WorkFailed
from ops.core.timefmt import utc_now
from ops.migrations.migrator import Migrations
from ops.pipelines import backfill, ledger
from ops.pipelines.definition import load_pipelines
from ops.pipelines.ledger import FAILURES, RunStatus
from ops.runtime import acks, health
from ops.runtime.config import setting

#: A grid cell's state, in the order the legend shows them.
SUCCEEDED, FAILED, ACKNOWLEDGED, STALE, RUNNING, MISSING, GONE = (
    "succeeded", "failed", "acknowledged", "stale", "running", "missing", "gone")
STATES = (SUCCEEDED, FAILED, ACKNOWLEDGED, STALE, RUNNING, MISSING, GONE)
MEANING = {
    SUCCEEDED: "the newest attempt succeeded",
    FAILED: "the newest attempt failed, was killed or died",
    ACKNOWLEDGED: "failed, and acknowledged with inv proc.ack",
    STALE: "built before its upstream day was rebuilt",
    RUNNING: "an attempt is running",
    MISSING: "never run",
    GONE: "succeeded, but its rows are no longer in the target",
}
DEPLOYS_SHOWN = 10
PLANS_SHOWN = 10
MAX_DAYS = 366  # a year of days is as wide as the grid gets


def default_output(settings) -> Path:
    """Where ``inv report`` writes the page: ``<paths.var>/reports/ops.html``."""
    return settings.path("paths.var") / "reports" / "ops.html"


def deploys_index(settings) -> Path:
    """The local index of deploys: one JSON object a line, appended by each deploy."""
    return settings.path("paths.logs") / "deploy" / "deploys.jsonl"


DEPLOY_FIELDS = ("at", "action", "target", "host", "release", "from_release", "outcome", "error", "log")


def read_deploys(path: Path, limit: int = DEPLOYS_SHOWN) -> dict[str, Any]:
    """The newest ``limit`` deploys of the index at ``path``, newest first: ``{path, deploys, bad_lines,
    unreadable}``. A missing file has no deploys; one that cannot be read says why in ``unreadable``; a line that is
    not a JSON object is counted in ``bad_lines`` and skipped."""
    found: list[dict[str, Any]] = []
    bad, unreadable = 0, ""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        text, unreadable = "", exc.strerror or str(exc)
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        if not isinstance(item, dict):
            bad += 1
            continue
        found.append({k: item.get(k) for k in DEPLOY_FIELDS})
    return {"path": str(path), "deploys": found[::-1][:limit], "bad_lines": bad, "unreadable": unreadable}


def cell_state(status: str | None, acknowledged: bool = False) -> str:
    """A grid cell's state from its coverage status (``backfill.counts``: the newest attempt, ``stale`` or ``gone``
    already decided there) and whether that newest attempt, when it failed, was acknowledged."""
    if status is None:
        return MISSING
    status = RunStatus(status)
    if status in FAILURES:
        return ACKNOWLEDGED if acknowledged else FAILED
    return {RunStatus.SUCCEEDED: SUCCEEDED, RunStatus.STALE: STALE, RunStatus.RUNNING: RUNNING,
            RunStatus.GONE: GONE}.get(status, FAILED)


def newest_by_partition(attempts: Iterable[dict[str, Any]]) -> dict[tuple[str, date], dict[str, Any]]:
    """The newest attempt of each (pipeline, day), from attempts listed newest first (``ledger.attempts``)."""
    out: dict[tuple[str, date], dict[str, Any]] = {}
    for a in attempts:
        out.setdefault((a["pipeline"], a["partition"]), a)
    return out


def _short_error(text: str | None) -> str:
    return " ".join(str(text or "").split())


def grid(counted: dict[str, Any], newest: dict[tuple[str, date], dict[str, Any]]) -> dict[str, Any]:
    """The pipelines × days grid: per pipeline, per day its state, rows (its target's, that day), status, and its
    newest attempt's run id, attempt, rows written, error, log path and acknowledgement. Pure: ``counted`` is what
    ``backfill.counts`` returned, ``newest`` what :func:`newest_by_partition` made of acknowledged attempts."""
    why_stale = {(s["pipeline"], s["day"]): s["why"] for s in counted["stale"]}
    days = [d["day"] for d in counted["tables"][0]["days"]] if counted["tables"] else []
    rows_of = {t["pipeline"]: {d["day"]: d["rows"] for d in t["days"]} for t in counted["tables"]}
    target_of = {t["pipeline"]: t["target"] for t in counted["tables"]}
    pipelines = []
    for g in counted["coverage"]:
        name, cells = g["pipeline"], []
        for day in days:
            status = g["days"][str(day)]
            last = newest.get((name, day))
            acked = (last or {}).get("acknowledged")
            cells.append({
                "day": day, "state": cell_state(status, bool(acked) and str(last["status"]) == str(status)),
                "status": str(status) if status is not None else None, "rows": rows_of[name].get(day, 0),
                "stale": why_stale.get((name, day), ""),
                "run_id": last["run_id"] if last else None, "attempt": last["attempt"] if last else None,
                "rows_written": last["rows_written"] if last else None,
                "started_at": last["started_at"] if last else None,
                "error": _short_error(last["error"]) if last else "", "log_path": last["log_path"] if last else "",
                "acknowledged": acked,
            })
        pipelines.append({"pipeline": name, "target": target_of[name], "cells": cells})
    totals = {s: sum(1 for p in pipelines for c in p["cells"] if c["state"] == s) for s in STATES}
    return {"days": days, "pipelines": pipelines, "totals": totals}


def row_series(counted: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows per day per target (one series per target, however many pipelines write it), with the flags
    ``backfill.counts`` set: a day without data, a change beyond ``backfill.change_threshold``."""
    by_target: dict[str, dict[str, Any]] = {}
    for t in counted["tables"]:
        entry = by_target.setdefault(t["target"], {"target": t["target"], "pipelines": [], "days": t["days"]})
        entry["pipelines"].append(t["pipeline"])
    return list(by_target.values())


def durations(attempts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per pipeline, its finished attempts oldest first: when each started, how long it took, how it ended."""
    by_pipeline: dict[str, list[dict[str, Any]]] = {}
    for a in sorted(attempts, key=lambda a: (a["started_at"], a["attempt"])):
        if a["duration_s"] is None or a["started_at"] is None:
            continue
        by_pipeline.setdefault(a["pipeline"], []).append({
            "started_at": a["started_at"], "seconds": float(a["duration_s"]), "status": str(a["status"]),
            "day": a["partition"], "rows": a["rows_written"], "run_id": a["run_id"]})
    return [{"pipeline": name, "runs": runs} for name, runs in sorted(by_pipeline.items())]


def _section(problems: dict[str, str], name: str, gather_it: Callable[[], Any], empty: Any) -> Any:
    """One section's data, or ``empty`` with the reason in ``problems`` when it cannot be had."""
    try:
        return gather_it()
    except ChopsError as exc:
        problems[name] = exc.line()
        return empty


def _ledger_sections(db, registry, first: date, last: date, threshold: float) -> dict[str, Any]:
    """The grid, the rows per day and the run durations: one ``backfill.counts`` and one ``ledger.attempts``."""
    ledger.require_table(db)
    names = [p.name for p in registry.ordered()]
    counted = backfill.counts(db, registry, first, last, names, threshold)
    attempts = acks.attach(db, ledger.attempts(db, since=first, until=last))
    known = set(names)
    attempts = [a for a in attempts if a["pipeline"] in known]
    return {"grid": grid(counted, newest_by_partition(attempts)), "rows": row_series(counted),
            "threshold": threshold, "durations": durations(attempts)}


def gather(settings, first: date, last: date, now: datetime | None = None) -> dict[str, Any]:
    """Everything the report shows for the days ``first`` .. ``last``, as plain data (see the module's doc)."""
    now = now or utc_now()
    checks = health.checks(settings, now=now)
    problems: dict[str, str] = {}
    data: dict[str, Any] = {
        "generated_at": now, "environment": settings.env, "start": first, "end": last,
        "health": {**health.verdict(checks), "checks": checks},
        "grid": {"days": [], "pipelines": [], "totals": {s: 0 for s in STATES}}, "rows": [], "threshold": None,
        "durations": [], "migrations": [], "plans": [],
        "deploys": read_deploys(deploys_index(settings)), "problems": problems,
    }
    registry = _section(problems, "pipelines", lambda: load_pipelines(settings), None)
    database = next(c for c in checks if c["name"] == "database")
    try:
        if database["status"] != health.PASS:  # unreachable, or busy for proc.db_wait already: not waited for again
            raise WorkFailed(database["reason"])
        db = connect_existing(settings, wait=setting(settings, "proc.db_wait"))
    except ChopsError as exc:
        for name in ("grid", "migrations", "plans"):
            problems[name] = f"no database: {exc.line()}"
        return data
    try:
        if registry is not None:
            threshold = float(settings.get("backfill.change_threshold"))
            data.update(_section(problems, "grid", lambda: _ledger_sections(db, registry, first, last, threshold),
                                 {}))
        data["migrations"] = _section(problems, "migrations", lambda: Migrations(settings, db).status(), [])
        data["plans"] = _section(problems, "plans", lambda: backfill.recent_plans(db, limit=PLANS_SHOWN), [])
    finally:
        db.close()
    return data
