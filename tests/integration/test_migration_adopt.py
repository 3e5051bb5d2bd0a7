"""Adopting a database golang-migrate, goose or dbmate migrated, on a real engine.

Each test plays the other tool: it runs the first migrations of a corpus (``tests/corpora/<tool>``) directly and
writes the tool's version table with the DDL and the rows the tool writes on ClickHouse (taken from the tools'
ClickHouse drivers), then imports with ``--adopt`` and checks that chops records exactly those as applied, and
that ``db.migrate`` applies only the later ones, ending with the schema a plain run of every statement gives.
"""

import json
import time
import uuid
from datetime import datetime

import pytest

from ops.clickhouse.client import connect
from ops.core.errors import BadInput, WorkFailed
from ops.migrations.adopt import import_and_adopt
from ops.migrations.files import read_files
from ops.migrations.importers import import_migrations
from ops.migrations.migrator import Migrations
from ops.migrations.objects import touches
from ops.migrations.sqlsplit import render
from tests.conftest import ROOT, clean_environ, inv

CORPORA = ROOT / "tests" / "corpora"

# The version tables as each tool creates them on ClickHouse (single server, default names and engines).
TOOL_TABLES = {
    # golang-migrate database/clickhouse: ensureVersionTable, x-migrations-table-engine defaults to TinyLog
    "golang-migrate": "CREATE TABLE schema_migrations (version Int64, dirty UInt8, sequence UInt64) Engine=TinyLog",
    # goose internal/dialect/dialectquery/clickhouse.go: CreateTable
    "goose": ("CREATE TABLE IF NOT EXISTS goose_db_version (version_id Int64, is_applied UInt8, "
              "date Date default now(), tstamp DateTime default now()) ENGINE = MergeTree() ORDER BY (date)"),
    # dbmate pkg/driver/clickhouse: CreateMigrationsTable
    "dbmate": ("create table if not exists schema_migrations (version String, ts DateTime default now(), "
               "applied UInt8 default 1) engine = ReplacingMergeTree(ts) primary key version order by version"),
}
TOOL_TABLE_NAME = {"golang-migrate": "schema_migrations", "goose": "goose_db_version", "dbmate": "schema_migrations"}
# How many of each corpus's migrations the other tool applied before the switch (dbmate's include the file with
# two up/down sections; golang-migrate's the one without a down file is left to chops).
ADOPTED = {"golang-migrate": 4, "goose": 5, "dbmate": 3}


def tool_records(db, fmt, versions, dirty=None):
    """Create ``fmt``'s version table and write the rows ``fmt`` writes when it applies ``versions`` in order (and
    begins ``dirty`` without finishing it)."""
    db.command(TOOL_TABLES[fmt])
    if fmt == "golang-migrate":  # SetVersion(v, dirty=true) before running v, SetVersion(v, false) after
        seq = time.time_ns()
        rows = [(int(v), d, seq + 2 * i + (1 - d)) for i, v in enumerate(versions) for d in (1, 0)]
        rows += [(int(dirty), 1, seq + 2 * len(versions))] if dirty else []
        db.insert("schema_migrations", rows, ["version", "dirty", "sequence"])
    elif fmt == "goose":  # version 0 when the table is created, then one row per version applied
        db.insert("goose_db_version", [(0, 1)] + [(int(v), 1) for v in versions], ["version_id", "is_applied"])
    else:
        db.insert("schema_migrations", [(v,) for v in versions], ["version"])


def versions(fmt):
    rows = import_migrations(CORPORA / fmt, CORPORA / "nowhere", fmt, dry_run=True)
    return [r["version"] for r in rows]


def run_directly(settings, db, tmp_path, fmt, count=None):
    """Run the first ``count`` migrations of the corpus statement by statement, as the other tool would."""
    scratch = tmp_path / f"direct-{uuid.uuid4().hex[:6]}"
    import_migrations(CORPORA / fmt, scratch, fmt)
    for f in read_files(scratch, settings.root)[:count]:
        for statement in f.statements:
            db.command(render(statement.text, None))


