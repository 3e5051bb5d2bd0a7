"""Importing golang-migrate, goose, dbmate and plain numbered directories: layout, order, ids that keep the original
version, downs paired by version, no-op rollbacks, dbmate files with several sections, goose ENVSUB blocks, the
template variables a set uses, collisions with existing migrations, the databases a statement names, idempotence,
bad input."""

import json
from pathlib import Path

import pytest

from ops.core.errors import BadInput
from ops.migrations.importers import import_migrations
from ops.migrations.objects import Action, Touch, database_problems, databases_named, touches
from ops.migrations.sqlsplit import split_statements


def write(directory, files):
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def listing(directory):
    return sorted(p.name for p in directory.iterdir())


def statements(path):
    return [s.text for s in split_statements(path.read_text())]


CORPORA = Path(__file__).resolve().parent.parent / "corpora"


GOLANG_MIGRATE = {
    "20230101120000_create_events.up.sql": (
        "CREATE TABLE events ON CLUSTER {{.CLUSTER}}\n"
        "(\n    ts DateTime,\n    msg String DEFAULT 'a;b'\n)\n"
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')\n"
        "ORDER BY ts;\n\n"
        "CREATE TABLE events_all ON CLUSTER {{ .CLUSTER }} AS events\n"
        "ENGINE = Distributed({{.CLUSTER}}, currentDatabase(), events, rand());\n\n\n"
    ),
    "20230101120000_create_events.down.sql": (
        "DROP TABLE IF EXISTS events_all ON CLUSTER {{.CLUSTER}};\n"
        "DROP TABLE IF EXISTS events ON CLUSTER {{.CLUSTER}};\n"
    ),
    "20230315093000_Add-Users.up.sql": (
        "CREATE TABLE users (id UInt64, name String) ENGINE = MergeTree ORDER BY id;\n"
        "INSERT INTO users VALUES (1, 'root');\n"
    ),
    "20230315093000_Add-Users.down.sql": "DROP TABLE users;\n",
    "20240601000000_add_index.up.sql": "ALTER TABLE users ADD INDEX name_idx name TYPE bloom_filter GRANULARITY 1;\n",
    "README.md": "not a migration\n",
}

GOOSE = {
    "00001_create_events.sql": (
        "-- +goose Up\n"
        "-- +goose StatementBegin\n"
        "CREATE TABLE events (ts DateTime, msg String) ENGINE = MergeTree ORDER BY ts;\n"
        "-- +goose StatementEnd\n"
        "CREATE VIEW events_today AS SELECT * FROM events WHERE toDate(ts) = today();\n"
        "\n"
        "-- +goose Down\n"
        "-- +goose StatementBegin\n"
        "DROP VIEW events_today;\n"
        "DROP TABLE events;\n"
        "-- +goose StatementEnd\n"
    ),
    "00002_users.sql": (
        "-- A comment before the annotations is fine.\n"
        "-- +goose NO TRANSACTION\n"
        "-- +goose up\n"
        "CREATE TABLE users (id UInt64) ENGINE = MergeTree ORDER BY id;\n"
        "INSERT INTO users VALUES (1);\n"
        "-- +goose down\n"
        "DROP TABLE users;\n"
    ),
    "00003_no_down.sql": "-- +goose Up\nOPTIMIZE TABLE events FINAL;\n",
}

DBMATE = {
    "20230101000000_create_events.sql": (
        "-- migrate:up\n"
        "CREATE TABLE events (ts DateTime) ENGINE = MergeTree ORDER BY ts;\n"
        "ALTER TABLE events ADD COLUMN msg String DEFAULT '-- migrate:down';\n"
        "\n"
        "-- migrate:down\n"
        "ALTER TABLE events DROP COLUMN msg;\n"
        "DROP TABLE events;\n"
    ),
    "20230102000000_create_users.sql": (
        "-- migrate:up transaction:false\n"
        "CREATE TABLE users (id UInt64) ENGINE = MergeTree ORDER BY id;\n"
        "CREATE TABLE users_all AS users ENGINE = Distributed({{.CLUSTER}}, default, users);\n"
        "-- migrate:down transaction:false\n"
        "DROP TABLE users_all;\n"
        "DROP TABLE users;\n"
    ),
}


# --- golang-migrate ----------------------------------------------------------------------------------------------

@pytest.mark.smoke
def test_golang_migrate(tmp_path):
    source = write(tmp_path / "src", GOLANG_MIGRATE)
    dest = tmp_path / "migrations"
    plan = import_migrations(source, dest, "golang-migrate")

    assert plan == [
        {"source": ["20230101120000_create_events.up.sql", "20230101120000_create_events.down.sql"],
         "version": "20230101120000", "id": "0001_20230101120000_create_events",
         "files": ["0001_20230101120000_create_events.sql", "0001_20230101120000_create_events.rollback.sql"],
         "rollback": True, "noop_rollback": False, "action": "write", "notes": [], "collisions": [],
         "variables": []},
        {"source": ["20230315093000_Add-Users.up.sql", "20230315093000_Add-Users.down.sql"],
         "version": "20230315093000", "id": "0002_20230315093000_add_users",
         "files": ["0002_20230315093000_add_users.sql", "0002_20230315093000_add_users.rollback.sql"],
         "rollback": True, "noop_rollback": False, "action": "write", "notes": [], "collisions": [],
         "variables": []},
        {"source": ["20240601000000_add_index.up.sql"], "version": "20240601000000",
         "id": "0003_20240601000000_add_index",
         "files": ["0003_20240601000000_add_index.sql", "0003_20240601000000_add_index.rollback.sql"],
         "rollback": True, "noop_rollback": True, "action": "write", "notes": [], "collisions": [],
         "variables": []},
    ]
    assert listing(dest) == sorted(name for row in plan for name in row["files"])

    apply = (dest / "0001_20230101120000_create_events.sql").read_text()
    assert apply.startswith("-- imported from golang-migrate: 20230101120000_create_events.up.sql\n\nCREATE TABLE")
    assert apply.endswith("rand());\n")  # trailing blank lines trimmed, one newline
    assert "{{" not in apply and apply.count("{cluster}") == 3
    assert "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'" in apply  # server macros untouched
    assert len(statements(dest / "0001_20230101120000_create_events.sql")) == 2

    rollback = (dest / "0001_20230101120000_create_events.rollback.sql").read_text()
    assert rollback == ("-- imported from golang-migrate: 20230101120000_create_events.down.sql\n\n"
                        "DROP TABLE IF EXISTS events_all ON CLUSTER {cluster};\n"
                        "DROP TABLE IF EXISTS events ON CLUSTER {cluster};\n")
    assert statements(dest / "0002_20230315093000_add_users.sql") == [
        "CREATE TABLE users (id UInt64, name String) ENGINE = MergeTree ORDER BY id",
        "INSERT INTO users VALUES (1, 'root')"]


