"""The ledger's reads that ``pipeline.list`` makes (``newest_by_pipeline``, ``partition_states``) give the answer a
plain ``FINAL`` read gives, on the real engine: an attempt's states in separate unmerged parts (the later ``updated_at``
wins, whichever part holds it), retries, a backfill of an older day started last, attempts that tie on their start,
a 'running' attempt whose process is gone ('died'), and a state still in this process's write-ahead batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from datetime import date, datetime, timedelta

import pytest

from ops.migrations.sqlsplit import split_statements
from ops.pipelines import ledger
from ops.pipelines.ledger import PartitionState, RunStatus, Trigger
from ops.core.timefmt import stamp_micro, utc_now
from tests.conftest import ROOT

HOST = socket.gethostname()
T0 = datetime(2024, 3, 1, 2, 0, 0)
DAY = date(2024, 2, 28)


@pytest.fixture
def ledger_db(db):
    """``db`` with the run ledger (migrations 0001 and 0007) and merges stopped: every INSERT stays its own part."""
    for name in ("0001_run_ledger.sql", "0007_run_ledger_upstream.sql"):
        text = (ROOT / "migrations" / name).read_text().replace(" ON CLUSTER {cluster}", "")
        for statement in split_statements(text):
            db.command(statement.text)
    db.command(f"SYSTEM STOP MERGES {ledger.TABLE}")
    return db


def dead_pid() -> int:
    """The pid of a process of this host that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    assert process.wait() == 0
    return process.pid


def put(db, run_id: str, pipeline: str, day: date, attempt: int, status: str, started: datetime,
        updated: datetime, pid: int = 1, host: str = "elsewhere", upstream: dict | None = None) -> None:
    """One state of an attempt, in an INSERT (a part) of its own."""
    db.insert_rows(ledger.TABLE, [{
        "run_id": run_id, "pipeline": pipeline, "partition": str(day), "attempt": attempt, "status": status,
        "trigger": "backfill", "plan_id": "", "rows_written": 0, "started_at": stamp_micro(started),
        "finished_at": None, "duration_s": None, "error": "", "host": host, "pid": pid, "code_version": "test",
        "log_path": "", "upstream": upstream or {}, "updated_at": stamp_micro(updated)}])


def final_rows(db) -> list[dict]:
    """Every attempt in its latest state, as ``FINAL`` reads it."""
    return db.rows(f"SELECT toString(run_id) AS run_id, pipeline, partition, attempt, toString(status) AS status, "
                   f"started_at, host, pid, upstream FROM {ledger.TABLE} FINAL")


def newest(rows: list[dict]) -> dict:
    return max(rows, key=lambda r: (r["started_at"], r["attempt"]))


def expected_latest(db) -> dict[str, tuple[str, date, int, RunStatus]]:
    by_pipeline: dict[str, list[dict]] = {}
    for r in final_rows(db):
        by_pipeline.setdefault(r["pipeline"], []).append(r)
    return {name: (n["run_id"], n["partition"], n["attempt"], ledger._status(n["status"], n["host"], n["pid"],
                                                                                n["started_at"]))
            for name, rows in by_pipeline.items() for n in [newest(rows)]}


def expected_states(db) -> dict[tuple[str, date], PartitionState]:
    by_day: dict[tuple[str, date], list[dict]] = {}
    for r in final_rows(db):
        by_day.setdefault((r["pipeline"], r["partition"]), []).append(r)
    out = {}
    for (name, day), rows in by_day.items():
        n, good = newest(rows), [r for r in rows if r["status"] == "succeeded"]
        g = newest(good) if good else None
        out[(name, day)] = PartitionState(
            name, day, ledger._status(n["status"], n["host"], n["pid"], n["started_at"]), g["run_id"] if g else "",
            g["started_at"] if g else None, {k: str(v) for k, v in g["upstream"].items()} if g else {})
    return out


def latest(db) -> dict[str, tuple[str, date, int, RunStatus]]:
    return {name: (r["run_id"], r["partition"], r["attempt"], r["status"])
            for name, r in ledger.newest_by_pipeline(db)[0].items()}


