"""Effect-aware resume and undo on a real engine: what each statement changes (ClickHouse's parser), whether it is in
effect (the catalog), and undoing a dirty migration whose rollback file lists its statements in any order.

A run killed with -9 leaves a journal that says which statements ran; ``killed`` writes exactly that journal (the
rows a replayed write-ahead file gives) after running the statements, so each case is one exact kill point.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from ops.clickhouse.client import connect
from ops.core.errors import BadInput, WorkFailed
from ops.migrations import effects
from ops.migrations.effects import Presence
from ops.migrations.files import sha
from ops.migrations.journal import LOG_TABLE, event_row
from ops.migrations.migrator import Migrations
from tests.conftest import clean_environ, inv


def write(directory: Path, name: str, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)


@pytest.fixture
def mdir(tmp_path):
    path = tmp_path / "migrations"
    path.mkdir()
    return path


@pytest.fixture
def told():
    return []


@pytest.fixture
def migrations(settings, db, mdir, told):
    return Migrations(settings.with_overrides(migrations__dir=str(mdir)), db=db, notify=told.append)


def columns(db, table):
    return [r["name"] for r in db.rows("SELECT name FROM system.columns WHERE database = currentDatabase() "
                                       "AND table = {t:String} ORDER BY position", {"t": table})]


def schema(db):
    """Every table's definition (chops' own left out), the database name taken out."""
    return {r["name"]: r["q"].replace(f"{db.name}.", "") for r in db.rows(
        "SELECT name, create_table_query AS q FROM system.tables WHERE database = currentDatabase() "
        "AND NOT startsWith(name, '_chops') ORDER BY name")}


def killed(m: Migrations, mid: str, recorded: list[int], unrecorded: tuple[int, ...] = ()) -> None:
    """What ``kill -9`` leaves: the statements ``recorded`` ran and were journaled, then ``unrecorded`` ran and took
    effect before the process died, without a journal record."""
    f = next(x for x in m.files() if x.id == mid)
    for i in sorted(set(recorded) | set(unrecorded)):
        m.db.command(m.render(f.statements[i].text, f.path))
    attempt = str(uuid.uuid4())
    m.backend.ensure_internal_schema_updated()
    m.db.insert_rows(LOG_TABLE, [event_row(f.id, f.checksum, "apply", "begin", attempt)]
                     + [event_row(f.id, f.checksum, "apply", "statement", attempt, i, f.statement_sha(i))
                        for i in recorded])


def state(m, mid):
    return next(r["state"] for r in m.status() if r["id"] == mid)


# --- what a statement changes, from the engine's parser ---------------------------------------------------------------

def test_effects_are_read_from_the_parser_in_one_query(db):
    statements = [
        "ALTER TABLE a ADD COLUMN env String",
        "alter table `a` drop column if exists env, add index env_idx env type set(10) granularity 1",
        "CREATE TABLE IF NOT EXISTS t (x UInt8, d Decimal(10,2), n Nested(p UInt8)) ENGINE = MergeTree ORDER BY x",
        "CREATE MATERIALIZED VIEW mv TO t AS SELECT 1 AS x",
        "DROP VIEW IF EXISTS mv SYNC",
        "INSERT INTO t (x) VALUES (1), (2)",
        "INSERT INTO other.t SELECT * FROM numbers(3)",
        "RENAME TABLE a TO a_old, b TO b_old",
        "ALTER TABLE a RENAME COLUMN x TO y",
        "ALTER TABLE a MODIFY SETTING index_granularity = 1024",
        "TRUNCATE TABLE t",
        "SELECT sleep(1)",
        "SET max_threads = 1",
        "OPTIMIZE TABLE t FINAL",
        "ALTER TABLE t ADD PROJECTION p (SELECT x ORDER BY x)",
        "CREATE DICTIONARY d (k UInt64, v String) PRIMARY KEY k SOURCE(NULL()) LAYOUT(FLAT()) LIFETIME(0)",
        "EXCHANGE TABLES a AND b",
        "DESCRIBE TABLE t",  # the JSON form cannot serialise it: unknown
    ]
    found = effects.read_effects(db, statements)
    described = [None if e is None else [x.describe() for x in e] for e in found]
    assert described == [
        ["adds column env String to a"],
        ["drops column env from a", "adds index env_idx to a"],
        ["creates table t"],
        ["creates materialized view mv"],
        ["drops view mv"],
        ["inserts rows into t"],
        ["inserts rows into t"],
        ["renames table a to a_old", "renames table b to b_old"],
        ["renames column x of a to y"],
        ["modifies setting index_granularity of a"],
        ["deletes rows of t"],
        ["reads only"],
        ["sets a session setting"],
        ["rewrites the data of t"],
        ["adds projection p to t"],
        ["creates dictionary d"],
        ["exchanges table a and b"],
        None,
    ]
    create = found[2][0]
    assert create.guarded and create.engine == "MergeTree" and create.database == db.name
    assert create.columns == (("x", "UInt8"), ("d", "Decimal(10, 2)"), ("n.p", "Array(UInt8)"))
    assert found[6][0].database == "other" and found[1][0].guarded
    # each text is parsed once per process: asking again costs no query
    again = effects.read_effects(db, statements[:3])
    assert again == found[:3]


# --- in effect? ---------------------------------------------------------------------------------------------------

def test_presence_reads_the_catalog(db):
    db.command("CREATE TABLE ev (day Date, n UInt64, env LowCardinality(String), INDEX n_idx n TYPE minmax) "
               "ENGINE = MergeTree ORDER BY day")
    cases = {
        "CREATE TABLE ev (day Date, n UInt64, env LowCardinality(String)) ENGINE = MergeTree ORDER BY day":
            Presence.IN_EFFECT,
        "CREATE TABLE ev (day Date, n UInt32, env LowCardinality(String)) ENGINE = MergeTree ORDER BY day":
            Presence.ABSENT,  # n has another type
        "CREATE TABLE ev (day Date, n UInt64, env LowCardinality(String)) ENGINE = Log": Presence.ABSENT,
        "CREATE TABLE ev (day Date, n UInt64, env LowCardinality(Strin)) ENGINE = MergeTree": Presence.ABSENT,
        "ALTER TABLE ev ADD COLUMN env LowCardinality(String)": Presence.IN_EFFECT,
        "ALTER TABLE ev ADD COLUMN n BIGINT UNSIGNED": Presence.IN_EFFECT,  # an alias of UInt64
        "ALTER TABLE ev ADD COLUMN env String": Presence.ABSENT,
        "ALTER TABLE ev ADD COLUMN region String, ADD COLUMN env LowCardinality(String)": Presence.PARTLY,
        "ALTER TABLE ev DROP COLUMN region": Presence.IN_EFFECT,
        "ALTER TABLE ev ADD INDEX n_idx n TYPE minmax": Presence.IN_EFFECT,
        "ALTER TABLE ev DROP INDEX n_idx": Presence.ABSENT,
        "ALTER TABLE ev RENAME COLUMN old_env TO env": Presence.IN_EFFECT,
        "DROP TABLE IF EXISTS gone": Presence.IN_EFFECT,
        "RENAME TABLE ev TO ev2": Presence.ABSENT,
        "INSERT INTO ev (day, n) VALUES ('2026-11-01', 1)": Presence.ROWS,
        "CREATE TABLE ev ENGINE = MergeTree ORDER BY day AS SELECT today() AS day": Presence.ROWS,  # killed half full?
        "ALTER TABLE ev MODIFY COLUMN n UInt64": Presence.UNKNOWN,  # running it again changes nothing
    }
    found = effects.read_effects(db, list(cases))
    got = {sql: effects.presence(db, e)[0] for sql, e in zip(cases, found)}
    assert got == cases
    wrong_type = found[list(cases).index("ALTER TABLE ev ADD COLUMN env String")]
    assert "there with type LowCardinality(String)" in effects.presence(db, wrong_type)[1]


# --- undo of a dirty migration ---------------------------------------------------------------------------------------

ENV_UP = ("ALTER TABLE a ADD COLUMN env String;\n"
          "ALTER TABLE b ADD COLUMN env String;\n"
          "ALTER TABLE c ADD COLUMN env Strin;\n")  # a typo: fails when it runs (UNKNOWN_TYPE), parses fine
FORWARD_DOWN = ("ALTER TABLE a DROP COLUMN env;\n"
                "ALTER TABLE b DROP COLUMN env;\n"
                "ALTER TABLE c DROP COLUMN env;\n")
REVERSE_DOWN = ("ALTER TABLE c DROP COLUMN env;\n"
                "ALTER TABLE b DROP COLUMN env;\n"
                "ALTER TABLE a DROP COLUMN env;\n")


def three_tables(mdir):
    write(mdir, "0001_tables.sql", "".join(f"CREATE TABLE {t} (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
                                           for t in "abc"))
    write(mdir, "0001_tables.rollback.sql", "DROP TABLE c;\nDROP TABLE b;\nDROP TABLE a;\n")


@pytest.mark.parametrize("down", [FORWARD_DOWN, REVERSE_DOWN], ids=["forward-order downs", "reverse-order downs"])
def test_undo_runs_the_rollback_statements_of_what_ran_newest_first(migrations, mdir, db, down):
    three_tables(mdir)
    write(mdir, "0002_env.sql", ENV_UP)
    write(mdir, "0002_env.rollback.sql", down)
    with pytest.raises(WorkFailed, match="statement 3 of 3"):
        migrations.migrate()  # statements 1-2 ran
    plan = migrations.rollback(dry_run=True)["plan"]
    assert plan == [{"id": "0002_env",
                     "statements": ["ALTER TABLE b DROP COLUMN env", "ALTER TABLE a DROP COLUMN env"]}]
    assert migrations.rollback()["rolled_back"] == ["0002_env"]
    assert [columns(db, t) for t in "abc"] == [["x"], ["x"], ["x"]]
    assert state(migrations, "0002_env") == "pending"
    (mdir / "0002_env.sql").write_text(ENV_UP.replace("Strin;", "String;"))
    assert migrations.migrate()["applied"] == ["0002_env"]
    assert [columns(db, t) for t in "abc"] == [["x", "env"]] * 3
    # a whole rollback is unchanged: the file, in order
    assert migrations.rollback(dry_run=True)["plan"][0]["statements"] == [s.rstrip(";") for s in down.splitlines()]


def test_a_statement_that_took_effect_without_a_record_is_undone_too(migrations, mdir, db, told):
    three_tables(mdir)
    write(mdir, "0002_env.sql", ENV_UP.replace("Strin;", "String;"))
    write(mdir, "0002_env.rollback.sql", FORWARD_DOWN)
    migrations.migrate(to="0001")
    killed(migrations, "0002_env", recorded=[0], unrecorded=(1,))  # killed after b got its column
    assert state(migrations, "0002_env") == "dirty"
    plan = migrations.rollback(dry_run=True)["plan"][0]["statements"]
    assert plan == ["ALTER TABLE b DROP COLUMN env", "ALTER TABLE a DROP COLUMN env"]
    assert any("statement 2 has no journal record but is in effect" in m for m in told)
    migrations.rollback()
    assert [columns(db, t) for t in "abc"] == [["x"], ["x"], ["x"]]


@pytest.mark.parametrize("way", ["resume", "undo"])
def test_a_statement_that_failed_because_its_change_was_there(migrations, mdir, db, told, way):
    three_tables(mdir)
    write(mdir, "0002_env.sql", ENV_UP.replace("Strin;", "String;"))
    write(mdir, "0002_env.rollback.sql", FORWARD_DOWN)
    migrations.migrate(to="0001")
    db.command("ALTER TABLE b ADD COLUMN env String")  # made by hand before the migration ran
    with pytest.raises(WorkFailed, match="DUPLICATE_COLUMN"):
        migrations.migrate()
    if way == "resume":  # its change is there: recorded as done, and the migration goes on
        migrations.migrate(resume=True)
        assert any("statement 2 (line 2) is in effect already" in m for m in told)
        assert [columns(db, t) for t in "abc"] == [["x", "env"]] * 3
    else:  # it failed, so it did not run: the undo leaves b's column alone
        assert migrations.rollback(dry_run=True)["plan"][0]["statements"] == ["ALTER TABLE a DROP COLUMN env"]
        migrations.rollback()
        assert [columns(db, t) for t in "abc"] == [["x"], ["x", "env"], ["x"]]


def test_an_interrupted_undo_goes_on_with_what_is_left_less_what_is_in_effect(migrations, mdir, db, told):
    three_tables(mdir)
    write(mdir, "0002_env.sql", ENV_UP)
    write(mdir, "0002_env.rollback.sql", FORWARD_DOWN)
    with pytest.raises(WorkFailed):
        migrations.migrate()
    # the undo (rollback statements 2, then 1) was killed after dropping b's column
    f = next(x for x in migrations.files() if x.id == "0002_env")
    db.command("ALTER TABLE b DROP COLUMN env")
    attempt = str(uuid.uuid4())
    db.insert_rows(LOG_TABLE, [event_row(f.id, f.checksum, "rollback", "begin", attempt),
                               event_row(f.id, f.checksum, "rollback", "statement", attempt, 1,
                                         sha(f.rollback_statements[1].text))])
    assert migrations.rollback(dry_run=True)["plan"][0]["statements"] == ["ALTER TABLE a DROP COLUMN env"]
    assert any("statement 3 is in effect already" in m for m in told)  # c never had the column
    migrations.rollback()
    assert state(migrations, "0002_env") == "pending" and columns(db, "a") == ["x"]


EVENTS = ("CREATE TABLE events (day Date, user UInt64, n UInt64) ENGINE = MergeTree ORDER BY (day, user);\n"
          "ALTER TABLE events ADD COLUMN env LowCardinality(String) DEFAULT 'prod';\n"
          "ALTER TABLE events ADD INDEX env_idx env TYPE set(10) GRANULARITY 1;\n"
          "CREATE TABLE daily (day Date, env LowCardinality(String), n UInt64) "
          "ENGINE = SummingMergeTree ORDER BY (day, env);\n"
          "CREATE MATERIALIZED VIEW daily_mv TO daily AS SELECT day, env, sum(n) AS n FROM events GROUP BY day, env;\n")
EVENTS_DOWN = ("DROP VIEW IF EXISTS daily_mv;\n"
               "DROP TABLE IF EXISTS daily;\n"
               "ALTER TABLE events DROP INDEX env_idx;\n"
               "ALTER TABLE events DROP COLUMN env;\n"
               "DROP TABLE IF EXISTS events;\n")


def test_undo_of_table_column_index_and_view_keeps_dependencies_in_order(migrations, mdir, db):
    write(mdir, "0001_events.sql", EVENTS)
    write(mdir, "0001_events.rollback.sql", EVENTS_DOWN)
    killed(migrations, "0001_events", recorded=[0, 1, 2])  # killed before the daily table
    plan = migrations.rollback(dry_run=True)["plan"][0]["statements"]
    # the index goes before its column, the column before its table; nothing about daily or the view
    assert plan == ["ALTER TABLE events DROP INDEX env_idx", "ALTER TABLE events DROP COLUMN env",
                    "DROP TABLE IF EXISTS events"]
    migrations.rollback()
    assert schema(db) == {}


def test_resume_skips_what_is_in_effect_and_ends_as_an_uninterrupted_run(migrations, mdir, db, told, settings):
    write(mdir, "0001_events.sql", EVENTS)
    write(mdir, "0001_events.rollback.sql", EVENTS_DOWN)
    killed(migrations, "0001_events", recorded=[0, 1], unrecorded=(2, 3))  # index and daily made, not recorded
    told.clear()
    assert migrations.migrate(resume=True)["applied"] == ["0001_events"]
    skipped = [m for m in told if "in effect already" in m]
    assert len(skipped) == 2 and "statement 3 (line 3)" in skipped[0] and "statement 4 (line 4)" in skipped[1]
    assert "adds index env_idx to events: there" in skipped[0]
    assert state(migrations, "0001_events") == "applied"
    recorded = [e["statement"] for e in migrations.history("0001_events") if e["event"] == "statement"]
    assert sorted(recorded) == [1, 2, 3, 4, 5]  # the skipped ones are journaled as done (numbered from 1)

    other = connect(settings, database=f"t_{uuid.uuid4().hex[:12]}", create=True)
    try:
        clean = Migrations(settings.with_overrides(migrations__dir=str(mdir)), db=other)
        clean.migrate()
        assert schema(db) == schema(other) and len(schema(db)) == 3
    finally:
        other.command(f"DROP DATABASE IF EXISTS `{other.name}` SYNC")
        other.close()


def test_resume_runs_a_statement_whose_object_differs_and_never_skips_inserts(migrations, mdir, db, told):
    write(mdir, "0001_t.sql", "CREATE TABLE t (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
                              "INSERT INTO t (x) VALUES (1), (2);\n"
                              "INSERT INTO t (x) SELECT number + 10 FROM numbers(3);\n"
                              "ALTER TABLE t ADD COLUMN env String;\n")
    killed(migrations, "0001_t", recorded=[0], unrecorded=(1,))  # the insert ran, its record did not
    db.command("ALTER TABLE t ADD COLUMN env UInt8")  # someone added env by hand, with another type
    with pytest.raises(WorkFailed, match="statement 4 of 4"):
        migrations.migrate(resume=True)
    assert any("statement 2 (line 2) changes rows" in m and "runs again" in m for m in told)
    assert db.scalar("SELECT count() FROM t") == 2 + 2 + 3  # the INSERT ran twice: chops cannot tell rows apart
    db.command("ALTER TABLE t DROP COLUMN env")
    migrations.migrate(resume=True)
    assert state(migrations, "0001_t") == "applied" and columns(db, "t") == ["x", "env"]


REBUILD = ("RENAME TABLE events TO events_old;\n"
           "CREATE TABLE events (day Date, n UInt64, region String) ENGINE = MergeTree ORDER BY (region, day);\n"
           "INSERT INTO events SELECT day, n, region FROM events_old;\n"  # events_old has no region: fails
           "DROP TABLE events_old;\n")
REBUILD_DOWN = ("CREATE TABLE events_old (day Date, n UInt64) ENGINE = MergeTree ORDER BY day;\n"
                "INSERT INTO events_old SELECT day, n FROM events;\n"
                "DROP TABLE events;\n"
                "RENAME TABLE events_old TO events;\n")


def rebuild(mdir):
    write(mdir, "0001_events.sql", "CREATE TABLE events (day Date, n UInt64) ENGINE = MergeTree ORDER BY day;\n"
                                   "INSERT INTO events VALUES ('2026-11-01', 1), ('2026-11-02', 2);\n")
    write(mdir, "0001_events.rollback.sql", "DROP TABLE events;\n")
    write(mdir, "0002_rebuild.sql", REBUILD)
    write(mdir, "0002_rebuild.rollback.sql", REBUILD_DOWN)


def test_an_unpairable_rollback_file_is_refused_and_statements_chooses(migrations, mdir, db, told):
    rebuild(mdir)
    with pytest.raises(WorkFailed, match="statement 3 of 4"):
        migrations.migrate()
    told.clear()
    with pytest.raises(BadInput) as refused:
        migrations.rollback(dry_run=True)
    assert "rollback statement 2 inserts rows into events_old" in refused.value.line()
    assert "--statements" in refused.value.line()
    assert told[0].startswith("0002_rebuild is dirty: statements 1, 2 of 4 ran")
    assert "3. DROP TABLE events  -- undoes statement 2 (ran)" in told[3]
    assert "4. RENAME TABLE events_old TO events  -- undoes statement 1 (ran)" in told[4]
    assert "1. CREATE TABLE events_old" in told[1] and "undoes statement 4 (did not run)" in told[1]
    with pytest.raises(BadInput, match="at most once"):
        migrations.rollback(statements=[3, 3])
    with pytest.raises(BadInput, match="at most once"):
        migrations.rollback(statements=[5])
    migrations.rollback(statements=[3, 4])
    assert state(migrations, "0002_rebuild") == "pending"
    assert db.scalar("SELECT sum(n) FROM events") == 3 and columns(db, "events") == ["day", "n"]
    with pytest.raises(BadInput, match="none is dirty"):
        migrations.rollback(statements=[1])


@pytest.mark.slow
def test_cli_rollback_statements(tmp_path, mdir):
    rebuild(mdir)
    env = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"),
                        CHOPS_ENV_FILE=str(tmp_path / "none.env"), CHOPS_MIGRATIONS__DIR=str(mdir))
    assert inv("db.setup", env=env).returncode == 0
    assert inv("db.migrate", env=env).returncode == 1
    refused = inv("db.rollback", env=env)
    assert refused.returncode == 2, refused.stderr
    assert "4. RENAME TABLE events_old TO events  -- undoes statement 1 (ran)" in refused.stderr
    assert "inv db.rollback --statements" in refused.stderr.splitlines()[-1]
    dry = inv("db.rollback", "--statements", "3,4", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "DROP TABLE events;\n-- statement 2\nRENAME TABLE events_old TO events;" in dry.stdout
    assert inv("db.rollback", "--statements", "3,x", env=env).returncode == 2
    done = inv("db.rollback", "--statements", "3,4", env=env)
    assert done.returncode == 0, done.stderr
    status = {r["id"]: r["state"] for r in json.loads(inv("db.status", "--json", env=env).stdout)}
    assert status == {"0001_events": "applied", "0002_rebuild": "pending"}
    total = inv("db.query", "SELECT sum(n) AS s, count() AS c FROM events", "--json", env=env)
    assert json.loads(total.stdout) == [{"s": 3, "c": 2}]