def test_golang_migrate_without_down_file_gets_a_noop_rollback(tmp_path):
    # golang-migrate steps down over a version without a .down.sql running nothing ("empty" migration).
    import_migrations(write(tmp_path / "src", GOLANG_MIGRATE), tmp_path / "dest", "golang-migrate")
    noop = tmp_path / "dest" / "0003_20240601000000_add_index.rollback.sql"
    assert noop.read_text() == (
        "-- imported from golang-migrate: 20240601000000_add_index.up.sql\n\n"
        "-- golang-migrate has no 20240601000000_add_index.down.sql for this migration: migrating down over it "
        "runs nothing.\n-- This rollback runs nothing either, on purpose (no statements below).\n-- chops: nothing to undo\n")
    assert statements(noop) == []


def test_golang_migrate_orders_by_numeric_version(tmp_path):
    source = write(tmp_path / "src", {
        "10_y.up.sql": "SELECT 10;\n", "9_x.up.sql": "SELECT 9;\n", "100_z.up.sql": "SELECT 100;\n",
        "0011_w.up.sql": "SELECT 11;\n",
    })
    plan = import_migrations(source, tmp_path / "dest", "golang-migrate")
    assert [(row["version"], row["id"]) for row in plan] == [
        ("9", "0001_9_x"), ("10", "0002_10_y"), ("0011", "0003_0011_w"), ("100", "0004_100_z")]
    assert statements(tmp_path / "dest" / "0003_0011_w.sql") == ["SELECT 11"]


def test_golang_migrate_empty_down_file_still_gives_a_rollback(tmp_path):
    source = write(tmp_path / "src", {"1_init.up.sql": "SELECT 1;\n", "1_init.down.sql": "\n"})
    plan = import_migrations(source, tmp_path / "dest", "golang-migrate")
    assert plan[0]["rollback"] is True and plan[0]["noop_rollback"] is False
    rollback = (tmp_path / "dest" / "0001_1_init.rollback.sql").read_text()
    assert rollback == "-- imported from golang-migrate: 1_init.down.sql\n"


def test_golang_migrate_pairs_a_down_by_version_alone_and_says_so(tmp_path):
    # golang-migrate keys both directions by the parsed version: a down whose title (or spelling of the version)
    # differs is still that version's down. chops used to call this a duplicate version.
    source = write(tmp_path / "src", {
        "000145_reacreate_x.up.sql": "CREATE TABLE x (a Int8) ENGINE = Memory;\n",
        "000145_recreate_x.down.sql": "DROP TABLE x;\n",
        "000146_y.up.sql": "SELECT 1;\n", "146_y.down.sql": "SELECT -1;\n",
        "000147_z.up.sql": "SELECT 2;\n", "000147_z.down.sql": "SELECT -2;\n",
    })
    dest = tmp_path / "dest"
    plan = import_migrations(source, dest, "golang-migrate")
    assert [(r["source"], r["id"], r["noop_rollback"]) for r in plan] == [
        (["000145_reacreate_x.up.sql", "000145_recreate_x.down.sql"], "0001_000145_reacreate_x", False),
        (["000146_y.up.sql", "146_y.down.sql"], "0002_000146_y", False),
        (["000147_z.up.sql", "000147_z.down.sql"], "0003_000147_z", False)]
    assert [r["notes"] for r in plan] == [
        ["000145_recreate_x.down.sql is the rollback of 000145_reacreate_x.up.sql: golang-migrate pairs an up and a "
         "down by the number of the version alone, and the titles differ"],
        ["146_y.down.sql is the rollback of 000146_y.up.sql: golang-migrate pairs an up and a down by the number of "
         "the version alone, and the versions as written differ"],
        []]
    assert statements(dest / "0001_000145_reacreate_x.rollback.sql") == ["DROP TABLE x"]
    assert (dest / "0001_000145_reacreate_x.rollback.sql").read_text().startswith(
        "-- imported from golang-migrate: 000145_recreate_x.down.sql\n")
    assert [r["action"] for r in import_migrations(source, dest, "golang-migrate")] == ["skip"] * 3


def test_golang_migrate_templates_corpus(tmp_path):
    dest = tmp_path / "dest"
    plan = import_migrations(CORPORA / "golang-migrate-templates", dest, "golang-migrate")
    assert [r["id"] for r in plan] == [
        "0001_000001_init_database", "0002_000002_events", "0003_000003_events_daily", "0004_000004_events_session_id",
        "0005_000005_reacreate_sessions", "0006_000006_events_ttl_and_comment"]
    assert [len(r["notes"]) for r in plan] == [0, 0, 0, 0, 1, 0]  # the typo'd title of 000005's up
    assert [[(v["name"], v["required"]) for v in r["variables"]] for r in plan] == [
        [("APP_CLUSTER", True)], [("APP_CLUSTER", True), ("APP_REPLICATED", True)],
        [("APP_CLUSTER", True), ("APP_REPLICATED", True)], [("APP_CLUSTER", True)],
        [("APP_CLUSTER", True), ("APP_REPLICATED", True)],
        [("APP_CLUSTER", True), ("EVENTS_TTL_DAYS", True), ("APP_ENV", True)]]
    apply = (dest / "0002_000002_events.sql").read_text()
    assert "ON CLUSTER {{.APP_CLUSTER}}" in apply and "ENGINE = {{.APP_REPLICATED}}MergeTree" in apply  # as written
    assert "ON CLUSTER {{ .APP_CLUSTER }}" in (dest / "0003_000003_events_daily.sql").read_text()


# --- goose ---------------------------------------------------------------------------------------------------

def test_goose(tmp_path):
    source = write(tmp_path / "src", GOOSE)
    dest = tmp_path / "dest"
    plan = import_migrations(source, dest, "goose")

    assert [(r["source"], r["version"], r["id"], r["noop_rollback"]) for r in plan] == [
        (["00001_create_events.sql"], "00001", "0001_00001_create_events", False),
        (["00002_users.sql"], "00002", "0002_00002_users", False),
        (["00003_no_down.sql"], "00003", "0003_00003_no_down", True),
    ]
    assert (dest / "0001_00001_create_events.sql").read_text() == (
        "-- imported from goose: 00001_create_events.sql\n\n"
        "CREATE TABLE events (ts DateTime, msg String) ENGINE = MergeTree ORDER BY ts;\n"
        "CREATE VIEW events_today AS SELECT * FROM events WHERE toDate(ts) = today();\n"
    )
    assert (dest / "0001_00001_create_events.rollback.sql").read_text() == (
        "-- imported from goose: 00001_create_events.sql\n\nDROP VIEW events_today;\nDROP TABLE events;\n"
    )
    assert statements(dest / "0002_00002_users.sql") == [
        "CREATE TABLE users (id UInt64) ENGINE = MergeTree ORDER BY id", "INSERT INTO users VALUES (1)"]
    assert "goose" not in (dest / "0002_00002_users.sql").read_text().split("\n", 1)[1]
    assert statements(dest / "0002_00002_users.rollback.sql") == ["DROP TABLE users"]


def test_goose_without_down_gets_a_rollback_that_says_it_runs_nothing(tmp_path):
    import_migrations(write(tmp_path / "src", GOOSE), tmp_path / "dest", "goose")
    noop = tmp_path / "dest" / "0003_00003_no_down.rollback.sql"
    assert noop.read_text() == (
        "-- imported from goose: 00003_no_down.sql\n\n"
        "-- 00003_no_down.sql has no `-- +goose Down` section: goose rolls this migration back as a no-op.\n"
        "-- This rollback runs nothing either, on purpose (no statements below).\n-- chops: nothing to undo\n")
    assert statements(noop) == []  # the migrator reads it as a rollback with no statements


