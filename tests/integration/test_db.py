"""The db collection against a real embedded engine, through the library and through the real `inv`."""

import json
import os
from datetime import date

import pytest


def test_database_fixture_is_isolated(db, settings):
    db.command("CREATE TABLE events (day Date, n UInt64) ENGINE = MergeTree ORDER BY day")
    db.insert("events", [[date(2026, 11, 1), 3], [date(2026, 11, 2), 4]], ["day", "n"])
    assert db.scalar("SELECT sum(n) FROM events") == 7
    assert db.scalar("SELECT currentDatabase()") == db.name != settings.get("clickhouse.database")


def test_sql_values_are_parameters(db):
    db.command("CREATE TABLE t (s String) ENGINE = MergeTree ORDER BY s")
    hostile = "x'); DROP TABLE t; --"
    db.insert("t", [[hostile]], ["s"])
    assert db.scalar("SELECT count() FROM t WHERE s = {s:String}", {"s": hostile}) == 1


def test_load_file_reads_exactly_the_named_file(db, tmp_path):
    """The engine reads a file itself (FROM INFILE), which would expand glob characters: a name with them, or with
    a quote, still loads that one file and nothing beside it."""
    db.command("CREATE TABLE t (n UInt8, name String) ENGINE = MergeTree ORDER BY n")
    names = ["x1.csv", "x2.csv", "x*.csv", "x{1,2}.csv", "it's.csv", "x?.csv", "x[1].csv"]
    for i, name in enumerate(names):
        (tmp_path / name).write_text(f"n,name\n{i},{name.replace(',', ';')}\n")
    for name in names[2:]:
        db.command("TRUNCATE TABLE t")
        db.load_file("t", tmp_path / name, "CSVWithNames")
        assert db.rows("SELECT name FROM t") == [{"name": name.replace(",", ";")}], name


def test_load_file_refuses_a_bad_row(db, tmp_path):
    from ops.core.errors import DatabaseError
    from ops.pipelines.runner import NO_BAD_ROWS

    db.command("CREATE TABLE t (n UInt8) ENGINE = MergeTree ORDER BY n")
    (tmp_path / "bad.csv").write_text("n\n1\nnot a number\n3\n")
    with pytest.raises(DatabaseError):
        db.load_file("t", tmp_path / "bad.csv", "CSVWithNames", settings=NO_BAD_ROWS)
    assert db.scalar("SELECT count() FROM t") == 0


def test_release_memory_gives_the_engines_spare_memory_back(db, tmp_path):
    def anon_mb():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon"):
                return int(line.split()[1]) / 1024

    db.command("CREATE TABLE t (n UInt64, s String) ENGINE = MergeTree ORDER BY n")
    path = tmp_path / "big.csv"
    path.write_text("n,s\n" + "".join(f"{i},{'x' * 40}{i}\n" for i in range(500_000)))
    db.load_file("t", path, "CSVWithNames")
    held = anon_mb()
    db.release_memory()
    assert anon_mb() < held - 10, "the allocator kept what loading took"
    assert db.scalar("SELECT count() FROM t") == 500_000  # and the engine works on