def test_the_newest_attempts_and_partition_states_are_what_final_reads(ledger_db):
    db, gone = ledger_db, dead_pid()
    ids = {k: str(uuid.uuid4()) for k in ("a1", "a2", "a3", "a4", "b1", "b2", "c1", "c2", "c3", "d1", "e1", "e2")}
    up = str(uuid.uuid4())
    # a: one attempt updated twice (running, then succeeded) in separate parts; a failed attempt of a newer day
    # and its retry; then a backfill of an older day, started last, left 'running' by a process that is gone
    put(db, ids["a1"], "a", DAY, 1, "running", T0, T0)
    put(db, ids["a1"], "a", DAY, 1, "succeeded", T0, T0 + timedelta(seconds=5), upstream={"u": up})
    put(db, ids["a2"], "a", DAY + timedelta(days=1), 1, "running", T0 + timedelta(hours=1), T0 + timedelta(hours=1))
    put(db, ids["a2"], "a", DAY + timedelta(days=1), 1, "failed", T0 + timedelta(hours=1),
        T0 + timedelta(hours=1, seconds=3))
    put(db, ids["a3"], "a", DAY + timedelta(days=1), 2, "running", T0 + timedelta(hours=2), T0 + timedelta(hours=2))
    put(db, ids["a3"], "a", DAY + timedelta(days=1), 2, "succeeded", T0 + timedelta(hours=2),
        T0 + timedelta(hours=2, seconds=4))
    put(db, ids["a4"], "a", DAY - timedelta(days=30), 1, "running", T0 + timedelta(hours=3), T0 + timedelta(hours=3),
        pid=gone, host=HOST)
    # b: the later state written first (its part is the older one): the later updated_at still wins
    put(db, ids["b1"], "b", DAY, 1, "succeeded", T0, T0 + timedelta(seconds=9))
    put(db, ids["b1"], "b", DAY, 1, "running", T0, T0)
    # c: the largest attempt number a microsecond before another attempt of its day, and one of an older day a
    # microsecond later: the later start wins; e: two attempts that started in the same microsecond: the higher
    # attempt is the newer
    put(db, ids["c1"], "c", DAY + timedelta(days=1), 4294967295, "failed", T0, T0)
    put(db, ids["c3"], "c", DAY + timedelta(days=1), 0, "succeeded", T0 + timedelta(microseconds=1), T0)
    put(db, ids["c2"], "c", DAY - timedelta(days=1), 0, "killed", T0 + timedelta(microseconds=2), T0)
    put(db, ids["e1"], "e", DAY + timedelta(days=1), 1, "succeeded", T0, T0)
    put(db, ids["e2"], "e", DAY, 2, "failed", T0, T0)
    put(db, ids["b2"], "b", DAY, 2, "failed", T0 + timedelta(seconds=20), T0 + timedelta(seconds=21))
    # d: still running, its process alive (this one)
    now = utc_now()
    put(db, ids["d1"], "d", DAY, 1, "running", now - timedelta(seconds=1), now, pid=os.getpid(), host=HOST)
    assert db.scalar(f"SELECT count() FROM {ledger.TABLE}") > db.scalar(f"SELECT count() FROM {ledger.TABLE} FINAL")
    assert db.scalar("SELECT count() FROM system.parts WHERE database = currentDatabase() AND active "
                     f"AND table = '{ledger.TABLE}'") == 16  # unmerged: FINAL has work to do

    assert latest(db) == expected_latest(db) == {
        "a": (ids["a4"], DAY - timedelta(days=30), 1, RunStatus.DIED),
        "b": (ids["b2"], DAY, 2, RunStatus.FAILED),
        "c": (ids["c2"], DAY - timedelta(days=1), 0, RunStatus.KILLED),
        "d": (ids["d1"], DAY, 1, RunStatus.RUNNING),
        "e": (ids["e2"], DAY, 2, RunStatus.FAILED)}
    newest_attempts = ledger.newest_by_pipeline(db)[0]
    for name, found in newest_attempts.items():  # every column as the FINAL read of attempts() has it
        assert found == ledger.attempts(db, name, limit=1)[0]
    states = ledger.partition_states(db)
    assert states == expected_states(db)
    assert states[("a", DAY)] == PartitionState("a", DAY, RunStatus.SUCCEEDED, ids["a1"], T0, {"u": up})
    assert states[("a", DAY + timedelta(days=1))].status is RunStatus.SUCCEEDED
    assert states[("a", DAY + timedelta(days=1))].good_run == ids["a3"]
    assert states[("b", DAY)].status is RunStatus.FAILED and states[("b", DAY)].good_run == ids["b1"]
    assert states[("c", DAY + timedelta(days=1))].status is RunStatus.SUCCEEDED
    newest_days = {(name, state.day): state for name, state in ledger.newest_by_pipeline(db)[1].items()}
    assert set(newest_days) == {("a", DAY + timedelta(days=1)), ("b", DAY), ("c", DAY + timedelta(days=1)),
                                ("d", DAY), ("e", DAY + timedelta(days=1))}
    assert newest_days == {k: v for k, v in expected_states(db).items() if k in newest_days}


def test_a_state_still_in_the_write_ahead_batch_is_read(ledger_db):
    db = ledger_db
    put(db, str(uuid.uuid4()), "a", DAY, 1, "succeeded", T0, T0)
    with ledger.batched(db):
        row = ledger.new_row(str(uuid.uuid4()), "a", DAY - timedelta(days=1), 1, Trigger.BACKFILL, "", "")
        ledger.write(db, row)  # pending: in the batch's file, not in the table yet
        found = ledger.newest_by_pipeline(db)[0]["a"]
        assert (found["run_id"], found["status"]) == (row["run_id"], RunStatus.RUNNING)
        row["status"] = RunStatus.SUCCEEDED
        ledger.write(db, row)
        assert ledger.newest_by_pipeline(db)[0]["a"]["status"] is RunStatus.SUCCEEDED
    assert latest(db)["a"] == expected_latest(db)["a"] == (row["run_id"], DAY - timedelta(days=1), 1,
                                                            RunStatus.SUCCEEDED)