def test_goose_statement_end_ends_a_statement_without_semicolon(tmp_path):
    source = write(tmp_path / "src", {"00001_x.sql": (
        "-- +goose Up\n"
        "-- +goose StatementBegin\n"
        "CREATE TABLE a (x UInt8) ENGINE = Memory -- no semicolon: goose ends it at StatementEnd\n"
        "-- +goose StatementEnd\n"
        "CREATE TABLE b (x UInt8) ENGINE = Memory;\n"
        "-- +goose Down\n"
        "-- +goose StatementBegin\n"
        "DROP TABLE b\n"
        "-- +goose StatementEnd\n"
        "DROP TABLE a\n"
    )})
    import_migrations(source, tmp_path / "dest", "goose")
    apply = (tmp_path / "dest" / "0001_00001_x.sql").read_text()
    assert "ENGINE = Memory; -- no semicolon" in apply  # the `;` goes before the comment, not into it
    assert statements(tmp_path / "dest" / "0001_00001_x.sql") == [
        "CREATE TABLE a (x UInt8) ENGINE = Memory", "CREATE TABLE b (x UInt8) ENGINE = Memory"]
    assert statements(tmp_path / "dest" / "0001_00001_x.rollback.sql") == ["DROP TABLE b", "DROP TABLE a"]


def test_goose_envsub_blocks_are_kept_and_carried_into_each_section(tmp_path):
    # goose expands ${NAME} between `-- +goose ENVSUB ON` and `OFF`; chops used to refuse the annotation.
    dest = tmp_path / "dest"
    plan = import_migrations(CORPORA / "goose-envsub", dest, "goose")
    assert [r["id"] for r in plan] == [
        "0001_20240110090000_create_spans", "0002_20240110091500_trace_durations", "0003_20240201120000_span_events",
        "0004_20240305100000_spans_comment"]
    # ENVSUB switched on before `-- +goose Up` holds through the Down section too: both files start with it
    for name in ("0002_20240110091500_trace_durations.sql", "0002_20240110091500_trace_durations.rollback.sql"):
        assert (dest / name).read_text().split("\n")[2] == "-- +goose ENVSUB ON", name
    # markers inside a statement stay where they are, so only the lines goose expands are expanded
    apply = (dest / "0003_20240201120000_span_events.sql").read_text()
    assert "ALTER TABLE\n-- +goose ENVSUB ON\n    ${CLICKHOUSE_DATABASE?" in apply
    [statement] = split_statements(apply)
    assert [apply.split("\n")[n - 1].strip()[:23] for n in sorted(statement.envsub)] == ["${CLICKHOUSE_DATABASE?C"]
    for path in dest.iterdir():
        for stmt in split_statements(path.read_text()):
            assert ("${" in stmt.text or "$CLICKHOUSE" in stmt.text) == bool(stmt.envsub) or "NOT_EXPANDED" in stmt.text


def test_goose_statement_blocks_corpus(tmp_path):
    dest = tmp_path / "dest"
    plan = import_migrations(CORPORA / "goose-statements", dest, "goose")
    assert [(r["id"], r["noop_rollback"]) for r in plan] == [
        ("0001_00001_create_sessions", False), ("0002_00002_session_stats", False),
        ("0003_00003_sessions_country", False), ("0004_00004_seed_test_session", True)]
    assert [len(statements(dest / f"{r['id']}.sql")) for r in plan] == [1, 2, 2, 1]
    assert [len(statements(dest / f"{r['id']}.rollback.sql")) for r in plan] == [1, 2, 2, 0]
    mv = statements(dest / "0002_00002_session_stats.sql")[1]
    assert mv.startswith("CREATE MATERIALIZED VIEW") and mv.endswith("GROUP BY day")  # ended at StatementEnd
    assert "splitByChar(';', user_agent)" in mv


def test_goose_go_migration_is_bad_input(tmp_path):
    source = write(tmp_path / "src", {**GOOSE, "00004_backfill.go": "package migrations\n"})
    with pytest.raises(BadInput, match="goose Go migrations cannot be converted: 00004_backfill.go"):
        import_migrations(source, tmp_path / "dest", "goose")
    assert not (tmp_path / "dest").exists()  # nothing written


@pytest.mark.parametrize("text, fragment", [
    ("CREATE TABLE t (x UInt8) ENGINE = Memory;\n", "has no `-- +goose Up` section"),
    ("SELECT 1;\n-- +goose Up\nSELECT 2;\n", "has SQL before its `-- +goose Up` line"),
    ("-- +goose Up\nSELECT 1;\n-- +goose Up\nSELECT 2;\n", "line 3: a second up section"),
    ("-- +goose Up\nSELECT 1;\n-- +goose Down\nSELECT 2;\n-- +goose Down\n", "line 5: a second down section"),
    ("-- +goose ENVSUBST ON\n-- +goose Up\nSELECT '${X}';\n",  # goose's spelling in its 3.18 betas only
     "line 1: goose annotation '-- +goose ENVSUBST ON' is not supported"),
    ("-- +goose Up\nSELECT 'open;\n", "unterminated string starting on line 2"),
], ids=["no-up", "sql-before-up", "two-ups", "two-downs", "envsub", "unterminated"])
def test_goose_bad_files(tmp_path, text, fragment):
    source = write(tmp_path / "src", {"00001_x.sql": text})
    with pytest.raises(BadInput) as caught:
        import_migrations(source, tmp_path / "dest", "goose")
    assert caught.value.message.startswith("00001_x.sql")
    assert fragment in caught.value.message


# --- dbmate --------------------------------------------------------------------------------------------------

def test_dbmate(tmp_path):
    source = write(tmp_path / "src", DBMATE)
    dest = tmp_path / "dest"
    plan = import_migrations(source, dest, "dbmate")

    assert [(r["version"], r["id"], r["noop_rollback"], r["action"]) for r in plan] == [
        ("20230101000000", "0001_20230101000000_create_events", False, "write"),
        ("20230102000000", "0002_20230102000000_create_users", False, "write")]
    assert (dest / "0001_20230101000000_create_events.sql").read_text() == (
        "-- imported from dbmate: 20230101000000_create_events.sql\n\n"
        "CREATE TABLE events (ts DateTime) ENGINE = MergeTree ORDER BY ts;\n"
        "ALTER TABLE events ADD COLUMN msg String DEFAULT '-- migrate:down';\n"
    )
    assert statements(dest / "0001_20230101000000_create_events.rollback.sql") == [
        "ALTER TABLE events DROP COLUMN msg", "DROP TABLE events"]
    users = (dest / "0002_20230102000000_create_users.sql").read_text()
    assert "transaction:false" not in users and "migrate:" not in users
    assert "Distributed({cluster}, default, users)" in users
    assert statements(dest / "0002_20230102000000_create_users.rollback.sql") == ["DROP TABLE users_all",
                                                                                "DROP TABLE users"]


