"""The database ahead of the code, and a failed migration undone (issue 16), on a real embedded engine.

A newer release applied a migration and the deploy went back to a release without its file: that migration is
``ahead`` (a warning, never drift), and ``db.rollback`` there undoes it from the SQL the journal stored when it
was applied. ``db.migrate --undo-on-failure`` undoes what ran of a migration whose statement fails, so the
database ends clean; where it cannot, it stays dirty and the error says how to repair it. The last test runs the
commands a deploy runs over ssh (``--json``) as a subprocess.
"""

import json

import pytest

from ops.core.errors import BadInput, WorkFailed
from ops.migrations import journal
from ops.migrations.migrator import Migrations
from ops.runtime import health
from tests.conftest import clean_environ, inv
from tests.integration.conftest import states, tables

A = ("CREATE TABLE a (x UInt8) ENGINE = MergeTree ORDER BY x;\n", "DROP TABLE IF EXISTS a SYNC;\n")
B = ("CREATE TABLE b (x UInt8) ENGINE = MergeTree ORDER BY x;\n", "DROP TABLE IF EXISTS b SYNC;\n")
C = ("CREATE TABLE c (x UInt8) ENGINE = MergeTree ORDER BY x;\nALTER TABLE c ADD COLUMN y UInt8;\n",
     "ALTER TABLE c DROP COLUMN IF EXISTS y;\nDROP TABLE IF EXISTS c SYNC;\n")
# a real migration whose third statement fails when it runs (the syntax check before the run passes it)
FAILS_THIRD = ("CREATE TABLE d (x UInt8) ENGINE = MergeTree ORDER BY x;\nALTER TABLE d ADD COLUMN y UInt8;\n"
               "INSERT INTO no_such_table VALUES (1);\n")
FAILS_THIRD_ROLLBACK = "DROP TABLE IF EXISTS d SYNC;\nALTER TABLE d DROP COLUMN IF EXISTS y;\n"  # not in mirror order


def write(mdir, mid, up, down=None):
    mdir.mkdir(exist_ok=True)
    (mdir / f"{mid}.sql").write_text(up)
    if down is not None:
        (mdir / f"{mid}.rollback.sql").write_text(down)


def remove(mdir, mid):
    """What a release without ``mid`` looks like: neither of its files."""
    for path in mdir.glob(f"{mid}.*"):
        path.unlink()



def three_applied_then_the_third_gone(m, mdir):
    for mid, (up, down) in zip(("0001_a", "0002_b", "0003_c"), (A, B, C)):
        write(mdir, mid, up, down)
    assert m.migrate()["applied"] == ["0001_a", "0002_b", "0003_c"]
    remove(mdir, "0003_c")


def test_an_applied_migration_without_its_file_is_ahead_a_warning_not_drift(migrations, mdir, db):
    three_applied_then_the_third_gone(migrations, mdir)
    assert states(migrations) == {"0001_a": "applied", "0002_b": "applied", "0003_c": "ahead"}
    row = next(r for r in migrations.status() if r["id"] == "0003_c")
    assert row["note"] == "applied, file not in this release" and row["rollback"] is True
    findings = migrations.validate()
    assert [(f["level"], f["check"], f["migration"]) for f in findings] == [("warning", "ahead", "0003_c")]
    assert findings[0]["message"].startswith("database is ahead of this release: 0003_c applied, file not in "
                                             "this release")
    verdict = health.migrations_result(migrations.status(), findings)
    assert verdict["status"] == "warn" and verdict["reason"].startswith(
        "database is ahead of this release: 0003_c applied, file not in this release")
    assert health.verdict([verdict])["healthy"]
    gathered = {c["name"]: c for c in health.checks(migrations.settings.with_overrides(clickhouse__database=db.name))}
    assert gathered["migrations"]["status"] == "warn" and gathered["migrations"]["reason"] == verdict["reason"]
    # drift stays "same id, different content"
    (mdir / "0002_b.sql").write_text(B[0] + "-- edited\n")
    assert states(migrations)["0002_b"] == "drifted"


