"""Acknowledged failures (``inv proc.ack``): a person's word that a failed run needs nothing more.

A run that failed (or was killed, or died) keeps ``inv proc.check`` failing until the same day succeeds. Some
failures never will be rerun: a pipeline since deleted, a day whose source is gone for good, a failure already
dealt with by hand. Acknowledging the attempt records who did it, when and why in ``run_acks`` (migration 0006),
beside the ledger rather than in it: the ledger's rows stay as the run wrote them (one writer), and an
acknowledgement names the one attempt it is about, so a later failure of the same day fails health again.

:func:`plan` says which attempts a request means, :func:`record` writes them; ``proc.check`` and
``pipeline.history`` read them with :func:`of_runs`.
"""

from __future__ import annotations

import re
import socket
from datetime import date
from typing import Any, Iterable

from ops.core.errors import BadInput, WorkFailed
from ops.core.process import user_name
from ops.core.timefmt import stamp_micro, utc_now
from ops.pipelines import ledger
from ops.pipelines.ledger import FAILURES

TABLE = "run_acks"
RUN_PREFIX = re.compile(r"^[0-9a-f]{8}[0-9a-f-]{0,28}$")


def who() -> str:
    """The acknowledging person: user@host."""
    return f"{user_name()}@{socket.gethostname()}"


def of_runs(db, run_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The acknowledgement of each of ``run_ids`` that has one: ``{run_id: {by, at, note}}``; empty when the table
    does not exist yet (its migration not applied: the migrations check says so)."""
    ids = sorted({str(r) for r in run_ids})
    if not ids or not db.has_table(TABLE):
        return {}
    params = {f"r{i}": run_id for i, run_id in enumerate(ids)}
    wanted = ", ".join(f"{{{p}:String}}" for p in params)
    # compared as text: `run_id IN (toUUID(...))` and `{r:UUID}` found nothing on chDB 4.4 (measured)
    rows = db.rows(f"SELECT toString(run_id) AS run_id, acked_by, acked_at, note FROM {TABLE} FINAL "
                   f"WHERE toString(run_id) IN ({wanted})", params)
    return {r["run_id"]: {"by": r["acked_by"], "at": r["acked_at"], "note": r["note"]} for r in rows}


def attach(db, attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``attempts`` (ledger rows) with ``acknowledged`` set on each: ``{by, at, note}``, or None."""
    found = of_runs(db, (a["run_id"] for a in attempts if a["status"] in FAILURES))
    for a in attempts:
        a["acknowledged"] = found.get(str(a["run_id"]))
    return attempts


def describe(ack: dict[str, Any] | None) -> str:
    """An acknowledgement as ``pipeline.history`` shows it: ``acked by ana@host 2026-11-27 10:02 UTC: why``."""
    if not ack:
        return ""
    return f"acked by {ack['by']} {ack['at']:%Y-%m-%d %H:%M} UTC" + (f": {ack['note']}" if ack["note"] else "")


def _latest_per_day(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest attempt of each (pipeline, day), from attempts listed newest first."""
    seen, out = set(), []
    for a in attempts:
        key = (a["pipeline"], a["partition"])
        if key not in seen:
            seen.add(key)
            out.append(a)
    return out


def plan(db, run_id: str | None = None, pipeline: str | None = None, day: date | None = None) -> dict[str, Any]:
    """What acknowledging means here, changing nothing: ``{to_ack, already}``, each a list of attempts. ``run_id``
    (whole, or its first 8 or more characters) names one failed attempt; ``pipeline`` (``day``) names the failures
    that are the newest attempt of their day, the ones ``proc.check`` counts. The pipeline need not exist any more:
    acknowledging the runs of a deleted pipeline is what this is for."""
    if bool(run_id) == bool(pipeline):
        raise BadInput("name a failed run (--run-id RUN_ID) or a pipeline (--pipeline NAME [--date D]), one of them",
                       hint="inv proc.check and inv pipeline.history --json show the failed runs")
    if day is not None and not pipeline:
        raise BadInput("--date goes with --pipeline")
    if run_id:
        chosen = _one_run(db, run_id.strip().lower())
    else:
        latest = _latest_per_day(ledger.attempts(db, pipeline, day))
        chosen = [a for a in latest if a["status"] in FAILURES]
        if not chosen:
            what = f"{pipeline} on {day}" if day else pipeline
            raise BadInput(f"no failure of {what} to acknowledge: no day of it has a failed newest attempt",
                           hint=f"inv pipeline.history --name {pipeline}" if latest else "check the name")
    acked = of_runs(db, (a["run_id"] for a in chosen))
    return {"to_ack": [_shown(a) for a in chosen if a["run_id"] not in acked],
            "already": [{**_shown(a), "acknowledged": acked[a["run_id"]]} for a in chosen if a["run_id"] in acked]}


def _one_run(db, prefix: str) -> list[dict[str, Any]]:
    if not RUN_PREFIX.match(prefix):
        raise BadInput(f"run id {prefix!r} is not a run id (its first 8 or more characters will do)",
                       hint="inv pipeline.history --json shows run ids")
    found = ledger.attempts_of_run(db, prefix)
    if not found:
        raise BadInput(f"no run {prefix} in the ledger", hint="inv pipeline.history --json shows run ids")
    if len(found) > 1:
        raise BadInput(f"run id {prefix} is the start of {len(found)} runs; give more of it",
                       hint=", ".join(a["run_id"] for a in found[:3]))
    [attempt] = found
    if attempt["status"] not in FAILURES:
        raise BadInput(f"run {attempt['run_id']} ({attempt['pipeline']} {attempt['partition']}) "
                       f"{attempt['status']}: only a failed, killed or died run is acknowledged")
    return found


def _shown(a: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": a["run_id"], "pipeline": a["pipeline"], "day": a["partition"], "status": str(a["status"]),
            "started_at": a["started_at"], "error": " ".join(str(a.get("error") or "").split())[:200]}


def record(db, attempts: list[dict[str, Any]], note: str = "") -> dict[str, Any]:
    """Acknowledge ``attempts`` (a :func:`plan`'s ``to_ack``) in one insert; returns who and when."""
    by, at = who(), stamp_micro(utc_now())
    if attempts:
        if not db.has_table(TABLE):
            raise WorkFailed(f"the {TABLE} table does not exist", hint="run: inv db.migrate")
        db.insert_rows(TABLE, [{"run_id": a["run_id"], "pipeline": a["pipeline"], "partition": str(a["day"]),
                                "status": a["status"], "acked_by": by, "acked_at": at, "note": note}
                               for a in attempts])
    return {"by": by, "at": at, "note": note}