TWO_SECTIONS = (
    "-- Two steps, each on its own (dbmate runs each section separately).\n"
    "-- migrate:up\n"
    "CREATE TABLE revenue (day Date, n UInt64) ENGINE = SummingMergeTree ORDER BY day\n"
    "\n"
    "-- migrate:down\n"
    "DROP TABLE IF EXISTS revenue\n"
    "\n"
    "-- migrate:up transaction:false\n"
    "CREATE MATERIALIZED VIEW revenue_mv TO revenue AS SELECT day, count() AS n FROM orders GROUP BY day;\n"
    "INSERT INTO revenue SELECT day, count() FROM orders GROUP BY day;\n"
    "-- migrate:down transaction:false\n"
    "DROP VIEW IF EXISTS revenue_mv;\n"
)


def test_dbmate_file_with_two_sections_keeps_dbmates_order(tmp_path):
    source = write(tmp_path / "src", {"20240315160000_revenue.sql": TWO_SECTIONS})
    plan = import_migrations(source, tmp_path / "dest", "dbmate")
    assert [(r["id"], r["noop_rollback"]) for r in plan] == [("0001_20240315160000_revenue", False)]
    apply = tmp_path / "dest" / "0001_20240315160000_revenue.sql"
    assert apply.read_text() == (
        "-- imported from dbmate: 20240315160000_revenue.sql\n\n"
        "-- dbmate section 1 of 2 (line 2)\n"
        "CREATE TABLE revenue (day Date, n UInt64) ENGINE = SummingMergeTree ORDER BY day;\n\n"
        "-- dbmate section 2 of 2 (line 8)\n"
        "CREATE MATERIALIZED VIEW revenue_mv TO revenue AS SELECT day, count() AS n FROM orders GROUP BY day;\n"
        "INSERT INTO revenue SELECT day, count() FROM orders GROUP BY day;\n")
    assert len(statements(apply)) == 3  # the first section's statement is closed before the second starts
    # dbmate's Rollback runs the down sections in file order too (the same loop as Migrate): so does chops.
    rollback = tmp_path / "dest" / "0001_20240315160000_revenue.rollback.sql"
    assert rollback.read_text() == (
        "-- imported from dbmate: 20240315160000_revenue.sql\n\n"
        "-- dbmate runs the down sections in file order, as below (not newest first).\n"
        "-- dbmate section 1 of 2 (line 5)\n"
        "DROP TABLE IF EXISTS revenue;\n\n"
        "-- dbmate section 2 of 2 (line 11)\n"
        "DROP VIEW IF EXISTS revenue_mv;\n")
    assert statements(rollback) == ["DROP TABLE IF EXISTS revenue", "DROP VIEW IF EXISTS revenue_mv"]


def test_dbmate_sections_without_down(tmp_path):
    one_without = "-- migrate:up\nSELECT 1\n-- migrate:down\nSELECT -1\n-- migrate:up\nSELECT 2\n"
    none = "-- migrate:up\nSELECT 1\n-- migrate:up\nSELECT 2\n"
    source = write(tmp_path / "src", {"1_one_without.sql": one_without, "2_none.sql": none,
                                      "3_single.sql": "-- migrate:up\nSELECT 3;\n"})
    plan = import_migrations(source, tmp_path / "dest", "dbmate")
    assert [r["noop_rollback"] for r in plan] == [False, True, True]
    partial = (tmp_path / "dest" / "0001_1_one_without.rollback.sql").read_text()
    assert "-- dbmate section 2 of 2 (line 5) has no `-- migrate:down`: nothing undoes it" in partial
    assert statements(tmp_path / "dest" / "0001_1_one_without.rollback.sql") == ["SELECT -1"]
    assert statements(tmp_path / "dest" / "0002_2_none.sql") == ["SELECT 1", "SELECT 2"]
    for noop in ("0002_2_none.rollback.sql", "0003_3_single.rollback.sql"):
        text = (tmp_path / "dest" / noop).read_text()
        assert "has no `-- migrate:down` section: rolling it back runs nothing in dbmate" in text
        assert statements(tmp_path / "dest" / noop) == []


def test_dbmate_markers_start_a_line(tmp_path):
    # dbmate's `(?m)^--\s*migrate:down`: an indented marker is a comment of the up section
    source = write(tmp_path / "src", {"1_x.sql": "-- migrate:up\nSELECT 1;\n  -- migrate:down\nSELECT 2;\n"})
    plan = import_migrations(source, tmp_path / "dest", "dbmate")
    assert plan[0]["noop_rollback"] is True
    assert statements(tmp_path / "dest" / "0001_1_x.sql") == ["SELECT 1", "SELECT 2"]


def test_dbmate_orders_by_file_name(tmp_path):
    # dbmate sorts migrations by file name (`10_b.sql` < `1_a.sql`: '0' sorts before '_') and compares versions
    # as text; goose sorts numerically
    files = {"1_a.sql": "-- migrate:up\nSELECT 1;\n", "10_b.sql": "-- migrate:up\nSELECT 10;\n",
             "2_c.sql": "-- migrate:up\nSELECT 2;\n", "01_d.sql": "-- migrate:up\nSELECT 1;\n"}
    plan = import_migrations(write(tmp_path / "src", files), tmp_path / "dest", "dbmate")
    assert [r["version"] for r in plan] == ["01", "10", "1", "2"]
    goose = {name: text.replace("-- migrate:up", "-- +goose Up") for name, text in files.items() if name != "01_d.sql"}
    plan = import_migrations(write(tmp_path / "goose", goose), tmp_path / "dest2", "goose")
    assert [r["version"] for r in plan] == ["1", "2", "10"]


@pytest.mark.parametrize("text, fragment", [
    ("-- migrate:down\nDROP TABLE x;\n", "has no `-- migrate:up` section"),
    ("-- migrate:down\nSELECT 0;\n-- migrate:up\nSELECT 1;\n", "line 1: `-- migrate:down` before the first"),
    ("-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 2;\n-- migrate:down\nSELECT 3;\n",
     "line 5: a second down section (each `-- migrate:up` takes one `-- migrate:down`)"),
    ("-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 2;\n-- migrate:up\nSELECT 'open;\n",
     "unterminated string starting on line 6"),
    ("SELECT 0;\n-- migrate:up\nSELECT 1;\n", "has SQL before its `-- migrate:up` line"),
], ids=["no-up", "down-first", "two-downs", "unterminated-in-section-2", "sql-before-up"])
def test_dbmate_bad_files(tmp_path, text, fragment):
    with pytest.raises(BadInput) as caught:
        import_migrations(write(tmp_path / "src", {"20230101000000_x.sql": text}), tmp_path / "dest", "dbmate")
    assert caught.value.message.startswith("20230101000000_x.sql")
    assert fragment in caught.value.message


# --- ids, numbering, idempotence, dry run ----------------------------------------------------------------------

# --- plain numbered files ------------------------------------------------------------------------------------