def test_rollback_undoes_an_ahead_migration_from_the_sql_stored_when_it_was_applied(msettings, db, mdir):
    # rendered as it was at apply time: this environment named the table c_blue; the older release names none
    write(mdir, "0001_a", *A)
    write(mdir, "0002_t", "CREATE TABLE {{.NAME}} (x UInt8) ENGINE = MergeTree ORDER BY x;\n",
          "DROP TABLE IF EXISTS {{.NAME}} SYNC;\n")
    newer = Migrations(msettings.with_overrides(migrations__variables={"NAME": "c_blue"}), db=db)
    assert newer.migrate()["applied"] == ["0001_a", "0002_t"]
    remove(mdir, "0002_t")
    older = Migrations(msettings, db=db)
    dry = older.rollback(dry_run=True)
    assert dry["plan"] == [{"id": "0002_t", "statements": ["DROP TABLE IF EXISTS c_blue SYNC"]}]
    assert tables(db) == ["a", "c_blue"]
    assert older.rollback()["rolled_back"] == ["0002_t"]
    assert tables(db) == ["a"]
    assert states(older) == {"0001_a": "applied"}  # rolled back and not in this tree: nothing to say about it
    assert older.validate() == []


def test_rollback_to_and_count_take_ahead_migrations_newest_first(migrations, mdir, db):
    three_applied_then_the_third_gone(migrations, mdir)
    write(mdir, "0004_e", "CREATE TABLE e (x UInt8) ENGINE = MergeTree ORDER BY x;\n", "DROP TABLE e SYNC;\n")
    assert migrations.migrate()["applied"] == ["0004_e"]
    remove(mdir, "0004_e")
    assert [p["id"] for p in migrations.rollback(to="0003", dry_run=True)["plan"]] == ["0004_e"]
    assert [p["id"] for p in migrations.rollback(to="0002_b", dry_run=True)["plan"]] == ["0004_e", "0003_c"]
    assert migrations.rollback(count=1)["rolled_back"] == ["0004_e"]
    assert migrations.rollback(to="0002_b")["rolled_back"] == ["0003_c"]
    assert tables(db) == ["a", "b"]
    assert states(migrations) == {"0001_a": "applied", "0002_b": "applied"}


def test_an_old_journal_without_stored_sql_is_read_refused_clearly_and_evolved(migrations, msettings, mdir, db):
    three_applied_then_the_third_gone(migrations, mdir)
    db.command("ALTER TABLE _chops_migration_log DROP COLUMN sql, DROP COLUMN rollback_sql")  # as chops made it before
    older = Migrations(msettings, db=db)
    assert states(older)["0003_c"] == "ahead"
    assert next(r for r in older.status() if r["id"] == "0003_c")["note"] == (
        "applied, file not in this release (applied before chops stored rollback SQL)")
    for how in ({}, {"to": "0001_a"}):
        with pytest.raises(BadInput) as refused:
            older.rollback(**how)
        assert refused.value.line() == ("0003_c: applied before chops stored rollback SQL; its file is not in this "
                                        "release; roll back from a release that has it")
    assert tables(db) == ["a", "b", "c"]  # nothing was rolled back
    # the next writer adds the columns back; what it applies from then on is stored
    write(mdir, "0004_e", "CREATE TABLE e (x UInt8) ENGINE = MergeTree ORDER BY x;\n", "DROP TABLE e SYNC;\n")
    assert older.migrate()["applied"] == ["0004_e"]
    remove(mdir, "0004_e")
    assert Migrations(msettings, db=db).rollback()["rolled_back"] == ["0004_e"]
    assert "e" not in tables(db)


def test_a_pending_migration_numbered_below_an_ahead_one_is_applied_and_that_is_said(msettings, db, mdir):
    said = []
    m = Migrations(msettings, db=db, notify=said.append)
    three_applied_then_the_third_gone(m, mdir)
    write(mdir, "0003_other", "CREATE TABLE o (x UInt8) ENGINE = MergeTree ORDER BY x;\n", "DROP TABLE o SYNC;\n")
    said.clear()
    result = m.migrate()
    assert result["applied"] == ["0003_other"] and result["ahead"] == ["0003_c"]
    assert said[:2] == ["database is ahead of this release: 0003_c applied, file not in this release; it stays "
                        "applied", "0003_other is pending and not numbered after 0003_c, which is applied already: "
                        "applied all the same"]
    assert states(m) == {"0001_a": "applied", "0002_b": "applied", "0003_other": "applied", "0003_c": "ahead"}


