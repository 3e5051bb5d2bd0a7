"""Importing golang-migrate, goose and dbmate directories: layout, order, numbering, idempotence, bad input."""

import pytest

from ops.core.errors import BadInput
from ops.migrations.importers import import_migrations
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
         "version": "20230101120000", "id": "0001_create_events",
         "files": ["0001_create_events.sql", "0001_create_events.rollback.sql"], "rollback": True, "action": "write"},
        {"source": ["20230315093000_Add-Users.up.sql", "20230315093000_Add-Users.down.sql"],
         "version": "20230315093000", "id": "0002_add_users",
         "files": ["0002_add_users.sql", "0002_add_users.rollback.sql"], "rollback": True, "action": "write"},
        {"source": ["20240601000000_add_index.up.sql"], "version": "20240601000000", "id": "0003_add_index",
         "files": ["0003_add_index.sql"], "rollback": False, "action": "write"},
    ]
    assert listing(dest) == ["0001_create_events.rollback.sql", "0001_create_events.sql", "0002_add_users.rollback.sql",
                             "0002_add_users.sql", "0003_add_index.sql"]

    apply = (dest / "0001_create_events.sql").read_text()
    assert apply.startswith("-- imported from golang-migrate: 20230101120000_create_events.up.sql\n\nCREATE TABLE")
    assert apply.endswith("rand());\n")  # trailing blank lines trimmed, one newline
    assert "{{" not in apply and apply.count("{cluster}") == 3
    assert "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'" in apply  # server macros untouched
    assert len(statements(dest / "0001_create_events.sql")) == 2

    rollback = (dest / "0001_create_events.rollback.sql").read_text()
    assert rollback == ("-- imported from golang-migrate: 20230101120000_create_events.down.sql\n\n"
                        "DROP TABLE IF EXISTS events_all ON CLUSTER {cluster};\n"
                        "DROP TABLE IF EXISTS events ON CLUSTER {cluster};\n")
    assert statements(dest / "0002_add_users.sql") == [
        "CREATE TABLE users (id UInt64, name String) ENGINE = MergeTree ORDER BY id",
        "INSERT INTO users VALUES (1, 'root')"]


def test_golang_migrate_orders_by_numeric_version(tmp_path):
    source = write(tmp_path / "src", {
        "10_y.up.sql": "SELECT 10;\n", "9_x.up.sql": "SELECT 9;\n", "100_z.up.sql": "SELECT 100;\n",
        "0011_w.up.sql": "SELECT 11;\n",
    })
    plan = import_migrations(source, tmp_path / "dest", "golang-migrate")
    assert [(row["version"], row["id"]) for row in plan] == [
        ("9", "0001_x"), ("10", "0002_y"), ("0011", "0003_w"), ("100", "0004_z")]
    assert statements(tmp_path / "dest" / "0003_w.sql") == ["SELECT 11"]


def test_golang_migrate_empty_down_file_still_gives_a_rollback(tmp_path):
    source = write(tmp_path / "src", {"1_init.up.sql": "SELECT 1;\n", "1_init.down.sql": "\n"})
    plan = import_migrations(source, tmp_path / "dest", "golang-migrate")
    assert plan[0]["rollback"] is True
    rollback = (tmp_path / "dest" / "0001_init.rollback.sql").read_text()
    assert rollback == "-- imported from golang-migrate: 1_init.down.sql\n"


# --- goose ---------------------------------------------------------------------------------------------------

def test_goose(tmp_path):
    source = write(tmp_path / "src", GOOSE)
    dest = tmp_path / "dest"
    plan = import_migrations(source, dest, "goose")

    assert [(r["source"], r["version"], r["id"], r["files"], r["rollback"]) for r in plan] == [
        (["00001_create_events.sql"], "00001", "0001_create_events",
         ["0001_create_events.sql", "0001_create_events.rollback.sql"], True),
        (["00002_users.sql"], "00002", "0002_users", ["0002_users.sql", "0002_users.rollback.sql"], True),
        (["00003_no_down.sql"], "00003", "0003_no_down", ["0003_no_down.sql"], False),
    ]
    assert (dest / "0001_create_events.sql").read_text() == (
        "-- imported from goose: 00001_create_events.sql\n\n"
        "CREATE TABLE events (ts DateTime, msg String) ENGINE = MergeTree ORDER BY ts;\n"
        "CREATE VIEW events_today AS SELECT * FROM events WHERE toDate(ts) = today();\n"
    )
    assert (dest / "0001_create_events.rollback.sql").read_text() == (
        "-- imported from goose: 00001_create_events.sql\n\nDROP VIEW events_today;\nDROP TABLE events;\n"
    )
    assert statements(dest / "0002_users.sql") == [
        "CREATE TABLE users (id UInt64) ENGINE = MergeTree ORDER BY id", "INSERT INTO users VALUES (1)"]
    assert "goose" not in (dest / "0002_users.sql").read_text().split("\n", 1)[1]
    assert statements(dest / "0002_users.rollback.sql") == ["DROP TABLE users"]
    assert not (dest / "0003_no_down.rollback.sql").exists()


def test_goose_go_migration_is_bad_input(tmp_path):
    source = write(tmp_path / "src", {**GOOSE, "00004_backfill.go": "package migrations\n"})
    with pytest.raises(BadInput, match="goose Go migrations cannot be converted: 00004_backfill.go"):
        import_migrations(source, tmp_path / "dest", "goose")
    assert not (tmp_path / "dest").exists()  # nothing written


