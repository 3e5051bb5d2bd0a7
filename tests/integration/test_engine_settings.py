"""ClickHouse settings on the real embedded engine: MergeTree and server settings reach the engine (through its
configuration file), query settings reach every statement, and a schema written for an older ClickHouse applies
only with the setting it needs. Each case runs in a process of its own: engine settings apply when an engine
starts, and this test process already has one open."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, clean_environ

# An AggregatingMergeTree with a column outside the sorting key that is not an aggregate: ClickHouse 26 refuses it
# (code 36) unless the MergeTree setting allow_dimensions_outside_sorting_key is set; older versions took it.
OLD_SCHEMA = ("CREATE TABLE agg (k UInt8, d String, v AggregateFunction(sum, UInt64)) "
              "ENGINE = AggregatingMergeTree ORDER BY k")

PROBE = """
import json, sys
from ops.core.errors import ChopsError
from ops.core.settings import load_settings
from ops.clickhouse.client import connect
try:
    db = connect(load_settings(), create=True)
    seen = {
        "merge_tree": db.scalar("SELECT value FROM system.merge_tree_settings "
                                "WHERE name = 'allow_dimensions_outside_sorting_key'"),
        "server": db.scalar("SELECT value FROM system.server_settings WHERE name = 'background_pool_size'"),
        "query": db.scalar("SELECT getSetting('max_threads')"),
    }
    try:
        db.command(sys.argv[1])
        seen["created"] = db.scalar("SELECT engine FROM system.tables WHERE database = currentDatabase() "
                                    "AND name = 'agg'")
    except ChopsError as exc:
        seen["refused"] = exc.line()
except ChopsError as exc:
    seen = {"error": exc.line(), "exit": exc.exit_code}
print(json.dumps(seen))
"""


def probe(tmp_path, **env):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, OLD_SCHEMA], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"),
                          CHOPS_ENV_FILE=str(tmp_path / "none.env"), **env))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_old_schema_refused_without_the_merge_tree_setting_and_created_with_it(tmp_path):
    without = probe(tmp_path / "a")
    assert (without["merge_tree"], without["server"]) == ("0", "2")  # chDB's defaults
    assert "created" not in without
    assert "neither part of the sorting key nor aggregate measures" in without["refused"]
    assert not (tmp_path / "a" / "var" / "clickhouse.config.xml").exists()

    with_setting = probe(tmp_path / "b", CHOPS_CLICKHOUSE__MERGE_TREE__ALLOW_DIMENSIONS_OUTSIDE_SORTING_KEY="1",
                         CHOPS_CLICKHOUSE__SERVER_SETTINGS__BACKGROUND_POOL_SIZE="8",
                         CHOPS_CLICKHOUSE__SETTINGS__MAX_THREADS="1")
    assert with_setting == {"merge_tree": "1", "server": "8", "query": 1, "created": "AggregatingMergeTree"}
    written = (tmp_path / "b" / "var" / "clickhouse.config.xml").read_text()
    assert "<allow_dimensions_outside_sorting_key>1</allow_dimensions_outside_sorting_key>" in written


def test_settings_in_the_url(tmp_path):
    url = (f"chdb://{tmp_path}/ch?max_threads=1&merge_tree.allow_dimensions_outside_sorting_key=true"
           "&server_settings.background_pool_size=4")
    assert probe(tmp_path, CLICKHOUSE_URL=url) == {
        "merge_tree": "1", "server": "4", "query": 1, "created": "AggregatingMergeTree"}


@pytest.mark.parametrize("variable, fragment", [
    ("CHOPS_CLICKHOUSE__MERGE_TREE__NO_SUCH_SETTING",
     "clickhouse.merge_tree: ClickHouse refused the MergeTree settings: Unknown setting 'no_such_setting'"),
    ("CHOPS_CLICKHOUSE__SERVER_SETTINGS__NO_SUCH_SETTING",
     "clickhouse.server_settings: ClickHouse has no server setting no_such_setting"),
    ("CHOPS_CLICKHOUSE__SETTINGS__NO_SUCH_SETTING", "clickhouse.settings: Unknown setting 'no_such_setting'"),
], ids=["merge-tree", "server", "query"])
def test_unknown_names_are_refused_when_the_engine_opens(tmp_path, variable, fragment):
    # ClickHouse itself ignores an unknown server setting and reports an unknown MergeTree one only at the next
    # CREATE TABLE: chops checks them as the engine starts.
    seen = probe(tmp_path, **{variable: "1"})
    assert seen["exit"] == 2 and fragment in seen["error"], seen


def test_an_open_engine_refuses_other_engine_settings(settings, db):
    from ops.clickhouse.client import connect
    from ops.core.errors import WorkFailed

    with pytest.raises(WorkFailed, match="already open in this process with other engine settings"):
        connect(settings.with_overrides(clickhouse__merge_tree__allow_dimensions_outside_sorting_key=1))
    other = connect(settings.with_overrides(clickhouse__settings__max_block_size=1000), database=db.name)
    try:  # query settings are per client: this one has it, the engine's other clients do not
        assert other.scalar("SELECT getSetting('max_block_size')") == 1000
        assert db.scalar("SELECT getSetting('max_block_size')") != 1000
    finally:
        other.close()