def schema(db):
    """``create_table_query`` of every table but the journals, with the database name taken out."""
    rows = db.rows("SELECT name, create_table_query AS q FROM system.tables WHERE database = currentDatabase() "
                   "ORDER BY name")
    return {r["name"]: r["q"].replace(f"{db.name}.", "") for r in rows
            if r["name"] not in ("_chops_migration_log", "schema_migrations", "goose_db_version")}


def tables(db):
    return sorted(r["name"] for r in db.rows("SELECT name FROM system.tables WHERE database = currentDatabase()"))


@pytest.fixture
def mdir(tmp_path):
    return tmp_path / "migrations"


@pytest.fixture
def migrations(settings, db, mdir):
    return Migrations(settings.with_overrides(migrations__dir=str(mdir)), db=db)


@pytest.fixture
def other_db(settings):
    name = f"t_{uuid.uuid4().hex[:12]}"
    database = connect(settings, database=name, create=True)
    try:
        yield database
    finally:
        database.command(f"DROP DATABASE IF EXISTS `{name}` SYNC")
        database.close()


def states(m):
    return {r["id"]: r["state"] for r in m.status()}


@pytest.mark.parametrize("fmt", ["golang-migrate", "goose", "dbmate"])
def test_adopt_then_migrate_applies_only_the_later_ones(fmt, settings, db, other_db, migrations, mdir, tmp_path):
    all_versions, k = versions(fmt), ADOPTED[fmt]
    run_directly(settings, db, tmp_path, fmt, count=k)
    tool_records(db, fmt, all_versions[:k])

    result = import_and_adopt(migrations, CORPORA / fmt, fmt)
    ids = [r["id"] for r in result["imported"]]
    assert [i.split("_")[1] for i in ids] == all_versions  # the original version is in the id
    assert result["adoption"]["recorded"] == ids[:k] == result["adoption"]["adopt"]
    assert result["adoption"]["pending"] == ids[k:]
    assert states(migrations) == {i: "applied" if n < k else "pending" for n, i in enumerate(ids)}
    assert [e["operation"] for e in migrations.journal() if e["event"] == "done"] == ["mark"] * k  # nothing ran

    assert migrations.migrate()["applied"] == ids[k:]  # the adopted ones did not run again (they would fail)
    run_directly(settings, other_db, tmp_path, fmt)
    assert schema(db) == schema(other_db)  # as if every statement had run once, in order

    assert migrations.rollback(count=len(ids))["rolled_back"] == ids[::-1]  # no-op rollbacks included
    assert tables(db) == sorted(["_chops_migration_log", TOOL_TABLE_NAME[fmt]])


def test_adopting_again_changes_nothing_and_keeps_chops_history(settings, db, migrations, tmp_path):
    run_directly(settings, db, tmp_path, "goose", count=3)
    tool_records(db, "goose", versions("goose")[:3])
    first = import_and_adopt(migrations, CORPORA / "goose", "goose")["adoption"]
    ids = first["adopt"]
    migrations.rollback()  # chops rolls back the newest adopted one: goose's table still says applied
    again = import_and_adopt(migrations, CORPORA / "goose", "goose")
    assert [r["action"] for r in again["imported"]] == ["skip"] * 6
    assert again["adoption"]["adopt"] == [] and again["adoption"]["recorded"] == []
    assert again["adoption"]["known"] == ids
    assert states(migrations)[ids[-1]] == "pending"  # chops' own history wins over the other tool's table


def test_dry_run_changes_nothing(settings, db, migrations, mdir, tmp_path):
    run_directly(settings, db, tmp_path, "dbmate", count=2)
    tool_records(db, "dbmate", versions("dbmate")[:2])
    before = tables(db)
    result = import_and_adopt(migrations, CORPORA / "dbmate", "dbmate", dry_run=True)
    assert [r["action"] for r in result["imported"]] == ["write"] * 5
    assert len(result["adoption"]["adopt"]) == 2 and result["adoption"]["recorded"] == []
    assert not mdir.exists()
    assert tables(db) == before  # not even the journal


