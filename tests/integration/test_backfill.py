"""Backfill for real: two dependent test pipelines, the real `inv`, the real embedded engine.

How we know nothing is lost: rows per day are exact after a run, a re-run, a --force run and a kill -9 + resume;
the ledger has one succeeded attempt per partition and plan.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.conftest import ROOT, clean_environ, inv

YESTERDAY = date.today() - timedelta(days=1)
DAYS = [YESTERDAY - timedelta(days=i) for i in range(6, -1, -1)]  # the last 7 days, oldest first

PIPELINES = '''
import os, time
from ops.core.errors import WorkFailed
from ops.pipelines.definition import checks, pipeline

@pipeline(name="numbers", target="numbers_t", checks=[checks.not_empty()])
def numbers(run):
    if os.environ.get("TEST_FAIL_DAY") == str(run.day):
        raise WorkFailed("made to fail on purpose")
    time.sleep(float(os.environ.get("TEST_SLEEP", "0")))
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number FROM numbers(100 + {run.day.day})",
                   run.params())

@pipeline(name="doubled", target="doubled_t", depends_on=["numbers"])
def doubled(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT day, n * 2 FROM numbers_t WHERE day = {{day:Date}}",
                   run.params())

@pipeline(name="by_hand", target="numbers_t", backfillable=False)
def by_hand(run):
    pass
'''


@pytest.fixture
def env(tmp_path):
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "testing.py").write_text(textwrap.dedent(PIPELINES))
    e = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"), CHOPS_ENV_FILE=str(tmp_path / "none"),
                      CHOPS_PIPELINES__DIR=str(pipelines))
    for args in (["db.setup"], ["db.migrate"],
                 ["db.query", "CREATE TABLE numbers_t (day Date, n UInt64) ENGINE = MergeTree PARTITION BY day ORDER BY n"],
                 ["db.query", "CREATE TABLE doubled_t (day Date, n UInt64) ENGINE = MergeTree PARTITION BY day ORDER BY n"]):
        result = inv(*args, env=e)
        assert result.returncode == 0, result.stderr
    return e


def q(env, sql):
    result = inv("db.query", sql, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def rows_per_day(env, table):
    return {r["day"]: r["n"] for r in q(env, f"SELECT toString(day) AS day, count() AS n FROM {table} GROUP BY day")}


EXPECTED = {str(d): 100 + d.day for d in DAYS}


def succeeded_attempts(env):
    return q(env, "SELECT pipeline, toString(partition) AS day, count() AS n FROM run_ledger FINAL "
                  "WHERE status = 'succeeded' GROUP BY pipeline, partition")


@pytest.mark.slow
def test_backfill_rerun_and_force_give_the_same_rows(env):
    first = inv("backfill", "--days", "7", "--parallel", "2", env=env)
    assert first.returncode == 0, first.stderr
    assert rows_per_day(env, "numbers_t") == EXPECTED
    assert rows_per_day(env, "doubled_t") == EXPECTED
    assert "14 partitions to run, 0 skipped" in first.stderr
    again = inv("backfill", "--days", "7", "--json", env=env)
    assert again.returncode == 0, again.stderr
    summary = {r["pipeline"]: r for r in json.loads(again.stdout)["summary"]}
    assert summary["numbers"]["skipped"] == 7 and summary["numbers"]["done"] == 0
    assert "nothing to do: 14 partitions skipped" in again.stderr and "no plan was stored" in again.stderr
    assert q(env, "SELECT count() AS n FROM backfill_plans") == [{"n": 1}]  # an empty plan is not stored
    forced = inv("backfill", "--days", "7", "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    assert "14 partitions to run" in forced.stderr and "reprocess all" in forced.stderr
    assert rows_per_day(env, "numbers_t") == EXPECTED and rows_per_day(env, "doubled_t") == EXPECTED
    assert {r["n"] for r in succeeded_attempts(env)} == {2}  # the first run and the forced one, per partition
    triggers = q(env, "SELECT DISTINCT toString(trigger) AS t FROM run_ledger")
    assert triggers == [{"t": "backfill"}]


def test_dry_run_writes_nothing(env):
    result = inv("backfill", "--days", "3", "--dry-run", "--json", env=env)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["dry_run"] and len(plan["partitions"]) == 6
    assert {p["status"] for p in plan["partitions"]} == {"never run"}
    assert q(env, "SELECT count() AS n FROM backfill_plans") == [{"n": 0}]
    assert q(env, "SELECT count() AS n FROM run_ledger") == [{"n": 0}]


@pytest.mark.slow
def test_one_failing_partition_does_not_stop_the_others_and_rerun_failed_fills_what_it_blocked(env):
    bad = str(DAYS[3])
    result = inv("backfill", "--days", "7", "--json", env={**env, "TEST_FAIL_DAY": bad})
    assert result.returncode == 1
    assert f"numbers {bad}: made to fail on purpose" in result.stderr and "--reprocess failed" in result.stderr
    summary = {r["pipeline"]: r for r in json.loads(result.stdout)["summary"]}
    assert (summary["numbers"]["done"], summary["numbers"]["failed"]) == (6, 1)
    assert (summary["doubled"]["done"], summary["doubled"]["blocked"]) == (6, 1)
    expected = {d: n for d, n in EXPECTED.items() if d != bad}
    assert rows_per_day(env, "numbers_t") == expected
    assert rows_per_day(env, "doubled_t") == expected  # doubled for the bad day was blocked, not run
    counts = json.loads(inv("backfill.counts", "--days", "7", "--json", env=env).stdout)
    grid = {g["pipeline"]: g["days"] for g in counts["coverage"]}
    assert grid["numbers"][bad] == "failed" and grid["doubled"][bad] is None
    # finding 2: --rerun-failed used to rebuild numbers only and report doubled "skipped", a hole left behind
    fixed = inv("backfill", "--days", "7", "--rerun-failed", "--json", env=env)
    assert fixed.returncode == 0, fixed.stderr
    assert "2 partitions to run, 12 skipped" in fixed.stderr and "reprocess failed" in fixed.stderr
    summary = {r["pipeline"]: r for r in json.loads(fixed.stdout)["summary"]}
    assert (summary["numbers"]["done"], summary["doubled"]["done"]) == (1, 1)
    assert rows_per_day(env, "numbers_t") == EXPECTED and rows_per_day(env, "doubled_t") == EXPECTED


def test_fail_fast_stops_starting_partitions(env):
    result = inv("backfill", "--days", "7", "--parallel", "1", "--fail-fast", "--json",
                 env={**env, "TEST_FAIL_DAY": str(DAYS[0])})
    assert result.returncode == 1
    outcomes = json.loads(result.stdout)["outcomes"]
    assert outcomes[0]["status"] == "failed"
    assert {o["status"] for o in outcomes[1:]} <= {"not started", "blocked"}
    assert rows_per_day(env, "numbers_t") == {}


@pytest.mark.slow
def test_kill_9_midway_then_resume_is_exact(env):
    proc = subprocess.Popen([str(Path(sys.executable).parent / "inv"), "backfill", "--days", "7", "--parallel", "1"],
                            cwd=ROOT, env={**env, "TEST_SLEEP": "0.4"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    plan_id, seen = None, 0
    deadline = time.time() + 90
    while time.time() < deadline:
        line = proc.stderr.readline()
        if line.startswith("plan "):
            plan_id = line.split()[1].rstrip(":")
        if line.startswith("["):
            seen += 1
            if seen == 5:
                break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert plan_id and seen == 5
    done = rows_per_day(env, "numbers_t")
    assert 0 < len(done) < 7 and all(done[d] == EXPECTED[d] for d in done)  # whole days only
    plans = json.loads(inv("backfill.plans", "--json", env=env).stdout)
    assert plans[0]["id"] == plan_id and plans[0]["pending"] + plans[0]["running"] + plans[0]["failed"] > 0
    resumed = inv("backfill", "--resume", plan_id, env=env)
    assert resumed.returncode == 0, resumed.stderr
    # it counts on from what the plan had done (finding 9: it counted from [1/14] and ended at [k/14])
    done = plans[0]["succeeded"]
    steps = [line.split("]")[0] + "]" for line in resumed.stderr.splitlines() if line.startswith("[")]
    assert steps == [f"[{n}/14]" for n in range(done + 1, 15)] and f"{done} done already" in resumed.stderr
    assert rows_per_day(env, "numbers_t") == EXPECTED and rows_per_day(env, "doubled_t") == EXPECTED
    per_plan = q(env, f"SELECT pipeline, partition, countIf(status = 'succeeded') AS ok FROM run_ledger FINAL "
                      f"WHERE plan_id = '{plan_id}' GROUP BY pipeline, partition")
    assert len(per_plan) == 14 and {r["ok"] for r in per_plan} == {1}  # each partition succeeded exactly once
    assert json.loads(inv("backfill.plans", "--json", env=env).stdout)[0]["done_percent"] == 100.0
    again = inv("backfill", "--resume", plan_id, "--json", env=env)
    assert {o["status"] for o in json.loads(again.stdout)["outcomes"]} == {"skipped"}


@pytest.mark.slow
def test_coverage_grid_shows_a_gap_made_on_purpose(env):
    gap = DAYS[2]
    assert inv("backfill", "--start", str(DAYS[0]), "--end", str(DAYS[1]), env=env).returncode == 0
    assert inv("backfill", "--start", str(DAYS[3]), "--end", str(DAYS[-1]), env=env).returncode == 0
    table = inv("backfill.counts", "--days", "7", env=env)
    assert table.returncode == 0, table.stderr
    numbers_row = next(line for line in table.stdout.splitlines() if line.strip().startswith("numbers "))
    assert numbers_row.split()[1:] == ["✓", "✓", "·", "✓", "✓", "✓", "✓"]
    assert f"{gap} 0 ⚠ no data" in [" ".join(line.split()[:5]) for line in table.stdout.splitlines()]
    assert "2 partitions not succeeded" in table.stderr


@pytest.mark.slow
def test_verify_rechecks_existing_data_without_rewriting(env):
    assert inv("backfill", "--days", "2", "--jobs", "numbers", env=env).returncode == 0
    result = json.loads(inv("backfill.verify", "--days", "2", "--jobs", "numbers", "--json", env=env).stdout)
    assert [(r["check"], r["passed"]) for r in result] == [("not_empty", True), ("not_empty", True)]
    before = q(env, "SELECT count() AS n FROM run_ledger")
    inv("db.query", f"ALTER TABLE numbers_t DROP PARTITION ID '{DAYS[-1]:%Y%m%d}'", env=env)
    failed = inv("backfill.verify", "--days", "1", "--jobs", "numbers", env=env)
    assert failed.returncode == 1 and "not_empty" in failed.stderr
    assert q(env, "SELECT count() AS n FROM run_ledger") == before  # verify wrote nothing


def test_list_shows_backfillable_and_not(env):
    rows = {r["pipeline"]: r for r in json.loads(inv("backfill.list", "--json", env=env).stdout)}
    assert rows["numbers"]["backfillable"] and not rows["by_hand"]["backfillable"]
    assert rows["doubled"]["depends_on"] == ["numbers"]


@pytest.mark.parametrize("args, fragment", [
    (["--days", "0"], "--days must be at least 1"),
    (["--days", "-3"], "--days must be at least 1"),
    (["--days", "week"], "--days must be a whole number"),
    (["--days", "400"], "more than backfill.max_days"),
    (["--days", "3", "--start", "2026-01-01"], "not both"),
    (["--start", "2026-03-02", "--end", "2026-03-01"], "is after --end"),
    (["--start", "2026-02-30"], "does not exist"),
    (["--start", str(date.today()), "--end", str(date.today() + timedelta(days=3))], "is in the future"),
    (["--days", "3", "--jobs", "nosuch"], "unknown pipeline 'nosuch'"),
    (["--days", "3", "--jobs", "by_hand"], "not backfillable"),
    (["--resume", "20260101-000000-abcdef"], "unknown plan id"),
    (["--days", "3", "--parallel", "0"], "--parallel must be at least 1"),
], ids=["zero", "negative", "text", "too-many", "both", "reversed", "impossible", "future", "unknown-job",
        "not-backfillable", "unknown-plan", "parallel-zero"])
def test_bad_input_is_one_line_exit_2_nothing_changed(env, args, fragment):
    result = inv("backfill", *args, env=env)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert q(env, "SELECT count() AS n FROM backfill_plans") == [{"n": 0}]


def test_max_days_can_be_raised_explicitly(env):
    result = inv("backfill", "--days", "400", "--max-days", "400", "--dry-run", "--jobs", "numbers", env=env)
    assert result.returncode == 0, result.stderr
