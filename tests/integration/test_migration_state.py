"""One truth for migration state (issue 13: 1, 2, 4, 6, 10, 11; issue 18: 1, 5), on a real embedded engine.

A run killed with -9 on the embedded engine leaves its events in its write-ahead file only (they reach the journal
table when a run ends). These tests build that state deterministically, through the migrator's own apply path,
then check that every command acts on the true state: ``--resume`` and plain ``migrate``, ``rollback --count N``
and its dry run, status, validate and the health check. The real ``kill -9`` of ``inv db.migrate`` at every
statement boundary is ``test_migration_kill_matrix.py``.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from ops.core.errors import BadInput, WorkFailed
from ops.migrations.interrupts import Stopped
from ops.migrations.migrator import Migrations
from ops.runtime import health
from tests.conftest import clean_environ, inv
from tests.integration.conftest import states, tables

M1 = ("CREATE TABLE a1 (x UInt8) ENGINE = MergeTree ORDER BY x;\nINSERT INTO a1 VALUES (1);\n",
      "DROP TABLE IF EXISTS a1 SYNC;\n")
M2 = ("CREATE TABLE a2 (x UInt8) ENGINE = MergeTree ORDER BY x;\n", "DROP TABLE IF EXISTS a2 SYNC;\n")
M3 = ("CREATE TABLE a3 (x UInt8) ENGINE = MergeTree ORDER BY x;\nALTER TABLE a3 ADD COLUMN y UInt8;\n"
      "ALTER TABLE a3 ADD COLUMN z UInt8;\n",
      "ALTER TABLE a3 DROP COLUMN IF EXISTS z;\nALTER TABLE a3 DROP COLUMN IF EXISTS y;\nDROP TABLE IF EXISTS a3 SYNC;\n")
M4 = ("CREATE TABLE a4 (x UInt8) ENGINE = MergeTree ORDER BY x;\n", "DROP TABLE IF EXISTS a4 SYNC;\n")
M5 = ("CREATE TABLE a5 (x UInt8) ENGINE = MergeTree ORDER BY x;\nINSERT INTO a5 VALUES (5);\n",
      "DROP TABLE IF EXISTS a5 SYNC;\n")
IDS = ["0001_a1", "0002_a2", "0003_a3", "0004_a4", "0005_a5"]


def write_set(mdir, migrations=(M1, M2, M3, M4, M5), ids=IDS):
    mdir.mkdir(exist_ok=True)
    for mid, (up, down) in zip(ids, migrations):
        (mdir / f"{mid}.sql").write_text(up)
        if down is not None:
            (mdir / f"{mid}.rollback.sql").write_text(down)



def killed_run(m, finished: int, statements: int = 0) -> None:
    """What ``kill -9`` leaves of a run that finished the first ``finished`` pending migrations and ran
    ``statements`` statements of the next: its events in the write-ahead file only, and the lock table of a
    process that is gone. Statements run through the migrator's own apply path, events written as a run writes
    them (a migration's last statement, its ``done`` and the next ``begin`` in one write)."""
    files = m.plan()
    m.backend.ensure_internal_schema_updated()
    pending = m.pending_events
    pending.start()
    carry = []
    for f in files[:finished]:
        carry = m._apply_one(f, carry, resume=False)
    if finished < len(files):
        f = files[finished]
        m._write(carry + [m._event_row(f, "apply", "begin", "killed")])
        for i in range(statements):
            m.db.command(f.statements[i].text)
            m._write([m._event_row(f, "apply", "statement", "killed", i, f.statement_sha(i))])
    else:
        m._write(carry)
    pending.abandon()  # kill -9: nothing reaches the table, the file stays
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = {"host": socket.gethostname(), "pid": dead.pid, "command": "inv db.migrate",
              "since": "2026-01-01 00:00:00 UTC"}
    m.db.command(f"CREATE TABLE _chops_migration_lock (held UInt8) ENGINE = Memory COMMENT '{json.dumps(holder)}'")
    assert pending.path.exists()


def after_the_kill(msettings, db) -> Migrations:
    """The next process: a migrator of its own on the same database."""
    return Migrations(msettings, db=db)


def test_resume_finishes_the_dirty_migration_and_reapplies_nothing(migrations, mdir, msettings, db):
    write_set(mdir)
    migrations.migrate(to="0001")  # an earlier run, in the journal table
    killed_run(migrations, finished=1, statements=1)  # 0002 finished, 0003 stopped after its CREATE
    assert db.scalar("SELECT countIf(event = 'done') FROM _chops_migration_log") == 1  # only 0001's in the table
    m = after_the_kill(msettings, db)
    assert states(m) == dict(zip(IDS, ["applied", "applied", "dirty", "pending", "pending"]))
    assert [p["id"] for p in m.migrate(resume=True, dry_run=True)["plan"]] == IDS[2:]
    assert m.migrate(resume=True)["applied"] == IDS[2:]  # 0002 is not run again (TABLE_ALREADY_EXISTS before)
    assert set(states(m).values()) == {"applied"}
    assert db.scalar("SELECT count() FROM _chops_migration_log WHERE event = 'begin' AND migration_id = '0002_a2'") == 1
    assert db.scalar("SELECT sum(x) FROM a1") == 1


def test_plain_migrate_after_a_kill_between_migrations_refuses_naming_every_way_out(migrations, mdir, msettings, db):
    write_set(mdir)
    killed_run(migrations, finished=2)  # 0001 and 0002 done; 0003 begun, none of its statements ran
    m = after_the_kill(msettings, db)
    with pytest.raises(WorkFailed) as err:
        m.migrate()
    line = err.value.line()
    assert "0003_a3 is dirty" in line
    for way in ("inv db.migrate --resume", "inv db.rollback", "inv db.mark 0003_a3"):
        assert way in line, line
    assert tables(db) == ["a1", "a2"]
    assert m.migrate(resume=True)["applied"] == IDS[2:]
    assert m.migrate()["applied"] == []


def test_rollback_count_and_its_dry_run_act_on_the_true_state(migrations, mdir, msettings, db):
    write_set(mdir)
    migrations.migrate(to="0001")
    killed_run(migrations, finished=1, statements=2)  # 0002 done, 0003: CREATE and first ALTER ran
    m = after_the_kill(msettings, db)
    dry = m.rollback(count=2, dry_run=True)
    assert [p["id"] for p in dry["plan"]] == ["0003_a3", "0002_a2"]  # not 0001 (the journal table's newest)
    done = m.rollback(count=2)
    assert done["rolled_back"] == ["0003_a3", "0002_a2"] and done["plan"] == dry["plan"]
    assert states(m) == dict(zip(IDS, ["applied", "pending", "pending", "pending", "pending"]))
    assert tables(db) == ["a1"]


def test_status_validate_and_health_read_the_write_ahead_file_too(migrations, mdir, msettings, db):
    write_set(mdir)
    killed_run(migrations, finished=2, statements=1)
    m = after_the_kill(msettings, db)
    assert [f["check"] for f in m.validate() if f["level"] == "error"] == ["dirty"]  # no conflict: 0001-2 applied
    verdict = health._migrations(msettings, db)
    assert verdict["status"] == "fail" and "0003_a3" in verdict["reason"] and "0001_a1" not in verdict["reason"]
    assert m.backend.applied_ids() == ["0001_a1", "0002_a2"]  # what plain yoyo sees, too


def test_a_run_killed_after_its_last_migration_leaves_nothing_to_apply(migrations, mdir, msettings, db):
    write_set(mdir)
    killed_run(migrations, finished=5)
    m = after_the_kill(msettings, db)
    assert set(states(m).values()) == {"applied"}
    assert m.migrate()["applied"] == []
    assert m.rollback(count=1, dry_run=True)["plan"][0]["id"] == "0005_a5"


def test_a_dirty_rollback_is_planned_once(migrations, mdir, db):
    """Issue 18, 1: the newest migration dirty from a failed rollback, then ``--count 2``."""
    write_set(mdir, (M1, M2), IDS[:2])
    (mdir / "0002_a2.rollback.sql").write_text("DROP TABLE IF EXISTS a2 SYNC;\nDROP TABLE nosuch SYNC;\n")
    migrations.migrate()
    with pytest.raises(WorkFailed) as err:
        migrations.rollback()
    assert "0002_a2.rollback.sql statement 2 of 2 (line 2) failed" in err.value.line()
    assert "inv db.rollback" in err.value.line() and "inv db.unmark 0002_a2" in err.value.line()
    assert states(migrations)["0002_a2"] == "dirty"
    assert [p["id"] for p in migrations.rollback(count=2, dry_run=True)["plan"]] == ["0002_a2", "0001_a1"]
    (mdir / "0002_a2.rollback.sql").write_text("DROP TABLE IF EXISTS a2 SYNC;\nDROP TABLE IF EXISTS nosuch SYNC;\n")
    assert migrations.rollback(count=2)["rolled_back"] == ["0002_a2", "0001_a1"]
    assert states(migrations) == {"0001_a1": "pending", "0002_a2": "pending"}
    assert tables(db) == []


def test_a_rollback_file_syntax_error_is_a_validate_error_and_rollback_refuses(migrations, mdir, db):
    write_set(mdir, (M1, M2), IDS[:2])
    (mdir / "0001_a1.rollback.sql").write_text("-- undo\n\nDROP TABLE IF EXISTS a1 SYNC;\nDROPP TABLE a1b;\n")
    migrations.migrate()  # the apply files are fine
    [problem] = [f for f in migrations.validate() if f["check"] == "syntax"]
    assert problem["migration"] == "0001_a1" and problem["level"] == "error"
    assert "0001_a1.rollback.sql statement 2 (line 4)" in problem["message"] and "Syntax error" in problem["message"]
    with pytest.raises(BadInput, match="0001_a1.rollback.sql statement 2") as err:
        migrations.rollback(count=2)
    assert "nothing was rolled back" in err.value.line()
    assert tables(db) == ["a1", "a2"]  # 0002's rollback did not run either


def test_a_rollback_that_runs_nothing_is_a_warning_and_says_what_stays(migrations, mdir, db):
    write_set(mdir, (M1, M2), IDS[:2])
    (mdir / "0002_a2.rollback.sql").write_text("-- goose had no Down section: a no-op.\n")
    [warning] = [f for f in migrations.validate() if f["check"] == "empty-rollback"]
    assert warning["level"] == "warning"
    assert warning["message"] == "rollback of 0002_a2 does nothing (its rollback file has no statements): " \
                                 "1 object stays (a2)"
    migrations.migrate()
    with pytest.raises(BadInput, match="rollback of 0002_a2 does nothing .*: 1 object stays \\(a2\\); nothing was "
                                       "rolled back") as refused:
        migrations.rollback()
    assert "--allow-empty" in refused.value.hint and states(migrations)["0002_a2"] == "applied"
    assert migrations.rollback(dry_run=True)["ran_nothing"] == [{"id": "0002_a2", "stays": ["a2"]}]
    result = migrations.rollback(allow_empty=True)
    assert result["rolled_back"] == ["0002_a2"] and result["ran_nothing"] == [{"id": "0002_a2", "stays": ["a2"]}]
    assert "a2" in tables(db) and states(migrations)["0002_a2"] == "pending"


def test_a_rollback_file_that_says_it_has_nothing_to_undo_rolls_back_without_a_warning(migrations, mdir, db):
    write_set(mdir, (M1, M2), IDS[:2])
    (mdir / "0002_a2.rollback.sql").write_text("-- goose had no Down section: a no-op.\n-- chops: nothing to undo\n")
    assert [f for f in migrations.validate() if f["check"] == "empty-rollback"] == []
    migrations.migrate()
    assert migrations.rollback()["rolled_back"] == ["0002_a2"]
    assert "a2" in tables(db) and states(migrations)["0002_a2"] == "pending"


def test_mark_through_records_a_baseline_in_one_write(migrations, mdir, db):
    write_set(mdir)
    migrations.migrate(to="0001")
    assert migrations.mark_through("0003", dry_run=True) == ["0002_a2", "0003_a3"]
    assert states(migrations)["0002_a2"] == "pending"
    assert migrations.mark_through("0003_a3") == ["0002_a2", "0003_a3"]
    assert states(migrations) == dict(zip(IDS, ["applied"] * 3 + ["pending"] * 2))
    marks = db.rows("SELECT attempt_id, created_at_utc FROM _chops_migration_log WHERE operation = 'mark'")
    assert len(marks) == 2 and len({r["attempt_id"] for r in marks}) == 1  # one baseline, one write
    assert tables(db) == ["a1"]  # recorded, never ran
    assert migrations.mark_through("3") == []
    assert migrations.migrate()["applied"] == IDS[3:]


def test_mark_through_refuses_a_dirty_or_drifted_migration(migrations, mdir, db):
    write_set(mdir)
    migrations.migrate(to="0002")
    (mdir / "0002_a2.sql").write_text(M2[0] + "-- edited after it was applied\n")
    with pytest.raises(BadInput, match="0002_a2 is drifted: nothing was recorded"):
        migrations.mark_through("0004")
    (mdir / "0002_a2.sql").write_text(M2[0])
    (mdir / "0003_a3.sql").write_text(M3[0].replace("ADD COLUMN y", "ADD COLUMN x"))  # statement 2 fails
    with pytest.raises(WorkFailed):
        migrations.migrate()
    with pytest.raises(BadInput, match="0003_a3 is dirty: nothing was recorded") as err:
        migrations.mark_through("0004")
    assert "inv db.mark 0003_a3" in err.value.line()
    assert states(migrations)["0004_a4"] == "pending"


def test_a_long_clickhouse_message_is_whole_in_the_journal_and_short_in_the_error(migrations, mdir, db):
    (mdir / "0001_agg.sql").write_text(
        "CREATE TABLE agg (day Date, country String, n SimpleAggregateFunction(sum, UInt64))\n"
        "ENGINE = AggregatingMergeTree ORDER BY day;\n")
    with pytest.raises(WorkFailed) as err:
        migrations.migrate()
    line = err.value.line()
    assert "allow_dimensions_outside_sorting_key" in line  # the sentence that names the fix is kept
    assert "During background merges" not in line and "(BAD_ARGUMENTS)" in line
    assert "inv db.history 0001_agg" in line and "inv db.mark 0001_agg" in line
    [failed] = [e for e in migrations.history("0001") if e["event"] == "failed"]
    assert len(failed["error"]) > 500 and "During background merges" in failed["error"]
    assert failed["error"].endswith("(BAD_ARGUMENTS)")
    note = migrations.status()[0]["note"]
    assert "allow_dimensions_outside_sorting_key" in note and "During background merges" not in note


def test_a_failure_without_a_rollback_file_names_the_statements_to_undo_by_hand(migrations, mdir):
    write_set(mdir, [(M3[0].replace("ADD COLUMN z", "ADD COLUMN x"), None)], ["0001_a3"])
    with pytest.raises(WorkFailed) as err:
        migrations.migrate()
    line = err.value.line()
    assert "undo statements 1, 2 by hand, then: inv db.unmark 0001_a3" in line
    assert "inv db.migrate --resume" in line and "inv db.mark 0001_a3" in line


def test_sigterm_between_migrations_stops_before_the_next_one(migrations, mdir, db):
    write_set(mdir)
    before = signal.getsignal(signal.SIGTERM)

    def progress(f, n, total):
        if f.id == "0003_a3":
            os.kill(os.getpid(), signal.SIGTERM)  # handled at once: a request to stop

    with pytest.raises(Stopped) as err:
        migrations.migrate(progress=progress)
    assert err.value.exit_code == 128 + signal.SIGTERM
    assert err.value.line() == ("stopped by SIGTERM before the apply of 0003_a3; nothing is dirty "
                                "(continue with: inv db.migrate)")
    assert states(migrations) == dict(zip(IDS, ["applied", "applied", "pending", "pending", "pending"]))
    assert signal.getsignal(signal.SIGTERM) is before  # the handler before is back
    assert migrations.migrate()["applied"] == IDS[2:]


def test_sigint_during_a_statement_stops_after_it_dirty_and_resumable(migrations, mdir, db):
    slow = ("CREATE TABLE s (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
            "SELECT count() FROM numbers(2) WHERE sleepEachRow(1) = 0 SETTINGS max_block_size = 1;\n"
            "ALTER TABLE s ADD COLUMN y UInt8;\n")
    write_set(mdir, [(slow, "ALTER TABLE s DROP COLUMN IF EXISTS y;\nDROP TABLE IF EXISTS s SYNC;\n")], ["0001_s"])
    timers = []

    def progress(f, n, total):  # inside the lock, where the handlers are installed: Ctrl-C during statement 2
        timers.append(threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)))
        timers[-1].start()

    started = time.monotonic()
    try:
        with pytest.raises(Stopped) as err:
            migrations.migrate(progress=progress)
    finally:
        for t in timers:
            t.cancel()
    assert time.monotonic() - started >= 1.5  # the running statement finished
    assert err.value.exit_code == 130
    assert err.value.message == "stopped by SIGINT after statement 2 of 0001_s; 0001_s is dirty"
    assert "inv db.migrate --resume" in err.value.hint
    [row] = migrations.status()
    assert row["state"] == "dirty" and row["note"].startswith("apply stopped after 2 of 3 statements")
    assert migrations.migrate(resume=True)["applied"] == ["0001_s"]
    assert db.scalar("SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = 's'") == 2