def test_undo_on_failure_undoes_what_ran_of_the_failed_migration(migrations, mdir, db):
    write(mdir, "0001_a", *A)
    write(mdir, "0002_d", FAILS_THIRD, FAILS_THIRD_ROLLBACK)
    with pytest.raises(WorkFailed) as failed:
        migrations.migrate(undo_on_failure=True)
    details = failed.value.details
    assert {k: details[k] for k in ("migration", "statement", "undone", "state", "repair", "applied")} == {
        "migration": "0002_d", "statement": 3, "undone": True, "state": "clean", "repair": "inv db.migrate",
        "applied": ["0001_a"]}
    assert "statement 3 of 3 (line 3) failed" in failed.value.message
    assert "undid what ran (statements 1, 2, with 2 rollback statements): 0002_d is not applied" in failed.value.message
    assert tables(db) == ["a"]  # d is gone, a (applied before it) stays
    assert states(migrations) == {"0001_a": "applied", "0002_d": "pending"}
    events = [(r["operation"], r["event"]) for r in migrations.history("0002_d")]
    assert events == [("apply", "begin"), ("apply", "statement"), ("apply", "statement"), ("apply", "failed"),
                      ("rollback", "begin"), ("rollback", "statement"), ("rollback", "statement"),
                      ("rollback", "done")]
    write(mdir, "0002_d", FAILS_THIRD.replace("no_such_table VALUES (1)", "d VALUES (1, 2)"))  # fixed
    assert migrations.migrate()["applied"] == ["0002_d"]
    assert db.scalar("SELECT y FROM d") == 2


def test_undo_on_failure_that_cannot_undo_leaves_it_dirty_and_names_the_repair(migrations, mdir, db):
    write(mdir, "0001_d", FAILS_THIRD)  # no rollback file: nothing says how to undo it
    with pytest.raises(WorkFailed) as failed:
        migrations.migrate(undo_on_failure=True)
    details = failed.value.details
    assert (details["undone"], details["state"], details["statement"], details["repair"]) == (
        False, "dirty", 3, "inv db.migrate --resume")
    assert "(statements 1, 2 of it ran and stay); it could not be undone: 0001_d is dirty and has no rollback " \
           "file" in failed.value.message
    assert "undo statements 1, 2 by hand, then: inv db.unmark 0001_d" in failed.value.hint
    assert states(migrations) == {"0001_d": "dirty"}
    assert tables(db) == ["d"]


def test_undo_on_failure_whose_undo_fails_says_it_is_dirty_from_the_rollback(migrations, mdir, db):
    write(mdir, "0001_d", "CREATE TABLE d (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
                          "ALTER TABLE d ADD COLUMN y UInt8, ADD COLUMN z UInt8 DEFAULT y + 1;\n"
                          "INSERT INTO no_such_table VALUES (1);\n",
          "ALTER TABLE d DROP COLUMN y;\nDROP TABLE IF EXISTS d SYNC;\n")  # z depends on y: the drop fails
    with pytest.raises(WorkFailed) as failed:
        migrations.migrate(undo_on_failure=True)
    details = failed.value.details
    assert (details["undone"], details["state"], details["statement"], details["repair"]) == (
        False, "dirty", 3, "inv db.rollback")
    assert "its undo failed too: " in failed.value.message and "because column `z` depends on it" in details["undo_error"]
    row = migrations.status()[0]
    assert (row["state"], row["note"].split(";")[0]) == ("dirty", "rollback stopped after 0 of 2 statements")


def test_a_newer_release_s_dirty_migration_is_undone_from_an_older_release(migrations, msettings, mdir, db):
    # killed or failed half way without --undo-on-failure, then the deploy went back to a release without its file
    write(mdir, "0001_a", *A)
    write(mdir, "0002_d", FAILS_THIRD, FAILS_THIRD_ROLLBACK)
    with pytest.raises(WorkFailed):
        migrations.migrate()
    remove(mdir, "0002_d")
    older = Migrations(msettings, db=db)
    assert states(older) == {"0001_a": "applied", "0002_d": "dirty"}
    assert older.rollback(dry_run=True)["plan"] == [{"id": "0002_d", "statements": [
        "ALTER TABLE d DROP COLUMN IF EXISTS y", "DROP TABLE IF EXISTS d SYNC"]}]
    assert older.rollback()["rolled_back"] == ["0002_d"]
    assert tables(db) == ["a"] and states(older) == {"0001_a": "applied"}


def test_the_journal_gains_its_new_columns_on_a_cluster_too():
    assert journal.evolve_sql("c1", {"id", "event"}) == (
        "ALTER TABLE _chops_migration_log ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS sql String, "
        "ADD COLUMN IF NOT EXISTS rollback_sql String")
    assert journal.evolve_sql(None, {"sql", "rollback_sql"}) is None


