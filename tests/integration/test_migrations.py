"""Migrations against a real embedded engine: round trips, drift, dirty/resume/rollback, locks, bad input."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ops.core.errors import BadInput, LockTimeout, WorkFailed
from ops.migrations.migrator import Migrations
from tests.conftest import ROOT, clean_environ, inv


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


@pytest.fixture
def mdir(tmp_path):
    return tmp_path / "migrations"


@pytest.fixture
def migrations(settings, db, mdir):
    mdir.mkdir()
    return Migrations(settings.with_overrides(migrations__dir=str(mdir)), db=db)


def tables(db):
    return sorted(r["name"] for r in db.rows("SELECT name FROM system.tables WHERE database = currentDatabase()"))


def states(m):
    return {r["id"]: r["state"] for r in m.status()}


def two_migrations(mdir):
    write(mdir, "0001_events.sql", "CREATE TABLE events (day Date, n UInt64) ENGINE = MergeTree ORDER BY day;\n"
                                   "INSERT INTO events VALUES ('2026-11-01', 1), ('2026-11-02', 2);\n")
    write(mdir, "0001_events.rollback.sql", "DROP TABLE IF EXISTS events SYNC;\n")
    write(mdir, "0002_totals.sql", "-- depends: 0001_events\n"
                                   "CREATE TABLE totals (n UInt64) ENGINE = MergeTree ORDER BY n;\n")
    write(mdir, "0002_totals.rollback.sql", "DROP TABLE IF EXISTS totals SYNC;\n")


def test_apply_status_rollback_reapply_round_trip(migrations, mdir, db):
    two_migrations(mdir)
    assert states(migrations) == {"0001_events": "pending", "0002_totals": "pending"}
    assert migrations.migrate()["applied"] == ["0001_events", "0002_totals"]
    assert states(migrations) == {"0001_events": "applied", "0002_totals": "applied"}
    assert db.scalar("SELECT sum(n) FROM events") == 3
    status = migrations.status()
    assert status[0]["applied_at"].endswith("UTC") and "@" in status[0]["applied_by"]

    assert migrations.migrate()["applied"] == []  # twice = no-op
    assert migrations.rollback()["rolled_back"] == ["0002_totals"]
    assert states(migrations) == {"0001_events": "applied", "0002_totals": "pending"}
    assert "totals" not in tables(db)
    assert migrations.rollback(count=5)["rolled_back"] == ["0001_events"]
    assert tables(db) == ["_chops_migration_log"]
    assert migrations.migrate(to="0001")["applied"] == ["0001_events"]
    assert migrations.migrate()["applied"] == ["0002_totals"]
    assert db.scalar("SELECT sum(n) FROM events") == 3  # re-applied once, not twice
    assert migrations.rollback(to="0001_events")["rolled_back"] == ["0002_totals"]


def test_dry_run_changes_nothing(migrations, mdir, db):
    two_migrations(mdir)
    before = tables(db)
    assert before == []  # not even the journal is created by a dry run or a status
    result = migrations.migrate(dry_run=True)
    assert [p["id"] for p in result["plan"]] == ["0001_events", "0002_totals"]
    migrations.status(), migrations.validate(), migrations.history()
    assert result["plan"][0]["statements"][1].startswith("INSERT INTO events VALUES")
    assert tables(db) == before
    migrations.migrate()
    before = tables(db)
    assert migrations.rollback(count=2, dry_run=True)["plan"][0]["statements"] == ["DROP TABLE IF EXISTS totals SYNC"]
    assert tables(db) == before and set(states(migrations).values()) == {"applied"}


def test_drift_after_editing_an_applied_file(migrations, mdir):
    two_migrations(mdir)
    migrations.migrate()
    path = mdir / "0001_events.sql"
    path.write_text(path.read_text() + "-- an innocent-looking edit\n")
    assert states(migrations)["0001_events"] == "drifted"
    assert any(f["check"] == "drift" for f in migrations.validate())
    write(mdir, "0003_more.sql", "CREATE TABLE more (x UInt8) ENGINE = MergeTree ORDER BY x;\n")
    with pytest.raises(BadInput, match="0001_events changed after it was applied"):
        migrations.migrate()
    assert states(migrations)["0003_more"] == "pending"  # refused before anything ran


THREE = ("CREATE TABLE a (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
         "CREATE TABLE b (x UInt8) ENGINE = MergeTree ORDER BY nosuch_column;\n"
         "CREATE TABLE c (x UInt8) ENGINE = MergeTree ORDER BY x;\n")
THREE_ROLLBACK = ("DROP TABLE IF EXISTS c SYNC;\n"
                  "DROP TABLE IF EXISTS b SYNC;\n"
                  "DROP TABLE IF EXISTS a SYNC;\n")


def test_failure_mid_file_is_dirty_then_fix_and_resume(migrations, mdir, db):
    write(mdir, "0001_three.sql", THREE)
    write(mdir, "0001_three.rollback.sql", THREE_ROLLBACK)
    write(mdir, "0002_after.sql", "CREATE TABLE after (x UInt8) ENGINE = MergeTree ORDER BY x;\n")
    with pytest.raises(WorkFailed) as err:
        migrations.migrate()
    assert "0001_three.sql statement 2 of 3 (line 2) failed" in err.value.line()
    assert "nosuch_column" in err.value.line() and "--resume" in err.value.line()
    [row] = [r for r in migrations.status() if r["id"] == "0001_three"]
    assert row["state"] == "dirty" and "statement 2 failed" in row["note"]
    assert "a" in tables(db) and "b" not in tables(db)

    with pytest.raises(WorkFailed, match="dirty"):
        migrations.migrate()  # refuses to go on
    assert "after" not in tables(db)

    (mdir / "0001_three.sql").write_text(THREE.replace("nosuch_column", "x"))
    result = migrations.migrate(resume=True)
    assert result["applied"] == ["0001_three", "0002_after"]
    assert states(migrations) == {"0001_three": "applied", "0002_after": "applied"}
    assert {"a", "b", "c", "after"} <= set(tables(db))
    # statement 1 ran exactly once across both attempts
    ran = [e for e in migrations.history("0001_three") if e["event"] == "statement" and e["statement"] == 1]
    assert len(ran) == 1


def test_resume_refuses_when_a_statement_that_ran_was_changed(migrations, mdir):
    write(mdir, "0001_three.sql", THREE)
    with pytest.raises(WorkFailed):
        migrations.migrate()
    (mdir / "0001_three.sql").write_text(THREE.replace("TABLE a", "TABLE a2").replace("nosuch_column", "x"))
    with pytest.raises(BadInput, match="statement 1 already ran and has changed"):
        migrations.migrate(resume=True)


def test_rollback_of_a_dirty_migration_undoes_what_ran(migrations, mdir, db):
    write(mdir, "0001_three.sql", THREE)
    write(mdir, "0001_three.rollback.sql", THREE_ROLLBACK)
    with pytest.raises(WorkFailed):
        migrations.migrate()
    plan = migrations.rollback(dry_run=True)["plan"]
    assert plan == [{"id": "0001_three", "statements": ["DROP TABLE IF EXISTS a SYNC"]}]
    migrations.rollback()
    assert states(migrations) == {"0001_three": "pending"}
    assert "a" not in tables(db)
    (mdir / "0001_three.sql").write_text(THREE.replace("nosuch_column", "x"))
    assert migrations.migrate()["applied"] == ["0001_three"]


def test_tricky_statements_apply_for_real(migrations, mdir, db):
    write(mdir, "0001_tricky.sql", """-- a comment; with a semicolon