def test_plain_three_digit_up_only_files(tmp_path):
    dest = tmp_path / "dest"
    plan = import_migrations(CORPORA / "plain-three-digit", dest, "plain")
    assert [(r["source"], r["version"], r["id"]) for r in plan] == [
        (["001_create_orders.sql"], "001", "0001_001_create_orders"),
        (["002_create_customers.sql"], "002", "0002_002_create_customers"),
        (["003_orders_by_day.sql"], "003", "0003_003_orders_by_day"),
        (["004_orders_currency.sql"], "004", "0004_004_orders_currency"),
        (["005_currencies.sql"], "005", "0005_005_currencies"),
        (["010_orders_ttl.sql"], "010", "0006_010_orders_ttl")]
    assert all(r["noop_rollback"] and r["rollback"] for r in plan)
    assert (dest / "0001_001_create_orders.rollback.sql").read_text() == (
        "-- imported from plain: 001_create_orders.sql\n\n"
        "-- 001_create_orders.sql has no down file (001_create_orders.down.sql or 001_create_orders.rollback.sql): "
        "the tool that ran it could not roll it back.\n"
        "-- This rollback runs nothing (no statements below); write the statements that undo it here.\n")
    assert len(statements(dest / "0003_003_orders_by_day.sql")) == 2
    assert statements(dest / "0005_005_currencies.sql")[1].startswith("INSERT INTO currencies VALUES")


def test_plain_clickhouse_migrations_layout_runs_in_numeric_order(tmp_path):
    # the npm clickhouse-migrations layout: N_description.sql, `#` and `#!` comments; 10 runs after 9, not after 1
    dest = tmp_path / "dest"
    plan = import_migrations(CORPORA / "clickhouse-migrations", dest, "plain")
    assert [r["id"] for r in plan] == [
        "0001_1_init", "0002_2_visits_referrer", "0003_3_visits_daily", "0004_9_visits_country",
        "0005_10_visits_country_index", "0006_11_visits_ttl"]
    assert [len(statements(dest / f"{r['id']}.sql")) for r in plan] == [1, 1, 2, 1, 1, 1]


def test_plain_downs_beside_the_files(tmp_path):
    source = write(tmp_path / "src", {
        "1_a.sql": "SELECT 1;\n", "1_a.down.sql": "SELECT -1;\n",
        "2_b.sql": "SELECT 2;\n", "2_other_title.rollback.sql": "SELECT -2;\n",
        "20240101120000_c.sql": "SELECT 3;\n",
    })
    dest = tmp_path / "dest"
    plan = import_migrations(source, dest, "plain")
    assert [(r["source"], r["id"], r["noop_rollback"], len(r["notes"])) for r in plan] == [
        (["1_a.sql", "1_a.down.sql"], "0001_1_a", False, 0),
        (["2_b.sql", "2_other_title.rollback.sql"], "0002_2_b", False, 1),
        (["20240101120000_c.sql"], "0003_20240101120000_c", True, 0)]
    assert statements(dest / "0002_2_b.rollback.sql") == ["SELECT -2"]
    assert [r["action"] for r in import_migrations(source, dest, "plain")] == ["skip"] * 3


@pytest.mark.parametrize("files, fragment", [
    ({"1_a.up.sql": "SELECT 1"}, "1_a.up.sql is a golang-migrate file name (.up.sql), not a plain one"),
    ({"1_a.sql": "SELECT 1", "3_x.down.sql": "SELECT 1"}, "3_x.down.sql has no matching .sql migration"),
    ({"schema.sql": "SELECT 1"}, "schema.sql is not a plain migration file name (expected {number}_{name}.sql"),
], ids=["up-suffix", "down-without-up", "no-number"])
def test_plain_bad_files(tmp_path, files, fragment):
    with pytest.raises(BadInput) as caught:
        import_migrations(write(tmp_path / "src", files), tmp_path / "dest", "plain")
    assert fragment in caught.value.message
    assert not (tmp_path / "dest").exists()


def test_numbers_continue_after_existing_migrations_and_keep_the_version(tmp_path):
    dest = write(tmp_path / "dest", {
        "0001_init.sql": "CREATE DATABASE x;\n",
        "0007_users.sql": "SELECT 1;\n", "0007_users.rollback.sql": "SELECT 2;\n",
        "notes.txt": "9999",
    })
    plan = import_migrations(write(tmp_path / "src", DBMATE), dest, "dbmate")
    assert [row["id"] for row in plan] == ["0008_20230101000000_create_events", "0009_20230102000000_create_users"]
    # file order is run order: the project's own first, then the imported ones in the source tool's order
    assert [p for p in listing(dest) if not p.endswith("rollback.sql")][:3] == [
        "0001_init.sql", "0007_users.sql", "0008_20230101000000_create_events.sql"]


def test_sequence_versions_never_clash_with_chops_numbers(tmp_path):
    dest = write(tmp_path / "dest", {"0001_own.sql": "SELECT 1;\n", "0002_own2.sql": "SELECT 2;\n"})
    source = write(tmp_path / "src", {"000001_a.up.sql": "SELECT 1;\n", "000145_b.up.sql": "SELECT 2;\n"})
    plan = import_migrations(source, dest, "golang-migrate")
    assert [row["id"] for row in plan] == ["0003_000001_a", "0004_000145_b"]


@pytest.mark.parametrize("fmt, files", [("golang-migrate", GOLANG_MIGRATE), ("goose", GOOSE), ("dbmate", DBMATE)])
def test_reimport_skips_everything(tmp_path, fmt, files):
    source = write(tmp_path / "src", files)
    dest = tmp_path / "dest"
    first = import_migrations(source, dest, fmt)
    before = {name: (dest / name).read_text() for name in listing(dest)}

    again = import_migrations(source, dest, fmt)
    assert {name: (dest / name).read_text() for name in listing(dest)} == before
    assert [row["action"] for row in again] == ["skip"] * len(first)
    assert [(r["id"], r["source"], r["version"], r["rollback"]) for r in again] == [
        (r["id"], r["source"], r["version"], r["rollback"]) for r in first]
    assert [sorted(r["files"]) for r in again] == [sorted(r["files"]) for r in first]
    assert all(r["collisions"] == [] for r in again)  # its own earlier import is no collision


def test_reimport_with_a_new_migration_writes_only_that(tmp_path):
    source = write(tmp_path / "src", {"1_a.up.sql": "SELECT 1;\n", "1_a.down.sql": "SELECT -1;\n"})
    dest = tmp_path / "dest"
    import_migrations(source, dest, "golang-migrate")
    write(source, {"3_c.up.sql": "SELECT 3;\n", "3_c.down.sql": "SELECT -3;\n"})
    plan = import_migrations(source, dest, "golang-migrate")
    assert [(r["id"], r["action"]) for r in plan] == [("0001_1_a", "skip"), ("0002_3_c", "write")]
    assert listing(dest) == ["0001_1_a.rollback.sql", "0001_1_a.sql", "0002_3_c.rollback.sql", "0002_3_c.sql"]


def test_reimport_completes_a_missing_rollback(tmp_path):
    source = write(tmp_path / "src", {"1_a.up.sql": "SELECT 1;\n", "1_a.down.sql": "SELECT -1;\n"})
    dest = tmp_path / "dest"
    import_migrations(source, dest, "golang-migrate")
    (dest / "0001_1_a.rollback.sql").unlink()  # as if an import had been interrupted
    plan = import_migrations(source, dest, "golang-migrate")
    assert plan == [{"source": ["1_a.up.sql", "1_a.down.sql"], "version": "1", "id": "0001_1_a",
                     "files": ["0001_1_a.rollback.sql"], "rollback": True, "noop_rollback": False,
                     "action": "write", "notes": [], "collisions": [], "variables": []}]
    assert statements(dest / "0001_1_a.rollback.sql") == ["SELECT -1"]


