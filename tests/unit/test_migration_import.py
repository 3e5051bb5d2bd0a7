"""Importing golang-migrate, goose and dbmate directories: layout, order, ids that keep the original version,
no-op rollbacks, dbmate files with several sections, collisions with existing migrations, idempotence, bad input."""

from pathlib import Path

import pytest

from ops.core.errors import BadInput
from ops.migrations.importers import import_migrations
from ops.migrations.objects import Action, Touch, touches
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
         "rollback": True, "noop_rollback": False, "action": "write", "collisions": []},
        {"source": ["20230315093000_Add-Users.up.sql", "20230315093000_Add-Users.down.sql"],
         "version": "20230315093000", "id": "0002_20230315093000_add_users",
         "files": ["0002_20230315093000_add_users.sql", "0002_20230315093000_add_users.rollback.sql"],
         "rollback": True, "noop_rollback": False, "action": "write", "collisions": []},
        {"source": ["20240601000000_add_index.up.sql"], "version": "20240601000000",
         "id": "0003_20240601000000_add_index",
         "files": ["0003_20240601000000_add_index.sql", "0003_20240601000000_add_index.rollback.sql"],
         "rollback": True, "noop_rollback": True, "action": "write", "collisions": []},
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
        "runs nothing.\n-- This rollback runs nothing either, on purpose (no statements below).\n")
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
        "-- This rollback runs nothing either, on purpose (no statements below).\n")
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
    ("-- +goose ENVSUB ON\n-- +goose Up\nSELECT '${X}';\n",
     "line 1: goose annotation '-- +goose ENVSUB ON' is not supported"),
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
                     "action": "write", "collisions": []}]
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
    ("golang-migrate", {"1_a.up.sql": "", "1_b.down.sql": ""}, ("1_a.up.sql", "1_b.down.sql")),
    ("goose", {"00001_a.sql": "-- +goose Up\n", "1_b.sql": "-- +goose Up\n"}, ("00001_a.sql", "1_b.sql")),
    ("dbmate", {"20230101_a.sql": "-- migrate:up\n", "20230101_b.sql": "-- migrate:up\n"},
     ("20230101_a.sql", "20230101_b.sql")),
], ids=["golang-migrate", "golang-migrate-mismatched-down", "goose", "dbmate"])
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