def test_cli_mark_through_and_rollback_warning(tmp_path, mdir):
    write_set(mdir, (M1, M2, M3), IDS[:3])
    (mdir / "0001_a1.rollback.sql").write_text("-- nothing\n")
    env = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"),
                        CHOPS_ENV_FILE=str(tmp_path / "none.env"), CHOPS_MIGRATIONS__DIR=str(mdir))
    assert inv("db.setup", env=env).returncode == 0
    dry = inv("db.mark", "--through", "2", "--dry-run", env=env)
    assert dry.returncode == 0 and "would mark 2 migrations applied (0001_a1 … 0002_a2)" in dry.stderr
    done = inv("db.mark", "--through", "0002_a2", "--json", env=env)
    assert json.loads(done.stdout) == {"marked": ["0001_a1", "0002_a2"], "dry_run": False}
    assert inv("db.migrate", env=env).returncode == 0
    refused = inv("db.rollback", "--count", "3", env=env)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "--allow-empty" in refused.stderr
    rolled = inv("db.rollback", "--count", "3", "--allow-empty", env=env)
    assert rolled.returncode == 0, rolled.stderr
    assert "warning: the rollback of 0001_a1 ran nothing (its rollback file has no statements): a1 stays" \
           in rolled.stderr


def test_validate_lists_every_finding_even_a_file_it_cannot_read(tmp_path, mdir):
    # issue 18, finding 6: validate stopped at the first finding (a bad file name) and printed nothing with --json
    write_set(mdir, (M1, M2), IDS[:2])
    (mdir / "01_bad.sql").write_text("SELECT 1;\n")  # a three-digit-less name chops does not take
    (mdir / "0003_c.sql").write_text("CREATE TABLE c (x UInt8 ENGINE = Memory;\n")  # a syntax error
    (mdir / "0004_d.sql").write_bytes(b"-- caf\xe9\nCREATE TABLE d (x UInt8) ENGINE = Memory;\n")  # not UTF-8
    (mdir / "0004_e.sql").write_text("CREATE TABLE e (x UInt8) ENGINE = Memory;\n")  # a duplicate number
    env = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"),
                        CHOPS_ENV_FILE=str(tmp_path / "none.env"), CHOPS_MIGRATIONS__DIR=str(mdir))
    assert inv("db.setup", env=env).returncode == 0
    done = inv("db.validate", "--json", env=env)
    assert done.returncode == 1 and done.stderr.strip() == "error: 4 errors in migrations"
    answer = json.loads(done.stdout)  # one JSON document: the error, with every finding
    assert answer["error"] == "4 errors in migrations" and answer["exit_code"] == 1
    found = {(f["level"], f["check"], f["migration"]) for f in answer["findings"]}
    assert {("error", "name", "01_bad.sql"), ("error", "read", "0004_d"), ("error", "duplicate", "0004_d"),
            ("error", "syntax", "0003_c")} <= found
    assert inv("db.migrate", env=env).returncode == 2  # applying still refuses the unreadable set, with one line