def test_a_failure_without_undo_carries_the_same_details(migrations, mdir):
    write(mdir, "0001_d", FAILS_THIRD, FAILS_THIRD_ROLLBACK)
    with pytest.raises(WorkFailed) as failed:
        migrations.migrate()
    assert {k: failed.value.details[k] for k in ("migration", "statement", "undone", "state", "repair")} == {
        "migration": "0001_d", "statement": 3, "undone": False, "state": "dirty", "repair": "inv db.rollback"}
    assert migrations.status()[0]["repair"] == "inv db.rollback"  # db.status names it too
    assert migrations.rollback()["rolled_back"] == ["0001_d"]  # and it settles it
    assert migrations.status()[0]["repair"] is None and tables(migrations.db) == []


@pytest.mark.slow
def test_the_commands_a_deploy_runs_answer_json_on_success_and_failure(tmp_path, mdir):
    env = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"),
                        CHOPS_ENV_FILE=str(tmp_path / "none.env"), CHOPS_MIGRATIONS__DIR=str(mdir))
    for mid, (up, down) in zip(("0001_a", "0002_b", "0003_c"), (A, B, C)):
        write(mdir, mid, up, down)
    assert inv("db.setup", env=env).returncode == 0
    assert inv("db.migrate", "--json", env=env).returncode == 0
    remove(mdir, "0003_c")  # the deploy went back to a release without it
    status = inv("db.status", "--json", "--check", env=env)
    assert status.returncode == 0, status.stderr
    assert {r["id"]: r["state"] for r in json.loads(status.stdout)}["0003_c"] == "ahead"
    text = inv("db.status", env=env)
    assert text.returncode == 0 and "warning: database is ahead of this release: 0003_c applied" in text.stderr
    dry = inv("db.rollback", "--to", "0002_b", "--dry-run", "--json", env=env)
    assert json.loads(dry.stdout)["plan"] == [{"id": "0003_c", "statements": [
        "ALTER TABLE c DROP COLUMN IF EXISTS y", "DROP TABLE IF EXISTS c SYNC"]}]
    done = inv("db.rollback", "--to", "0002_b", "--json", env=env)
    assert done.returncode == 0 and json.loads(done.stdout)["rolled_back"] == ["0003_c"]
    assert [r["state"] for r in json.loads(inv("db.status", "--json", env=env).stdout)] == ["applied", "applied"]

    write(mdir, "0004_d", FAILS_THIRD, FAILS_THIRD_ROLLBACK)
    failed = inv("db.migrate", "--undo-on-failure", "--json", env=env)
    answer = json.loads(failed.stdout)  # one JSON document on stdout
    assert failed.returncode == 1 and failed.stderr.count("error: ") == 1
    assert {k: answer[k] for k in ("migration", "statement", "undone", "state", "repair")} == {
        "migration": "0004_d", "statement": 3, "undone": True, "state": "clean", "repair": "inv db.migrate"}
    assert "0004_d.sql statement 3 of 3 (line 3) failed" in answer["error"]
    assert json.loads(inv("db.status", "--json", env=env).stdout)[-1]["state"] == "pending"

    remove(mdir, "0004_d")
    write(mdir, "0004_d", FAILS_THIRD)  # no rollback file: left dirty, and said so
    failed = inv("db.migrate", "--undo-on-failure", "--json", env=env)
    answer = json.loads(failed.stdout)
    assert failed.returncode == 1 and (answer["undone"], answer["state"]) == (False, "dirty")
    refused = inv("db.migrate", "--undo-on-failure", "--json", env=env)  # a dirty database: refused, and said how
    answer = json.loads(refused.stdout)
    assert refused.returncode == 1 and (answer["migration"], answer["state"], answer["repair"]) == (
        "0004_d", "dirty", "inv db.migrate --resume")
    checked = inv("db.status", "--json", "--check", env=env)
    answer = json.loads(checked.stdout)
    assert checked.returncode == 1 and answer["error"].startswith("1 migration not applied cleanly: 0004_d (dirty)")
    assert [r["state"] for r in answer["migrations"]] == ["applied", "applied", "dirty"]
    broken = inv("db.status", "--json", env={**env, "CHOPS_MIGRATIONS__DIR": str(tmp_path / "none")})
    assert broken.returncode == 2 and "does not exist" in json.loads(broken.stdout)["error"]