def test_goose_rolled_back_versions_are_not_adopted(db, migrations, tmp_path):
    v = versions("goose")
    tool_records(db, "goose", v[:3])
    # An older goose recorded a rollback as a newer row with is_applied = 0; goose reads the newest row.
    db.insert("goose_db_version", [(int(v[2]), 0, datetime(2099, 1, 1))], ["version_id", "is_applied", "tstamp"])
    plan = import_and_adopt(migrations, CORPORA / "goose", "goose", dry_run=True)["adoption"]
    assert [i.split("_")[1] for i in plan["adopt"]] == v[:2]


def test_dbmate_holes_are_reported_as_gaps(db, migrations):
    v = versions("dbmate")
    tool_records(db, "dbmate", [v[0], v[2]])  # dbmate applies a missing older migration late
    db.insert("schema_migrations", [(v[3], 0)], ["version", "applied"])  # and rolled this one back
    plan = import_and_adopt(migrations, CORPORA / "dbmate", "dbmate", dry_run=True)["adoption"]
    assert [i.split("_")[1] for i in plan["adopt"]] == [v[0], v[2]]
    assert [i.split("_")[1] for i in plan["gaps"]] == [v[1]]


def test_own_pending_migrations_below_adopted_ones_are_reported(settings, db, migrations, mdir, tmp_path):
    mdir.mkdir()
    (mdir / "0001_own.sql").write_text("CREATE TABLE own (x UInt8) ENGINE = MergeTree ORDER BY x;\n")
    run_directly(settings, db, tmp_path, "dbmate", count=1)
    tool_records(db, "dbmate", versions("dbmate")[:1])
    plan = import_and_adopt(migrations, CORPORA / "dbmate", "dbmate")["adoption"]
    assert plan["gaps"] == ["0001_own"]  # what db.validate now calls a conflict:
    assert [f["migration"] for f in migrations.validate(check_sql=False) if f["check"] == "conflict"] == ["0001_own"]


def test_a_golang_migrate_dirty_version_becomes_a_dirty_chops_migration(db, migrations, mdir):
    v = versions("golang-migrate")
    tool_records(db, "golang-migrate", v[:2], dirty=v[2])
    plan = import_and_adopt(migrations, CORPORA / "golang-migrate", "golang-migrate")["adoption"]
    assert plan["dirty"] == "0003_000003_create_users" and len(plan["recorded"]) == 2
    states = {r["id"]: r["state"] for r in migrations.status()}
    assert states["0003_000003_create_users"] == "dirty"
    assert [i for i, s in states.items() if s == "applied"] == plan["recorded"]
    with pytest.raises(WorkFailed, match="0003_000003_create_users is dirty"):  # refused until it is settled
        migrations.migrate()
    done = migrations.migrate(to="0003_000003_create_users", resume=True)  # from its first statement
    assert done["applied"] == ["0003_000003_create_users"] and "users" in tables(db)


def test_golang_migrate_nil_version_adopts_nothing(db, migrations):
    tool_records(db, "golang-migrate", versions("golang-migrate")[:2])
    db.insert("schema_migrations", [(-1, 0, time.time_ns() + 10**12)], ["version", "dirty", "sequence"])  # all down
    plan = import_and_adopt(migrations, CORPORA / "golang-migrate", "golang-migrate")["adoption"]
    assert plan["adopt"] == [] and len(plan["pending"]) == 7


def test_a_version_the_directory_lacks_is_refused(db, migrations, mdir):
    tool_records(db, "dbmate", versions("dbmate") + ["20250101000000"])
    with pytest.raises(BadInput, match="records version.* 20250101000000, which the directory does not have"):
        import_and_adopt(migrations, CORPORA / "dbmate", "dbmate")
    assert not mdir.exists()


@pytest.mark.parametrize("fmt, setup, fragment", [
    ("goose", None, "there is no table goose_db_version"),
    ("golang-migrate", "dbmate", "is not golang-migrate's version table: it has no column dirty, sequence"),
    ("dbmate", "golang-migrate", "is not dbmate's version table: it has no column applied, ts"),
], ids=["missing", "dbmate-table-as-golang-migrate", "golang-migrate-table-as-dbmate"])
def test_missing_or_foreign_version_table(db, migrations, mdir, fmt, setup, fragment):
    if setup:
        db.command(TOOL_TABLES[setup])
    with pytest.raises(BadInput, match=fragment):
        import_and_adopt(migrations, CORPORA / fmt, fmt)
    assert not mdir.exists()