def test_an_earlier_import_keeps_its_ids_and_gains_its_noop_rollbacks(tmp_path):
    # Imported before ids kept the version and before no-op rollbacks: recognised by the header line.
    dest = write(tmp_path / "dest", {
        "0001_create_events.sql": "-- imported from goose: 00001_create_events.sql\n\nSELECT 1;\n",
        "0001_create_events.rollback.sql": "-- imported from goose: 00001_create_events.sql\n\nSELECT -1;\n",
        "0002_users.sql": "-- imported from goose: 00002_users.sql\n\nSELECT 2;\n",
        "0002_users.rollback.sql": "-- imported from goose: 00002_users.sql\n\nSELECT -2;\n",
        "0003_no_down.sql": "-- imported from goose: 00003_no_down.sql\n\nOPTIMIZE TABLE events FINAL;\n",
    })
    plan = import_migrations(write(tmp_path / "src", GOOSE), dest, "goose")
    assert [(r["id"], r["action"], r["files"]) for r in plan] == [
        ("0001_create_events", "skip", ["0001_create_events.rollback.sql", "0001_create_events.sql"]),
        ("0002_users", "skip", ["0002_users.rollback.sql", "0002_users.sql"]),
        ("0003_no_down", "write", ["0003_no_down.rollback.sql"])]
    assert statements(dest / "0003_no_down.rollback.sql") == []


def test_same_source_in_another_format_is_not_a_reimport(tmp_path):
    dest = write(tmp_path / "dest", {
        "0001_x.sql": "-- imported from goose: 1_x.up.sql\n\nSELECT 1;\n",
    })
    plan = import_migrations(write(tmp_path / "src", {"1_x.up.sql": "SELECT 1;\n"}), dest, "golang-migrate")
    assert [(r["id"], r["action"]) for r in plan] == [("0002_1_x", "write")]


def test_dry_run_writes_nothing_and_returns_the_same_plan(tmp_path):
    source = write(tmp_path / "src", GOOSE)
    dest = tmp_path / "dest"
    planned = import_migrations(source, dest, "goose", dry_run=True)
    assert not dest.exists()
    assert import_migrations(source, dest, "goose") == planned

    before = listing(dest)
    replanned = import_migrations(source, dest, "goose", dry_run=True)
    assert [row["action"] for row in replanned] == ["skip", "skip", "skip"]
    assert listing(dest) == before


def test_dest_is_created(tmp_path):
    dest = tmp_path / "deep" / "er" / "migrations"
    import_migrations(write(tmp_path / "src", {"1_a.up.sql": "SELECT 1"}), dest, "golang-migrate")
    assert (dest / "0001_1_a.sql").read_text() == "-- imported from golang-migrate: 1_a.up.sql\n\nSELECT 1\n"


def test_names_are_normalised(tmp_path):
    source = write(tmp_path / "src", {
        "1_Create  Users--Table!.up.sql": "SELECT 1;\n", "2___x.y__z__.up.sql": "SELECT 2;\n",
    })
    plan = import_migrations(source, tmp_path / "dest", "golang-migrate")
    assert [row["id"] for row in plan] == ["0001_1_create_users_table", "0002_2_x_y_z"]


# --- collisions with the destination's migrations --------------------------------------------------------------

def test_collisions_with_existing_migrations_are_reported(tmp_path):
    dest = write(tmp_path / "dest", {
        "0001_events.sql": "-- own\nCREATE TABLE IF NOT EXISTS events (ts DateTime) ENGINE = MergeTree ORDER BY ts;\n",
        "0002_views.sql": "CREATE VIEW IF NOT EXISTS analytics.events_today AS SELECT 1;\n"
                          "ALTER TABLE events ADD COLUMN IF NOT EXISTS x UInt8;\n",
    })
    source = write(tmp_path / "src", {
        "1_events.up.sql": "CREATE TABLE IF NOT EXISTS `events` ON CLUSTER {{.CLUSTER}} (ts DateTime) "
                           "ENGINE = MergeTree ORDER BY ts;\n"
                           "CREATE VIEW IF NOT EXISTS staging.events_today AS SELECT 2;\n",
        "2_alter.up.sql": "ALTER TABLE events ADD COLUMN msg String;\n",
        "3_other.up.sql": "CREATE TABLE other (x UInt8) ENGINE = Memory; INSERT INTO events VALUES (now());\n",
    })
    plan = import_migrations(source, dest, "golang-migrate")
    assert [[(c["object"], c["action"], c["migration"], c["its_action"]) for c in r["collisions"]] for r in plan] == [
        [("events", "created", "0001_events", "created"), ("events", "created", "0002_views", "altered")],
        [("events", "altered", "0001_events", "created"), ("events", "altered", "0002_views", "altered")],
        [],  # an INSERT touches no definition; staging.events_today is not analytics.events_today
    ]
    assert plan[0]["collisions"][0]["message"] == (
        "0003_1_events creates events, which 0001_events creates too: with IF NOT EXISTS the second silently "
        "does nothing")


def test_corpora_import_whole(tmp_path):
    for fmt, count, noop in (("golang-migrate", 7, 1), ("goose", 6, 1), ("dbmate", 5, 0)):
        plan = import_migrations(CORPORA / fmt, tmp_path / fmt, fmt)
        assert len(plan) == count and sum(r["noop_rollback"] for r in plan) == noop, fmt
        assert all(r["id"].split("_")[1] == r["version"] and r["rollback"] for r in plan)
        assert not any(r["collisions"] for r in plan)
        for path in (tmp_path / fmt).iterdir():
            statements(path)  # every written file splits
    # two unrelated sets share no object; a set whose tables the project's own migrations already create does
    assert not any(r["collisions"] for r in import_migrations(CORPORA / "dbmate", tmp_path / "goose", "dbmate"))
    own = tmp_path / "own"
    import_migrations(CORPORA / "goose", own, "goose")
    for path in own.iterdir():  # as if written by hand: no import header
        path.write_text(path.read_text().split("\n", 2)[2])
    plan = import_migrations(CORPORA / "goose", own, "goose", dry_run=True)
    assert [r["id"][:4] for r in plan] == ["0007", "0008", "0009", "0010", "0011", "0012"]
    assert [sorted({c["migration"][:4] for c in r["collisions"]}) for r in plan] == [
        ["0001", "0004", "0005", "0006"], ["0002"], ["0003"], ["0001", "0004", "0005", "0006"],
        ["0001", "0004", "0005", "0006"], ["0001", "0004", "0005", "0006"]]


# --- the objects a statement touches ------------------------------------------------------------------------------

