"""Backfill at scale, for real: planning in a fixed number of queries, the dry run's summary, what a failing check
says, verify's summary, and the runner's shortcuts (the partition id, one query for the checks) agreeing with
ClickHouse."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.conftest import ROOT, inv, pipeline_project, query

YESTERDAY = date.today() - timedelta(days=1)

PIPELINES = '''
import os, time
from ops.pipelines.definition import checks, pipeline

@pipeline(name="numbers", target="numbers_t", checks=[checks.rows_between(int(os.environ.get("TEST_MIN", "1")))])
def numbers(run):
    time.sleep(float(os.environ.get("TEST_SLEEP", "0")))
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number FROM numbers(16)", run.params())

@pipeline(name="doubled", target="doubled_t", depends_on=["numbers"],
          checks=[checks.not_empty(), checks.reconciles("n", source="numbers_t")])
def doubled(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT day, 1 FROM numbers_t WHERE day = {{day:Date}}", run.params())
'''
TABLES = tuple(f"CREATE TABLE {t} (day Date, n UInt64) ENGINE = MergeTree PARTITION BY day ORDER BY n"
               for t in ("numbers_t", "doubled_t"))

# Counts the queries make_plan sends for a short and a long range (argv: days of each).
COUNT_PLAN_QUERIES = """
import sys
from datetime import date, timedelta
from ops.clickhouse import client
from ops.core.settings import load_settings
from ops.pipelines import backfill
from ops.pipelines.definition import load_pipelines

sent = []
for name in ("query", "command"):
    original = getattr(client.Database, name)
    def counted(self, sql, *args, _original=original, **kwargs):
        sent.append(sql)
        return _original(self, sql, *args, **kwargs)
    setattr(client.Database, name, counted)
s = load_settings()
registry = load_pipelines(s)
db = client.connect(s)
last = date.today() - timedelta(days=1)
for days in map(int, sys.argv[1:]):
    before = len(sent)
    plan = backfill.make_plan(s, db, registry, last - timedelta(days=days - 1), last, ["numbers", "doubled"])
    print(days, len(plan.items), len(sent) - before)