@pytest.mark.parametrize("text, fragment", [
    ("CREATE TABLE t (x UInt8) ENGINE = Memory;\n", "has no `-- +goose Up` section"),
    ("SELECT 1;\n-- +goose Up\nSELECT 2;\n", "has SQL before its `-- +goose Up` line"),
    ("-- +goose Up\nSELECT 1;\n-- +goose Up\nSELECT 2;\n", "line 3: a second up section"),
    ("-- +goose ENVSUB ON\n-- +goose Up\nSELECT '${X}';\n",
     "line 1: goose annotation '-- +goose ENVSUB ON' is not supported"),
    ("-- +goose Up\nSELECT 'open;\n", "unterminated string starting on line 2"),
], ids=["no-up", "sql-before-up", "two-ups", "envsub", "unterminated"])
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

    assert [(r["version"], r["id"], r["rollback"], r["action"]) for r in plan] == [
        ("20230101000000", "0001_create_events", True, "write"), ("20230102000000", "0002_create_users", True, "write")]
    assert (dest / "0001_create_events.sql").read_text() == (
        "-- imported from dbmate: 20230101000000_create_events.sql\n\n"
        "CREATE TABLE events (ts DateTime) ENGINE = MergeTree ORDER BY ts;\n"
        "ALTER TABLE events ADD COLUMN msg String DEFAULT '-- migrate:down';\n"
    )
    assert statements(dest / "0001_create_events.rollback.sql") == ["ALTER TABLE events DROP COLUMN msg",
                                                                   "DROP TABLE events"]
    users = (dest / "0002_create_users.sql").read_text()
    assert "transaction:false" not in users and "migrate:" not in users
    assert "Distributed({cluster}, default, users)" in users
    assert statements(dest / "0002_create_users.rollback.sql") == ["DROP TABLE users_all", "DROP TABLE users"]


def test_dbmate_without_up_is_bad_input(tmp_path):
    source = write(tmp_path / "src", {"20230101000000_x.sql": "-- migrate:down\nDROP TABLE x;\n"})
    with pytest.raises(BadInput, match="has no `-- migrate:up` section"):
        import_migrations(source, tmp_path / "dest", "dbmate")


# --- numbering, idempotence, dry run ---------------------------------------------------------------------------

def test_numbers_continue_after_existing_migrations(tmp_path):
    dest = write(tmp_path / "dest", {
        "0001_init.sql": "CREATE DATABASE x;\n",
        "0007_users.sql": "SELECT 1;\n", "0007_users.rollback.sql": "SELECT 2;\n",
        "notes.txt": "9999",
    })
    plan = import_migrations(write(tmp_path / "src", DBMATE), dest, "dbmate")
    assert [row["id"] for row in plan] == ["0008_create_events", "0009_create_users"]
    assert "0009_create_users.rollback.sql" in listing(dest)


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


def test_reimport_with_a_new_migration_writes_only_that(tmp_path):
    source = write(tmp_path / "src", {"1_a.up.sql": "SELECT 1;\n", "2_b.up.sql": "SELECT 2;\n"})
    dest = tmp_path / "dest"
    import_migrations(source, dest, "golang-migrate")
    write(source, {"3_c.up.sql": "SELECT 3;\n", "3_c.down.sql": "SELECT -3;\n"})
    plan = import_migrations(source, dest, "golang-migrate")
    assert [(r["id"], r["action"]) for r in plan] == [("0001_a", "skip"), ("0002_b", "skip"), ("0003_c", "write")]
    assert listing(dest) == ["0001_a.sql", "0002_b.sql", "0003_c.rollback.sql", "0003_c.sql"]


def test_reimport_completes_a_missing_rollback(tmp_path):
    source = write(tmp_path / "src", {"1_a.up.sql": "SELECT 1;\n", "1_a.down.sql": "SELECT -1;\n"})
    dest = tmp_path / "dest"
    import_migrations(source, dest, "golang-migrate")
    (dest / "0001_a.rollback.sql").unlink()  # as if an import had been interrupted
    plan = import_migrations(source, dest, "golang-migrate")
    assert plan == [{"source": ["1_a.up.sql", "1_a.down.sql"], "version": "1", "id": "0001_a",
                     "files": ["0001_a.rollback.sql"], "rollback": True, "action": "write"}]
    assert statements(dest / "0001_a.rollback.sql") == ["SELECT -1"]


def test_same_source_in_another_format_is_not_a_reimport(tmp_path):
    dest = write(tmp_path / "dest", {
        "0001_x.sql": "-- imported from goose: 1_x.up.sql\n\nSELECT 1;\n",
    })
    plan = import_migrations(write(tmp_path / "src", {"1_x.up.sql": "SELECT 1;\n"}), dest, "golang-migrate")
    assert [(r["id"], r["action"]) for r in plan] == [("0002_x", "write")]


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
    assert (dest / "0001_a.sql").read_text() == "-- imported from golang-migrate: 1_a.up.sql\n\nSELECT 1\n"


def test_names_are_normalised(tmp_path):
    source = write(tmp_path / "src", {
        "1_Create  Users--Table!.up.sql": "SELECT 1;\n", "2___x.y__z__.up.sql": "SELECT 2;\n",
    })
    plan = import_migrations(source, tmp_path / "dest", "golang-migrate")
    assert [row["id"] for row in plan] == ["0001_create_users_table", "0002_x_y_z"]


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
    (dest / "0001_a.rollback.sql").write_text("-- hand-written\nSELECT 0;\n")  # no import header: not ours
    with pytest.raises(BadInput, match="already has 0001_a.rollback.sql"):
        import_migrations(source, dest, "golang-migrate")
    assert (dest / "0001_a.rollback.sql").read_text() == "-- hand-written\nSELECT 0;\n"


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