@pytest.mark.parametrize("sql, expected", [
    ("CREATE TABLE IF NOT EXISTS db.events ON CLUSTER {cluster} (a Int8) ENGINE = MergeTree ORDER BY a",
     [("created", "db", "events")]),
    ("create materialized view if not exists mv TO agg AS SELECT 1 FROM events", [("created", None, "mv")]),
    ("CREATE OR REPLACE VIEW \"v\" AS SELECT 1", [("created", None, "v")]),
    ("-- a comment; CREATE TABLE fake\n/* CREATE TABLE fake2 */ CREATE LIVE VIEW lv AS SELECT 1",
     [("created", None, "lv")]),
    ("CREATE DICTIONARY d (k UInt64) PRIMARY KEY k SOURCE(NULL()) LAYOUT(FLAT()) LIFETIME(0)",
     [("created", None, "d")]),
    ("ATTACH TABLE t", [("created", None, "t")]),
    ("REPLACE TABLE t (a Int8) ENGINE = Memory", [("created", None, "t")]),
    ("ALTER TABLE `odd name` ON CLUSTER c ADD COLUMN x Int8", [("altered", None, "odd name")]),
    ("ALTER TABLE db.`x``y` DELETE WHERE 1", [("altered", "db", "x`y")]),
    ("TRUNCATE TABLE IF EXISTS t", [("altered", None, "t")]),
    ("TRUNCATE t", [("altered", None, "t")]),
    ("EXCHANGE TABLES a AND b", [("altered", None, "a"), ("altered", None, "b")]),
    ("DROP TABLE IF EXISTS a, b ON CLUSTER c SYNC", [("dropped", None, "a"), ("dropped", None, "b")]),
    ("DETACH VIEW v", [("dropped", None, "v")]),
    ("RENAME TABLE a TO b, db.c TO d", [("dropped", None, "a"), ("created", None, "b"), ("dropped", "db", "c"),
                                       ("created", None, "d")]),
    ("CREATE TEMPORARY TABLE t (a Int8)", []),
    ("DROP TEMPORARY TABLE t", []),
    ("TRUNCATE ALL TABLES FROM x", []),
    ("CREATE DATABASE IF NOT EXISTS x", []),
    ("INSERT INTO t SELECT 1", []),
    ("OPTIMIZE TABLE t FINAL", []),
    ("SELECT 'CREATE TABLE x'", []),
])
def test_touches(sql, expected):
    assert [(t.action.value, t.database, t.name) for t in touches(sql)] == expected


def test_same_object_compares_databases_only_when_both_say():
    events = Touch(Action.CREATED, None, "events")
    assert events.same_object(Touch(Action.ALTERED, "analytics", "events"))
    assert not Touch(Action.CREATED, "a", "events").same_object(Touch(Action.CREATED, "b", "events"))
    assert not events.same_object(Touch(Action.CREATED, None, "Events"))  # names are case-sensitive


# --- databases a statement names explicitly ----------------------------------------------------------------------

@pytest.mark.parametrize("sql, expected", [
    ("CREATE TABLE IF NOT EXISTS appdb.events ON CLUSTER c (a Int8) ENGINE = MergeTree ORDER BY a", ["appdb"]),
    ("CREATE TABLE `appdb`.`events` (a Int8) ENGINE = Memory", ["appdb"]),
    ("INSERT INTO appdb.daily SELECT e.a, extract(DAY FROM e.ts) FROM appdb.events AS e "
     "JOIN other.t AS o ON e.a = o.a ARRAY JOIN e.arr", ["appdb", "appdb", "other"]),  # not e / o: aliases
    ("CREATE MATERIALIZED VIEW appdb.mv TO appdb.target AS SELECT t.x FROM appdb.src AS t", ["appdb"] * 3),
    ("ALTER TABLE appdb.t RENAME COLUMN n.a TO n.b, MOVE PARTITION 1 TO TABLE arch.t2", ["appdb", "arch"]),
    ("DROP TABLE IF EXISTS a.x, b.y SYNC", ["a", "b"]),
    ("RENAME TABLE a.x TO b.y, c.z TO d.w", ["a", "b", "c", "d"]),
    ("EXCHANGE TABLES a.x AND b.y", ["a", "b"]),
    ("CREATE DATABASE IF NOT EXISTS appdb ENGINE = Atomic", ["appdb"]),
    ("USE appdb", ["appdb"]),
    ("CREATE TABLE t AS appdb.src ENGINE = Distributed('{cluster}', 'appdb', 'src', rand())", ["appdb", "appdb"]),
    ("CREATE TABLE b AS t ENGINE = Buffer(appdb, t, 1, 10, 100, 10000, 1000000, 10000000, 100000000)", ["appdb"]),
    ("SELECT dictGet('appdb.dict', 'v', toUInt64(1)), dictGet('dict2', 'v', toUInt64(1))", ["appdb"]),
    ("CREATE DICTIONARY d (k UInt64, v String) PRIMARY KEY k SOURCE(CLICKHOUSE(DB 'appdb' TABLE 'src')) "
     "LAYOUT(FLAT()) LIFETIME(0)", ["appdb"]),
    ("GRANT SELECT ON appdb.* TO bob", ["appdb"]),
    ("INSERT INTO FUNCTION remote('h', appdb.t) SELECT 1", ["appdb"]),
    # nothing hard-coded: placeholders, currentDatabase(), expressions
    ("CREATE TABLE t AS src ENGINE = Distributed(c, currentDatabase(), src)", []),
    ("CREATE TABLE {{.DB}}.events (a Int8) ENGINE = Memory", []),
    ("CREATE TABLE ${DB}.events (a Int8) ENGINE = Memory", []),
    ("SELECT trim(BOTH ' ' FROM s.x), s.y FROM t AS s WHERE s.z IN (1, 2)", []),
    ("SELECT 'FROM appdb.t' -- FROM appdb.t", []),
])
def test_databases_named(sql, expected):
    assert [database for database, _ in databases_named(sql)] == expected


def test_database_problems_name_the_database_once_at_its_first_line():
    statement = ("CREATE MATERIALIZED VIEW events_daily_mv\nTO analytics.events_daily AS\nSELECT count() FROM "
                 "analytics.events\nJOIN system.one ON 1 JOIN INFORMATION_SCHEMA.tables ON 1 JOIN chops.x USING a")
    assert database_problems(statement, "chops") == [
        (2, "names database analytics, but the configured database is chops: the statement works only where the "
            "database is called analytics (leave the name out, or use currentDatabase() or a template variable)")]
    [(line, message)] = database_problems(statement, "analytics")
    assert line == 4 and message.startswith("names database chops, but the configured database is analytics")
    assert database_problems("SELECT * FROM events", "chops") == []


def test_database_problems_of_the_corpora():
    # golang-migrate sets like SigNoz's name their database in every statement; goose ENVSUB sets template it
    found = {}
    for path in sorted((CORPORA / "golang-migrate-templates").iterdir()):
        for stmt in split_statements(path.read_text()):
            found.setdefault(path.name, []).extend((stmt.line + line - 1, message.split(",")[0])
                                                   for line, message in database_problems(stmt.text, "chops"))
    assert found["000003_events_daily.up.sql"] == [(1, "names database analytics"), (14, "names database analytics")]
    assert all(found[name] for name in found)
    for path in (CORPORA / "goose-envsub").iterdir():
        assert not [p for s in split_statements(path.read_text()) for p in database_problems(s.text, "chops")]


# --- the command -------------------------------------------------------------------------------------------------