def test_a_custom_table_name(db, migrations):
    db.command(TOOL_TABLES["goose"].replace("goose_db_version", "app_versions"))
    db.insert("app_versions", [(0, 1), (int(versions("goose")[0]), 1)], ["version_id", "is_applied"])
    plan = import_and_adopt(migrations, CORPORA / "goose", "goose", table="app_versions", dry_run=True)["adoption"]
    assert plan["table"] == "app_versions" and len(plan["adopt"]) == 1
    with pytest.raises(BadInput, match="not a valid identifier"):
        import_and_adopt(migrations, CORPORA / "goose", "goose", table="x; DROP TABLE y")


def engine_targets(db, statement):
    """The tables, views and dictionaries a statement names as its targets, read from ``EXPLAIN AST``."""
    ast = [row[0] for row in db.query(f"EXPLAIN AST {render(statement, None)}").result_rows]
    kind, _, rest = ast[0].partition(" ")
    if kind == "DropQuery" and not rest.split("(children")[0].strip():  # a list: `DropQuery (…)`, then names
        return {line.split()[-1].split(".")[-1] for line in ast if line.strip().startswith("TableIdentifier")}
    if kind in ("CreateQuery", "AlterQuery", "TruncateQuery", "DropQuery"):  # `CreateQuery [db] name (children n)`
        return {rest.split("(children")[0].split()[-1]}
    if kind == "Rename":
        return {line.split()[-1] for line in ast[1:]}
    return set()  # INSERT, SELECT, OPTIMIZE…: no target the importer compares


def test_object_names_match_the_engines_parser(settings, db, tmp_path):
    """The importer's tokenizer names the same objects as the engine's parser, for every statement of every
    imported corpus file (apply and rollback)."""
    checked = 0
    for fmt in ("golang-migrate", "goose", "dbmate"):
        import_migrations(CORPORA / fmt, tmp_path / fmt, fmt)
        for f in read_files(tmp_path / fmt, settings.root):
            for statement in f.statements + f.rollback_statements:
                found = {t.name for t in touches(statement.text)}
                assert found == engine_targets(db, statement.text), (f.id, statement.line)
                checked += bool(found)
    assert checked > 30


@pytest.mark.slow
def test_cli_import_adopt(tmp_path, mdir):
    env = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"),
                        CHOPS_ENV_FILE=str(tmp_path / "none.env"), CHOPS_MIGRATIONS__DIR=str(mdir))
    assert inv("db.setup", env=env).returncode == 0
    v = versions("goose")
    assert inv("db.query", TOOL_TABLES["goose"], env=env).returncode == 0
    assert inv("db.query", f"INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, 1), ({v[0]}, 1)",
               env=env).returncode == 0
    created = inv("db.query", "CREATE TABLE page_views (ts DateTime, site_id UInt32, path String, referrer String, "
                  "duration_ms UInt32, session_id UUID) ENGINE = MergeTree ORDER BY (site_id, ts)", env=env)
    assert created.returncode == 0, created.stderr

    dry = inv("db.import", str(CORPORA / "goose"), "--from", "goose", "--adopt", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would record 1 migration as applied from goose_db_version" in dry.stderr
    assert "nothing was changed" in dry.stderr and not mdir.exists()

    done = inv("db.import", str(CORPORA / "goose"), "--from", "goose", "--adopt", "--json", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["adoption"]["recorded"] == [f"0001_{v[0]}_create_page_views"]
    status = json.loads(inv("db.status", "--json", env=env).stdout)
    assert [s["state"] for s in status] == ["applied"] + ["pending"] * 5
    migrated = inv("db.migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied 5 migrations" in migrated.stderr

    refused = inv("db.import", str(CORPORA / "goose"), "--from", "goose", "--table", "x", env=env)
    assert refused.returncode == 2 and "give --adopt too" in refused.stderr