CREATE TABLE notes (id UInt8, body String) ENGINE = MergeTree ORDER BY id; /* block; comment */
INSERT INTO notes VALUES (1, 'semi;colon'), (2, 'it''s; quoted'), (3, '100%');
INSERT INTO notes SELECT 4, $$heredoc; with 'quotes'$$;
INSERT INTO notes VALUES (5, 'no trailing semicolon')
""")
    migrations.migrate()
    rows = db.rows("SELECT id, body FROM notes ORDER BY id")
    assert [r["body"] for r in rows] == ["semi;colon", "it's; quoted", "100%", "heredoc; with 'quotes'",
                                         "no trailing semicolon"]


def test_unknown_depends_cycles_duplicates_and_conflicts(migrations, mdir):
    write(mdir, "0001_a.sql", "-- depends: 0009_missing\nSELECT 1;\n")
    found = {f["check"] for f in migrations.validate()}
    assert "depends" in found
    with pytest.raises(BadInput, match="depends on 0009_missing, which does not exist"):
        migrations.migrate()

    (mdir / "0001_a.sql").write_text("-- depends: 0002_b\nSELECT 1;\n")
    write(mdir, "0002_b.sql", "-- depends: 0001_a\nSELECT 2;\n")
    assert "cycle" in {f["check"] for f in migrations.validate()}
    with pytest.raises(BadInput, match="cycle"):
        migrations.migrate()

    (mdir / "0001_a.sql").write_text("SELECT 1;\n")
    (mdir / "0002_b.sql").write_text("SELECT 2;\n")
    write(mdir, "0002_c.sql", "SELECT 3;\n")
    with pytest.raises(BadInput, match="number 0002 is used by 0002_b and 0002_c"):
        migrations.migrate()

    (mdir / "0002_c.sql").unlink()
    migrations.migrate()
    write(mdir, "0001_z_from_another_branch.sql", "SELECT 4;\n")
    findings = migrations.validate()
    assert any(f["check"] == "duplicate" for f in findings)
    (mdir / "0001_z_from_another_branch.sql").rename(mdir / "0000_from_another_branch.sql")
    assert any(f["check"] == "conflict" and "0000_from_another_branch" in f["message"] for f in migrations.validate())


def test_syntax_error_is_bad_input_and_nothing_is_applied(migrations, mdir, db):
    write(mdir, "0001_ok.sql", "CREATE TABLE ok (x UInt8) ENGINE = MergeTree ORDER BY x;\n")
    write(mdir, "0002_typo.sql", "CREATE TABLE t2 (x UInt8) ENGINE = MergeTree ORDER BY x;\n\nCREAT TABLE t3 (x UInt8);\n")
    with pytest.raises(BadInput) as err:
        migrations.migrate()
    line = err.value.line()
    assert "0002_typo.sql statement 2 (line 3)" in line and "Syntax error" in line
    assert "ok" not in tables(db)
    assert [f["check"] for f in migrations.validate() if f["level"] == "error"] == ["syntax"]


def test_bad_names_and_arguments(migrations, mdir, settings, tmp_path):
    for name in ("../evil", "a/b", "has space", "Upper", ""):
        with pytest.raises(BadInput):
            migrations.new(name)
    assert not list(mdir.iterdir())
    created = migrations.new("add_events")
    assert [p.name for p in created] == ["0001_add_events.sql", "0001_add_events.rollback.sql"]
    assert migrations.new("more")[0].name == "0002_more.sql"
    with pytest.raises(BadInput, match="unknown migration '0042_nope'"):
        migrations.migrate(to="0042_nope")
    with pytest.raises(BadInput, match="nothing to roll back"):
        migrations.rollback()
    with pytest.raises(BadInput, match="--count must be at least 1"):
        migrations.rollback(count=0)
    gone = Migrations(settings.with_overrides(migrations__dir=str(tmp_path / "nowhere")), db=migrations.db)
    with pytest.raises(BadInput, match="does not exist"):
        gone.status()
    write(mdir, "3_short.sql", "SELECT 1;")
    with pytest.raises(BadInput, match="NNNN_name.sql"):
        migrations.status()


def test_mark_unmark_and_history(migrations, mdir, db):
    two_migrations(mdir)
    assert migrations.mark("0001_events") is True
    assert migrations.mark("1") is False  # already applied
    assert "events" not in tables(db)  # marked, never ran
    assert states(migrations)["0001_events"] == "applied"
    assert migrations.unmark("0001_events") is True
    assert migrations.unmark("0001_events") is False
    events = [(e["operation"], e["event"]) for e in migrations.history("0001_events")]
    assert events == [("mark", "done"), ("unmark", "done")]


def test_plain_yoyo_works_on_the_backend(migrations, mdir, db):
    from yoyo import read_migrations

    two_migrations(mdir)
    backend = migrations.backend
    with backend.lock():
        backend.apply_migrations(backend.to_apply(read_migrations(str(mdir))))
    assert states(migrations) == {"0001_events": "applied", "0002_totals": "applied"}
    with backend.lock():
        backend.rollback_migrations(backend.to_rollback(read_migrations(str(mdir))))
    assert states(migrations) == {"0001_events": "pending", "0002_totals": "pending"}
    assert "events" not in tables(db)


def test_lock_waits_for_a_live_holder_and_names_break_lock(migrations, mdir, db):
    two_migrations(mdir)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.1)
        holder = {"host": socket.gethostname(), "pid": sleeper.pid, "command": "inv db.migrate",
                  "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() + 1))}
        db.command(f"CREATE TABLE _chops_migration_lock (held UInt8) ENGINE = Memory COMMENT '{json.dumps(holder)}'")
        with pytest.raises(LockTimeout) as err:
            migrations.backend.lock_timeout = 0.5
            migrations.migrate()
        assert f"pid {sleeper.pid}" in err.value.line() and "inv db.break-lock" in err.value.line()
        assert states(migrations)["0001_events"] == "pending"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stale_lock_is_broken(migrations, mdir, db):
    two_migrations(mdir)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = {"host": socket.gethostname(), "pid": dead.pid, "command": "inv db.migrate",
              "since": "2026-01-01 00:00:00 UTC"}
    db.command(f"CREATE TABLE _chops_migration_lock (held UInt8) ENGINE = Memory COMMENT '{json.dumps(holder)}'")
    assert migrations.migrate()["applied"] == ["0001_events", "0002_totals"]
    assert migrations.backend.holder() is None


def cli_env(tmp_path, mdir):
    return clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"),
                        CHOPS_ENV_FILE=str(tmp_path / "none.env"), CHOPS_MIGRATIONS__DIR=str(mdir))


def test_two_migrate_processes_apply_each_migration_once(tmp_path, mdir):
    for i in range(1, 6):
        write(mdir, f"{i:04d}_t{i}.sql", f"CREATE TABLE t{i} (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
                                         f"INSERT INTO t{i} VALUES ({i});\n")
    env = cli_env(tmp_path, mdir)
    assert inv("db.setup", env=env).returncode == 0
    procs = [subprocess.Popen([str(Path(sys.executable).parent / "inv"), "db.migrate"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    counts = inv("db.query", "SELECT migration_id, count() AS n FROM _chops_migration_log WHERE event = 'done' "
                 "GROUP BY migration_id ORDER BY migration_id", "--json", env=env)
    assert json.loads(counts.stdout) == [{"migration_id": f"{i:04d}_t{i}", "n": 1} for i in range(1, 6)]
    total = inv("db.query", "SELECT sum(x) AS s FROM merge(currentDatabase(), '^t[0-9]$')", "--json", env=env)
    assert json.loads(total.stdout) == [{"s": 15}]


@pytest.mark.slow
def test_kill_9_mid_migration_leaves_it_dirty_and_recoverable(tmp_path, mdir):
    write(mdir, "0001_slow.sql", "CREATE TABLE s1 (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
                                 "SELECT sleep(3);\n"
                                 "CREATE TABLE s2 (x UInt8) ENGINE = MergeTree ORDER BY x;\n")
    write(mdir, "0001_slow.rollback.sql", "DROP TABLE IF EXISTS s2 SYNC;\nSELECT 1;\nDROP TABLE IF EXISTS s1 SYNC;\n")
    env = cli_env(tmp_path, mdir)
    assert inv("db.setup", env=env).returncode == 0
    proc = subprocess.Popen([str(Path(sys.executable).parent / "inv"), "db.migrate"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while "applying 0001_slow" not in proc.stderr.readline() and time.time() < deadline:
        pass
    time.sleep(1.0)  # statement 1 done, statement 2 sleeping
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The killed run's events are still in its write-ahead file, not yet in the journal table: readers merge them.
    leftover = list((tmp_path / "var" / "clickhouse" / "chops").glob("migration-journal.*.wal"))
    assert len(leftover) == 1
    status = json.loads(inv("db.status", "--json", env=env).stdout)
    assert status[0]["state"] == "dirty" and "interrupted" in status[0]["note"]
    refused = inv("db.migrate", env=env)
    assert refused.returncode == 1 and "--resume" in refused.stderr
    resumed = inv("db.migrate", "--resume", env=env)  # breaks the stale lock, continues at statement 2
    assert resumed.returncode == 0, resumed.stderr
    assert "stale migration lock" in resumed.stderr
    assert json.loads(inv("db.status", "--json", env=env).stdout)[0]["state"] == "applied"
    assert not leftover[0].exists()
    # The killed attempt was replayed into the table: begin and statement 1, then the resumed attempt.
    events = json.loads(inv("db.query", "SELECT event, statement FROM _chops_migration_log "
                            "ORDER BY created_at_utc, statement", "--json", env=env).stdout)
    assert [(e["event"], e["statement"]) for e in events] == [
        ("begin", 0), ("statement", 0), ("begin", 0), ("statement", 1), ("statement", 2), ("done", 0)]


def test_cli_bad_input_exits_2(tmp_path, mdir):
    write(mdir, "0001_x.sql", "SELECT 1;\n")
    env = cli_env(tmp_path, mdir)
    assert inv("db.setup", env=env).returncode == 0
    for args in (["db.new", "../x"], ["db.new", "a b"], ["db.migrate", "--to", "9999"], ["db.rollback"],
                 ["db.rollback", "--count", "x"], ["db.import", str(tmp_path), "--from", "flyway"]):
        result = inv(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr, args
    missing = inv("db.status", env={**env, "CHOPS_MIGRATIONS__DIR": str(tmp_path / "none")})
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_status_check_and_json(tmp_path, mdir):
    write(mdir, "0001_x.sql", "CREATE TABLE x (x UInt8) ENGINE = MergeTree ORDER BY x;\n")
    env = cli_env(tmp_path, mdir)
    inv("db.setup", env=env)
    assert inv("db.status", "--check", env=env).returncode == 1
    assert inv("db.migrate", env=env).returncode == 0
    checked = inv("db.status", "--check", "--json", env=env)
    assert checked.returncode == 0 and json.loads(checked.stdout)[0]["state"] == "applied"
    history = json.loads(inv("db.history", "--json", env=env).stdout)
    assert [h["event"] for h in history] == ["begin", "statement", "done"]


def test_import_cli_writes_chops_layout(tmp_path, mdir):
    src = tmp_path / "golang"
    write(src, "1_users.up.sql", "CREATE TABLE users (id UInt64) ENGINE = MergeTree ORDER BY id;\n")
    write(src, "1_users.down.sql", "DROP TABLE users;\n")
    write(src, "2_orders.up.sql", "CREATE TABLE orders (id UInt64) ENGINE = MergeTree ORDER BY id;\n")
    mdir.mkdir()
    env = cli_env(tmp_path, mdir)
    result = inv("db.import", str(src), "--from", "golang-migrate", "--json", env=env)
    assert result.returncode == 0, result.stderr
    # the tool's version stays in the id (README: NNNN_<version>_<name>.sql); no down: a rollback that runs nothing
    assert sorted(p.name for p in mdir.iterdir()) == ["0001_1_users.rollback.sql", "0001_1_users.sql",
                                                      "0002_2_orders.rollback.sql", "0002_2_orders.sql"]
    inv("db.setup", env=env)
    assert inv("db.migrate", env=env).returncode == 0
    again = json.loads(inv("db.import", str(src), "--from", "golang-migrate", "--json", env=env).stdout)
    assert {r["action"] for r in again} == {"skip"}


def test_cluster_rendering_and_server_settings(settings, mdir, tmp_path):
    from ops.migrations.journal import log_table_sql

    mdir.mkdir()
    write(mdir, "0001_r.sql", "CREATE TABLE r ON CLUSTER {cluster} (x UInt8) "
                              "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/r', '{replica}') ORDER BY x;\n")
    server = settings.with_overrides(clickhouse__url="http://ops:pw@ch.example:8123/prod", clickhouse__cluster="main",
                                     migrations__dir=str(mdir))
    m = Migrations(server)
    [f] = m.files()
    rendered = m.render(f.statements[0].text, f.path)
    assert rendered.startswith("CREATE TABLE r ON CLUSTER `main` (x UInt8)")
    assert "'/clickhouse/tables/{shard}/r', '{replica}'" in rendered  # server macros untouched
    assert m.statement_settings() == {"alter_sync": 2, "mutations_sync": 2}
    single = Migrations(settings.with_overrides(clickhouse__url="http://ch.example:8123/prod", migrations__dir=str(mdir)))
    assert single.statement_settings() == {"alter_sync": 1, "mutations_sync": 1}
    assert "ON CLUSTER" not in single.render(f.statements[0].text, f.path)
    embedded = Migrations(settings.with_overrides(clickhouse__cluster="main", migrations__dir=str(mdir)))
    assert embedded.cluster is None and embedded.statement_settings() == {}
    assert "ON CLUSTER" not in embedded.render(f.statements[0].text, f.path)
    replicated = log_table_sql("main", replicated=True)
    assert "ON CLUSTER `main`" in replicated and "ReplicatedMergeTree(" in replicated
    assert "ENGINE = MergeTree" in log_table_sql(None, replicated=False)


def test_literal_on_cluster_clauses_are_removed_on_the_embedded_engine(migrations, mdir, db):
    # written for a cluster named `default` (literal, as many projects do), and with a quoted name in a rollback
    write(mdir, "0001_events.sql", "CREATE TABLE events ON CLUSTER default (day Date, note String DEFAULT 'ON CLUSTER x')\n"
                                   "ENGINE = MergeTree ORDER BY day;\n"
                                   "ALTER TABLE events ON CLUSTER 'main' ADD COLUMN env String;\n")
    write(mdir, "0001_events.rollback.sql", "DROP TABLE IF EXISTS events ON CLUSTER `default` SYNC;\n")
    [plan] = migrations.migrate(dry_run=True)["plan"]  # the dry run shows the SQL as it will run
    assert [s.split("\n")[0] for s in plan["statements"]] == [
        "CREATE TABLE events (day Date, note String DEFAULT 'ON CLUSTER x')", "ALTER TABLE events ADD COLUMN env String"]
    assert migrations.migrate()["applied"] == ["0001_events"]
    assert db.scalar("SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = 'events' "
                     "AND name = 'env'") == 1
    assert db.scalar("SELECT default_expression FROM system.columns WHERE database = currentDatabase() "
                     "AND table = 'events' AND name = 'note'") == "'ON CLUSTER x'"  # a string is never touched
    migrations.rollback(count=1)
    assert "events" not in tables(db)


def test_a_literal_cluster_other_than_the_configured_one_is_a_validate_error(settings, mdir):
    mdir.mkdir()
    write(mdir, "0001_r.sql", "CREATE TABLE r ON CLUSTER {cluster} (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
                              "\nALTER TABLE r ON CLUSTER staging ADD COLUMN y UInt8;\n")
    server = settings.with_overrides(clickhouse__url="http://ops:pw@ch.example:8123/prod", clickhouse__cluster="main",
                                     migrations__dir=str(mdir))
    m = Migrations(server)  # no server here: the check itself, which db.validate runs among the others
    found = m.cluster_problems(m.files())
    assert [x["message"] for x in found] == [
        f"{mdir / '0001_r.sql'} line 3: ON CLUSTER staging, but clickhouse.cluster is main (write ON CLUSTER {{cluster}})"]


def killed_run(migrations, mdir):
    """A run that died after statement 1 of 0001_events: its events are in the write-ahead file only."""
    two_migrations(mdir)
    f = migrations.files()[0]
    pending = migrations.pending_events
    migrations.backend.ensure_internal_schema_updated()
    pending.start()
    migrations._write([migrations._event_row(f, "apply", "begin", "a1")])
    migrations.db.command(f.statements[0].text)
    migrations._write([migrations._event_row(f, "apply", "statement", "a1", 0, f.statement_sha(0))])
    pending.abandon()  # what kill -9 leaves behind: the file, nothing in the table
    assert pending.path.exists()
    return pending


def test_a_killed_runs_events_are_read_from_its_file_and_replayed_once(migrations, mdir, db):
    pending = killed_run(migrations, mdir)
    assert db.scalar("SELECT count() FROM _chops_migration_log") == 0
    assert states(migrations)["0001_events"] == "dirty"
    rows = pending.leftover()
    # A replay killed after its INSERT but before removing the file: the next replay inserts nothing twice.
    db.insert_rows("_chops_migration_log", rows[:1])
    assert pending.replay() == 1
    assert not pending.path.exists()
    assert db.scalar("SELECT count() FROM _chops_migration_log") == 2
    assert pending.replay() == 0
    assert migrations.migrate(resume=True)["applied"] == ["0001_events", "0002_totals"]
    assert db.scalar("SELECT sum(n) FROM events") == 3  # statement 1 (the CREATE) was not run again


def test_a_file_left_beside_a_recreated_journal_is_discarded(migrations, mdir, db):
    pending = killed_run(migrations, mdir)
    db.command("DROP TABLE _chops_migration_log SYNC")
    db.command("DROP TABLE events SYNC")
    migrations.backend._internal_schema_updated = False
    migrations.backend.ensure_internal_schema_updated()  # a new journal table: a new UUID
    assert pending.leftover() == []
    assert states(migrations)["0001_events"] == "pending"
    assert migrations.migrate()["applied"] == ["0001_events", "0002_totals"]
    assert not pending.path.exists()
    assert db.scalar("SELECT count() FROM _chops_migration_log WHERE event = 'begin'") == 2


def test_a_cut_short_last_line_is_a_statement_that_never_started(migrations, mdir, db):
    pending = killed_run(migrations, mdir)
    with pending.path.open("a") as f:
        f.write('{"id": "0000')  # a kill in the middle of writing the next begin
    assert [e["event"] for e in pending.leftover()] == ["begin", "statement"]
    assert states(migrations)["0001_events"] == "dirty"


def test_template_variables_are_filled_when_migrations_run(settings, db, mdir):
    write(mdir, "0001_events.sql",
          "CREATE TABLE events ON CLUSTER '{{.APP_CLUSTER}}' (a Int8, s String DEFAULT '{{ .APP_ENV }}')\n"
          "ENGINE = {{.APP_REPLICATED}}MergeTree ORDER BY a;\n"
          "-- +goose ENVSUB ON\n"
          "ALTER TABLE events MODIFY COMMENT 'kept ${DAYS:-30} days, ${APP_ENV}';\n")
    write(mdir, "0001_events.rollback.sql", "DROP TABLE events;\n")
    m = Migrations(settings.with_overrides(migrations__dir=str(mdir)), db=db)
    assert [(x["check"], x["message"].split(": ", 1)[1]) for x in m.validate() if x["level"] == "error"] == [
        ("template", "unknown variable APP_CLUSTER in {{.APP_CLUSTER}}"),
        ("template", "unknown variable APP_ENV in {{ .APP_ENV }}"),
        ("template", "unknown variable APP_REPLICATED in {{.APP_REPLICATED}}"),
        ("template", "unknown variable APP_ENV in ${APP_ENV}")]
    with pytest.raises(BadInput, match="0001_events.sql line 1: unknown variable APP_CLUSTER"):
        m.migrate()
    assert "events" not in tables(db)

    m = Migrations(settings.with_overrides(migrations__dir=str(mdir), migrations__variables={
        "app_cluster": "main", "APP_REPLICATED": "", "APP_ENV": "prod"}), db=db)
    assert [x for x in m.validate() if x["level"] == "error"] == []
    m.migrate()
    assert db.rows("SELECT engine, comment FROM system.tables WHERE database = currentDatabase() "
                   "AND name = 'events'") == [{"engine": "MergeTree", "comment": "kept 30 days, prod"}]
    assert db.scalar("SELECT default_expression FROM system.columns WHERE database = currentDatabase() "
                     "AND table = 'events' AND name = 's'") == "'prod'"


def test_validate_warns_about_a_hard_coded_database(migrations, mdir, db):
    write(mdir, "0001_a.sql", "CREATE TABLE appdb.events (a Int8) ENGINE = Memory;\n"
                              "INSERT INTO appdb.events SELECT 1 FROM system.one;\n")
    write(mdir, "0001_a.rollback.sql", "DROP TABLE IF EXISTS appdb.events;\n")
    found = [x for x in migrations.validate(check_sql=False) if x["check"] == "database"]
    assert [x["level"] for x in found] == ["warning", "warning"]  # once per file: system.one is ClickHouse's own
    assert "0001_a.sql line 1: names database appdb, but the configured database is " + db.name in found[0]["message"]
    assert "0001_a.rollback.sql line 1: names database appdb" in found[1]["message"]