def test_import_command_prints_notes_and_the_variables_to_set(run_inv, tmp_path):
    env = {"CHOPS_MIGRATIONS__DIR": str(tmp_path / "migrations"), "CHOPS_MIGRATIONS__VARIABLES__APP_CLUSTER": "main"}
    shown = run_inv("db.import", str(CORPORA / "golang-migrate-templates"), "--from", "golang-migrate", "--dry-run",
                    extra_env=env)
    assert shown.returncode == 0, shown.stderr
    assert ("note: 000005_recreate_sessions.down.sql is the rollback of 000005_reacreate_sessions.up.sql: "
            "golang-migrate pairs an up and a down by the number of the version alone") in shown.stderr
    assert ("the migrations use template variables: APP_CLUSTER, APP_REPLICATED, EVENTS_TTL_DAYS, APP_ENV"
            in shown.stderr)
    assert "warning: not set yet: APP_ENV, APP_REPLICATED, EVENTS_TTL_DAYS;" in shown.stderr
    assert not (tmp_path / "migrations").exists()

    rows = json.loads(run_inv("db.import", str(CORPORA / "goose-envsub"), "--from", "goose", "--dry-run", "--json",
                              extra_env=env).stdout)
    assert rows[0]["variables"] == [
        {"name": "CLICKHOUSE_DATABASE", "required": True, "default": None},
        {"name": "CLICKHOUSE_ENGINE_PREFIX", "required": False, "default": ""},
        {"name": "SPANS_TTL_DAYS", "required": False, "default": "30"}]

    refused = run_inv("db.import", str(CORPORA / "plain-three-digit"), "--from", "plain", "--adopt", extra_env=env)
    assert refused.returncode == 2
    assert "plain numbered files have no known one" in refused.stderr and "--through" in refused.stderr


# --- bad input -----------------------------------------------------------------------------------------------

def test_unknown_format(tmp_path):
    with pytest.raises(BadInput) as caught:
        import_migrations(write(tmp_path / "src", {}), tmp_path / "dest", "flyway")
    assert "flyway" in caught.value.message
    for choice in ("golang-migrate", "goose", "dbmate"):
        assert choice in caught.value.message
    assert caught.value.exit_code == 2


def test_missing_or_non_directory_source(tmp_path):
    with pytest.raises(BadInput, match="is not a directory"):
        import_migrations(tmp_path / "nope", tmp_path / "dest", "goose")
    (tmp_path / "file.sql").write_text("SELECT 1")
    with pytest.raises(BadInput, match="is not a directory"):
        import_migrations(tmp_path / "file.sql", tmp_path / "dest", "goose")
    assert not (tmp_path / "dest").exists()


def test_dest_that_is_a_file(tmp_path):
    (tmp_path / "dest").write_text("")
    with pytest.raises(BadInput, match="destination .* is not a directory"):
        import_migrations(write(tmp_path / "src", {}), tmp_path / "dest", "goose")


def test_down_without_up(tmp_path):
    source = write(tmp_path / "src", {"1_a.up.sql": "SELECT 1;", "2_b.down.sql": "SELECT 2;"})
    with pytest.raises(BadInput, match=r"2_b\.down\.sql has no matching \.up\.sql"):
        import_migrations(source, tmp_path / "dest", "golang-migrate")
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("fmt, files, names", [
    ("golang-migrate", {"1_a.up.sql": "", "001_b.up.sql": ""}, ("001_b.up.sql", "1_a.up.sql")),
    ("golang-migrate", {"1_a.up.sql": "", "1_a.down.sql": "", "01_b.down.sql": ""}, ("01_b.down.sql", "1_a.down.sql")),
    ("plain", {"1_a.sql": "", "001_b.sql": ""}, ("001_b.sql", "1_a.sql")),
    ("plain", {"1_a.sql": "", "1_a.down.sql": "", "1_a.rollback.sql": ""}, ("1_a.down.sql", "1_a.rollback.sql")),
    ("goose", {"00001_a.sql": "-- +goose Up\n", "1_b.sql": "-- +goose Up\n"}, ("00001_a.sql", "1_b.sql")),
    ("dbmate", {"20230101_a.sql": "-- migrate:up\n", "20230101_b.sql": "-- migrate:up\n"},
     ("20230101_a.sql", "20230101_b.sql")),
], ids=["golang-migrate", "golang-migrate-two-downs", "plain", "plain-two-downs", "goose", "dbmate"])
def test_duplicate_versions_name_both_files(tmp_path, fmt, files, names):
    with pytest.raises(BadInput, match="duplicate migration version") as caught:
        import_migrations(write(tmp_path / "src", files), tmp_path / "dest", fmt)
    for name in names:
        assert name in caught.value.message


@pytest.mark.parametrize("fmt, name", [
    ("golang-migrate", "1_init.sql"), ("golang-migrate", "init.up.sql"), ("goose", "create_users.sql"),
    ("dbmate", "schema.sql"),
])
def test_unrecognised_sql_file_names(tmp_path, fmt, name):
    with pytest.raises(BadInput, match=f"{name} is not a {fmt} migration file name"):
        import_migrations(write(tmp_path / "src", {name: "SELECT 1"}), tmp_path / "dest", fmt)


def test_empty_name(tmp_path):
    with pytest.raises(BadInput, match="1_---.up.sql: migration has no name"):
        import_migrations(write(tmp_path / "src", {"1_---.up.sql": "SELECT 1"}), tmp_path / "dest", "golang-migrate")


def test_never_overwrites_a_file_it_did_not_write(tmp_path):
    source = write(tmp_path / "src", {"1_a.up.sql": "SELECT 1;\n", "1_a.down.sql": "SELECT -1;\n"})
    dest = tmp_path / "dest"
    import_migrations(source, dest, "golang-migrate")
    (dest / "0001_1_a.rollback.sql").write_text("-- hand-written\nSELECT 0;\n")  # no import header: not ours
    with pytest.raises(BadInput, match="already has 0001_1_a.rollback.sql"):
        import_migrations(source, dest, "golang-migrate")
    assert (dest / "0001_1_a.rollback.sql").read_text() == "-- hand-written\nSELECT 0;\n"


def test_empty_source_directory_imports_nothing(tmp_path):
    assert import_migrations(write(tmp_path / "src", {}), tmp_path / "dest", "dbmate") == []


def test_hidden_files_subdirectories_and_other_files_are_ignored(tmp_path):
    source = write(tmp_path / "src", {"1_a.up.sql": "SELECT 1", ".#1_a.up.sql": "", "notes.txt": ""})
    write(source / "archive", {"0_old.up.sql": "SELECT 0"})
    plan = import_migrations(source, tmp_path / "dest", "golang-migrate")
    assert [row["source"] for row in plan] == [["1_a.up.sql"]]


def test_file_that_is_not_utf8(tmp_path):
    source = write(tmp_path / "src", {})
    (source / "1_a.up.sql").write_bytes(b"SELECT '\xff'")
    with pytest.raises(BadInput, match="1_a.up.sql is not UTF-8 text"):
        import_migrations(source, tmp_path / "dest", "golang-migrate")


def test_numbers_stop_at_9999(tmp_path):
    dest = write(tmp_path / "dest", {"9999_last.sql": "SELECT 1;\n"})
    with pytest.raises(BadInput, match="would need migration number 10000"):
        import_migrations(write(tmp_path / "src", {"1_a.up.sql": "SELECT 1"}), dest, "golang-migrate")
    assert listing(dest) == ["9999_last.sql"]