def test_memory_is_released_only_when_the_process_grew(db, tmp_path):
    """A backfill asks after every partition and around every file: small work never pays for a purge, and a
    big load is given back before the next statement."""
    from ops.clickhouse.client import RELEASE_GROWTH, resident_bytes

    db.command("CREATE TABLE t (n UInt64, s String) ENGINE = MergeTree ORDER BY n")
    assert db.releases_memory  # clickhouse.memory_release_mb = 32 by default
    db.release_memory()
    db.command("INSERT INTO t SELECT number, toString(number) FROM numbers(200)")
    assert db.release_memory_if_grown() is False  # 200 rows: nothing to give back, no purge
    path = tmp_path / "big.csv"
    path.write_text("n,s\n" + "".join(f"{i},{'x' * 40}{i}\n" for i in range(500_000)))
    db.load_file("t", path, "CSVWithNames")
    grown = resident_bytes()
    assert db.release_memory_if_grown(growth=0) is False  # clickhouse.memory_release_mb = 0: never
    assert db.release_memory_if_grown(growth=RELEASE_GROWTH // 4) is True
    assert resident_bytes() < grown - (10 << 20), "the purge gave nothing back"
    assert db.release_memory_if_grown() is False  # measured again from the release just made


def test_infile_sql_quotes_what_it_cannot_bind():
    from ops.clickhouse.client import infile_sql
    from ops.core.errors import BadInput

    assert infile_sql("t", "/in/it's\\x.csv", "CSVWithNames", ["a"], {"input_format_allow_errors_num": 0}) == (
        "INSERT INTO `t` (`a`) FROM INFILE '/in/it\\'s\\\\x.csv' SETTINGS input_format_allow_errors_num = 0 "
        "FORMAT CSVWithNames")
    for bad in (dict(table="t; DROP TABLE x"), dict(columns=["a`b"]), dict(fmt="CSV SETTINGS x=1"),
                dict(settings={"max_threads": "1; DROP"}), dict(path="/in/*.csv")):
        args = {"table": "t", "path": "/in/a.csv", "fmt": "CSV", **bad}
        with pytest.raises(BadInput):
            infile_sql(**args)


def test_database_error_is_one_readable_line(db):
    from ops.core.errors import DatabaseError

    with pytest.raises(DatabaseError) as err:
        db.command("SELECT nosuch_function()")
    line = err.value.line()
    assert "nosuch_function" in line and "\n" not in line and "Stack trace" not in line


@pytest.mark.smoke
def test_setup_twice_is_a_no_op(run_inv):
    first = run_inv("db.setup", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["created_database"] is True
    second = run_inv("db.setup", "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["created_database"] is False
    assert json.loads(second.stdout)["created_data_dir"] is False


def test_setup_dry_run_changes_nothing(run_inv, cli_var):
    result = run_inv("db.setup", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would set up" in result.stderr
    assert not (cli_var / "clickhouse").exists()


def test_info_json_lists_tables_with_rows_and_bytes(run_inv):
    assert run_inv("db.setup").returncode == 0
    made = run_inv("db.query", "CREATE TABLE m (x UInt32) ENGINE = MergeTree ORDER BY x")
    assert made.returncode == 0, made.stderr
    assert run_inv("db.query", "INSERT INTO m SELECT number FROM numbers(1000)").returncode == 0
    result = run_inv("db.info", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["engine"] == "embedded chDB" and info["version"].startswith("26.")
    assert info["url"].startswith("chdb:///")
    [table] = info["tables"]
    assert (table["name"], table["engine"], table["rows"]) == ("m", "MergeTree", 1000)
    assert table["bytes"] > 0
    human = run_inv("db.info")
    assert "MergeTree" in human.stdout and "1,000" in human.stdout


def test_info_before_setup_names_the_fix(run_inv):
    result = run_inv("db.info")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()] and "inv db.setup" in result.stderr
    assert "Traceback" not in result.stderr


def test_query_formats(run_inv):
    assert run_inv("db.setup").returncode == 0
    sql = "SELECT number AS n, toString(number * 2) AS s FROM numbers(3)"
    as_json = run_inv("db.query", sql, "--json")
    assert json.loads(as_json.stdout) == [{"n": 0, "s": "0"}, {"n": 1, "s": "2"}, {"n": 2, "s": "4"}]
    as_csv = run_inv("db.query", sql, "--csv")
    assert as_csv.stdout.splitlines() == ["n,s", "0,0", "1,2", "2,4"]
    table = run_inv("db.query", sql)
    assert "3 rows" in table.stderr and table.stdout.splitlines()[0].split() == ["n", "s"]
    bad = run_inv("db.query", "SELEC 1")
    assert bad.returncode == 1 and bad.stderr.startswith("error: ClickHouse refused")
    both = run_inv("db.query", sql, "--json", "--csv")
    assert both.returncode == 2


def test_drop_refuses_without_yes_when_not_interactive(run_inv):
    assert run_inv("db.setup").returncode == 0
    refused = run_inv("db.drop")
    assert refused.returncode == 2
    assert "without --yes" in refused.stderr and "Traceback" not in refused.stderr
    still = run_inv("db.info", "--json")
    assert still.returncode == 0  # nothing was dropped
    dropped = run_inv("db.drop", "--yes", "--json")
    assert dropped.returncode == 0 and json.loads(dropped.stdout)["dropped"] is True
    again = run_inv("db.drop", "--yes", "--json")
    assert json.loads(again.stdout)["dropped"] is False


def test_bad_input_from_the_command_line(run_inv, tmp_path):
    cases = {
        "url-scheme": {"CLICKHOUSE_URL": "mysql://h/db"},
        "url-host": {"CLICKHOUSE_URL": "http://:8123/db"},
        "url-port": {"CLICKHOUSE_URL": "http://h:eighty/db"},
        "env": {"CHOPS_ENV": "nosuch"},
        "key": {"CHOPS_CLICKHOUSE__NOSUCH": "1"},
    }
    for name, env in cases.items():
        result = run_inv("db.info", extra_env=env)
        assert result.returncode == 2, (name, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, result.stderr)


def test_data_path_not_writable(run_inv, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_inv("db.setup", extra_env={"CHOPS_PATHS__VAR": str(blocker / "var")})
    assert result.returncode == 2
    assert "cannot be created" in result.stderr and "Traceback" not in result.stderr
    read_only = run_inv("db.setup", extra_env={"CHOPS_PATHS__VAR": "/proc/self"})
    assert read_only.returncode == 2, read_only.stderr


def test_debug_shows_the_traceback(run_inv):
    result = run_inv("db.info", extra_env={"CHOPS_DEBUG": "1", "CHOPS_ENV": "nosuch"})
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_config_masks_secrets(run_inv, tmp_path):
    env_file = tmp_path / "test.env"
    env_file.write_text("CLICKHOUSE_URL=http://ops:topsecret@ch.example:8123/prod\n")
    os.chmod(env_file, 0o600)
    result = run_inv("config", "--json")
    assert result.returncode == 0, result.stderr
    assert "topsecret" not in result.stdout + result.stderr
    rows = {r["key"]: r for r in json.loads(result.stdout)["settings"]}
    assert rows["clickhouse.url"]["value"] == "http://ops:********@ch.example:8123/prod"
    assert rows["clickhouse.url"]["source"].endswith("test.env (CLICKHOUSE_URL)")