"""


def _env(tmp_path, **extra):
    return pipeline_project(tmp_path, PIPELINES, TABLES, **extra)


@pytest.mark.slow
def test_planning_sends_the_same_queries_for_any_range(tmp_path):
    env = _env(tmp_path)
    assert inv("backfill", "--days", "2", env=env).returncode == 0  # a ledger with rows in it
    out = subprocess.run([sys.executable, "-c", COUNT_PLAN_QUERIES, "3", "300"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    (short, short_items, short_queries), (long, long_items, long_queries) = [
        tuple(map(int, line.split())) for line in out.stdout.split("\n") if line.strip()]
    assert (short_items, long_items) == (2, 2 * 298)  # two days were done already
    assert short_queries == long_queries == 2  # the ledger's partition states and the targets' parts


@pytest.mark.slow
def test_dry_run_summarizes_per_pipeline_and_details_list_every_partition(tmp_path):
    env = _env(tmp_path)
    assert inv("backfill", "--days", "1", env=env).returncode == 0
    summary = inv("backfill", "--days", "3", "--dry-run", env=env)
    assert summary.returncode == 0, summary.stderr
    assert "4 partitions to run, 2 skipped" in summary.stdout and "--details lists every partition" in summary.stderr
    assert "skip (already succeeded)" not in summary.stdout  # no partition rows without --details
    details = inv("backfill", "--days", "3", "--dry-run", "--details", env=env)
    assert details.returncode == 0, details.stderr
    assert str(YESTERDAY - timedelta(days=2)) in details.stdout and "skip (already succeeded)" in details.stdout
    data = json.loads(inv("backfill", "--days", "3", "--dry-run", "--json", env=env).stdout)
    assert {r["pipeline"]: (r["run"], r["skipped"]) for r in data["summary"]} == {"numbers": (2, 1),
                                                                                   "doubled": (2, 1)}
    done = [p for p in data["partitions"] if p["day"] == str(YESTERDAY)]
    assert {(p["pipeline"], p["status"], p["rows"]) for p in done} == {("numbers", "succeeded", 16),
                                                                       ("doubled", "succeeded", 16)}


def test_a_failing_check_says_what_it_found_against_what_it_expects(tmp_path):
    env = _env(tmp_path, TEST_MIN="100")
    result = inv("backfill", "--days", "1", "--select", "numbers", env=env)
    assert result.returncode == 1
    assert "check rows_between(100, None) failed: 16 rows, expected at least 100" in result.stderr, result.stderr
    assert f"numbers {YESTERDAY}: numbers {YESTERDAY}" not in result.stderr  # the pipeline and day said once
    assert "1 partition did not succeed" in result.stderr, result.stderr
    [attempt] = query(env, "SELECT toString(status) AS status, error FROM run_ledger FINAL")
    assert attempt["status"] == "failed" and "16 rows, expected at least 100" in attempt["error"]


@pytest.mark.slow
def test_verify_prints_the_failures_and_a_summary(tmp_path):
    env = _env(tmp_path)
    assert inv("backfill", "--days", "2", env=env).returncode == 0
    fine = inv("backfill.verify", "--days", "2", env=env)
    assert fine.returncode == 0, fine.stderr
    assert fine.stdout.strip() == "" and "6 checks on 4 partitions" in fine.stderr and "6 passed, 0 failed" in fine.stderr
    every = inv("backfill.verify", "--days", "2", "--details", env=env)
    assert every.stdout.count(" ok") == 6
    inv("db.query", f"INSERT INTO doubled_t VALUES ('{YESTERDAY}', 1)", env=env)
    bad = inv("backfill.verify", "--days", "2", env=env)
    assert bad.returncode == 1
    assert "FAILED" in bad.stdout and bad.stdout.count(" ok") == 0  # only the failure is listed
    assert "1 failed" in bad.stderr and "sum(n) is off by 1, expected 16" in bad.stderr


def test_the_partition_id_the_runner_computes_is_clickhouses(db):
    from ops.pipelines.runner import partition_id

    days = [date(1970, 1, 1), date(2025, 1, 1), date(2026, 11, 28), date(2149, 6, 6)]
    found = db.query("SELECT partitionId(d) FROM (SELECT arrayJoin({days:Array(Date)}) AS d)",
                     {"days": days}).result_rows
    assert [r[0] for r in found] == [partition_id(d) for d in days]


@pytest.mark.slow
def test_a_killed_backfill_stays_visible_through_its_write_ahead_file(tmp_path):
    env = _env(tmp_path)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "inv"), "backfill", "--days", "6", "--select",
                             "numbers", "--parallel", "1"], cwd=ROOT, env={**env, "TEST_SLEEP": "0.5"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen, deadline = 0, time.time() + 90
    while seen < 2 and time.time() < deadline:
        seen += proc.stderr.readline().startswith("[")
    time.sleep(0.2)  # into the third partition's build
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    pending = list((tmp_path / "var").glob("*.ledger-pending/*.jsonl"))
    assert seen == 2 and pending and pending[0].read_text().count("\n") >= 5  # 2 x (running, succeeded), running
    history = json.loads(inv("pipeline.history", "--json", env=env).stdout)
    statuses = sorted(a["status"] for a in history)
    assert statuses[:1] == ["died"] and statuses.count("succeeded") >= 2, statuses
    assert not any(p.exists() for p in pending)  # replayed into the table, then removed
    assert query(env, "SELECT count() AS n FROM run_ledger FINAL")[0]["n"] == len(history)


@pytest.mark.slow
def test_a_day_done_before_is_skipped_without_saying_it_waited(tmp_path):
    env = _env(tmp_path)
    assert inv("pipeline.run", "numbers", "--date", str(YESTERDAY), env=env).returncode == 0
    again = inv("pipeline.run", "numbers", "--date", str(YESTERDAY), env=env)
    assert again.returncode == 0 and "already succeeded at " in again.stderr and "waited" not in again.stderr
