"""Health that tells the truth (issue 14, findings 4 and 7), for real: the real `inv`, the real embedded engine, real
processes and signals.

A day's state is its newest attempt; a failure is acknowledged with `proc.ack` (who, when, why) and proc.check
respects it until the day fails again; a deleted pipeline's failures only warn, naming it; a killed-then-resumed
backfill leaves a pid file that no longer fails health; orphaned staging tables are a check item; a pipeline module
that calls sys.exit at import is listed broken while every other pipeline runs, a cron run imports only what it
needs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.conftest import ROOT, inv, pipeline_project, query

DAY = (date.today() - timedelta(days=3)).isoformat()
INV = str(Path(sys.executable).parent / "inv")

PIPELINES = '''
import os, time
from pathlib import Path
from ops.core.errors import WorkFailed
from ops.pipelines.definition import pipeline

@pipeline(name="numbers", target="numbers_t")
def numbers(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number FROM numbers(1000)", run.params())

@pipeline(name="flaky", target="numbers_t")
def flaky(run):
    if Path(os.environ["TEST_FAIL"]).exists():
        raise WorkFailed("the source is not there (made to fail on purpose)")
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number FROM numbers(10)", run.params())

@pipeline(name="blocking", target="numbers_t")
def blocking(run):
    Path(os.environ["TEST_MARK"]).write_text(str(run.day))
    while Path(os.environ["TEST_BLOCK"]).exists():
        time.sleep(0.05)
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number FROM numbers(10)", run.params())
'''


@pytest.fixture
def env(tmp_path):
    e = pipeline_project(tmp_path, PIPELINES, ("CREATE TABLE numbers_t (day Date, n UInt64) ENGINE = MergeTree "
                                              "PARTITION BY day ORDER BY n",),
                         TEST_FAIL=str(tmp_path / "fail"), TEST_MARK=str(tmp_path / "mark"),
                         TEST_BLOCK=str(tmp_path / "block"))
    result = inv("pipeline.run", "numbers", "--date", DAY, env=e)
    assert result.returncode == 0, result.stderr
    return e


q = query


def checks(env):
    result = inv("proc.check", "--json", env=env)
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def history(env, name):
    result = inv("pipeline.history", "--name", name, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def fail_flaky(env, tmp_path, day=DAY):
    (tmp_path / "fail").touch()
    failed = inv("pipeline.run", "flaky", "--date", day, env=env)
    assert failed.returncode == 1 and "made to fail on purpose" in failed.stderr
    (tmp_path / "fail").unlink()
    return history(env, "flaky")[0]["run_id"]


# --- a day is its newest attempt --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_failure_superseded_by_a_later_success_passes(env, tmp_path):
    fail_flaky(env, tmp_path)
    assert checks(env)["failed runs"]["status"] == "fail"
    assert inv("pipeline.run", "flaky", "--date", DAY, env=env).returncode == 0
    found = checks(env)["failed runs"]
    assert (found["status"], found["reason"]) == ("pass", "1 failed run in the last day, each retried successfully")


# --- proc.ack ---------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_an_acknowledged_failure_passes_until_the_day_fails_again(env, tmp_path):
    run_id = fail_flaky(env, tmp_path)
    failing = checks(env)["failed runs"]
    assert failing["status"] == "fail" and f"flaky {DAY} failed at" in failing["reason"]
    assert f"run {run_id[:8]}" in failing["reason"] and "inv proc.ack --run-id RUN" in failing["reason"]

    dry = inv("proc.ack", "--run-id", run_id[:8], "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    [would] = json.loads(dry.stdout)["to_ack"]
    assert (would["run_id"], would["pipeline"], would["status"]) == (run_id, "flaky", "failed")
    assert checks(env)["failed runs"]["status"] == "fail"  # a dry run records nothing

    acked = inv("proc.ack", "--run-id", run_id[:8], "--note", "the source is gone for good", env=env)
    assert acked.returncode == 0, acked.stderr
    assert "acknowledged 1 failed run as " in acked.stderr and run_id[:8] in acked.stdout
    found = checks(env)["failed runs"]
    assert (found["status"], found["reason"]) == ("pass", "1 failure acknowledged (inv pipeline.history shows by "
                                                          "whom)")
    [row] = q(env, f"SELECT acked_by, note, toString(status) AS status FROM run_acks FINAL WHERE run_id = '{run_id}'")
    assert row["acked_by"].endswith(f"@{socket.gethostname()}") and row["note"] == "the source is gone for good"

    again = inv("proc.ack", "--run-id", run_id, env=env)  # twice: said, nothing new written
    assert again.returncode == 0 and "was acknowledged already by" in again.stderr
    assert len(q(env, f"SELECT * FROM run_acks WHERE run_id = '{run_id}'")) == 1

    newer = fail_flaky(env, tmp_path)  # the same day fails again: a new run, not acknowledged
    found = checks(env)["failed runs"]
    assert found["status"] == "fail" and f"run {newer[:8]}" in found["reason"]


@pytest.mark.slow
def test_ack_bad_input_is_one_line_exit_2_and_nothing_is_recorded(env):
    [done] = history(env, "numbers")
    for args, fragment in (
        ([], "name a failed run (--run-id RUN_ID) or a pipeline"),
        (["--run-id", "abc"], "is not a run id"),
        (["--run-id", "0123456789abcdef"], "no run 0123456789abcdef in the ledger"),
        (["--pipeline", "numbers"], "no failure of numbers to acknowledge"),
        (["--date", DAY], "name a failed run"),
        (["--pipeline", "flaky", "--date", "yesterday"], "must be YYYY-MM-DD"),
        (["--run-id", done["run_id"][:8]], "succeeded: only a failed, killed or died run is acknowledged"),
    ):
        result = inv("proc.ack", *args, env=env)
        assert result.returncode == 2 and fragment in result.stderr and "Traceback" not in result.stderr, \
            (args, result.stderr)
    assert q(env, "SELECT count() AS n FROM run_acks") == [{"n": 0}]


@pytest.mark.slow
def test_failures_of_a_deleted_pipeline_warn_naming_it_and_are_acknowledged_by_name(env):
    run_id = str(uuid.uuid4())
    q(env, f"INSERT INTO run_ledger (run_id, pipeline, partition, attempt, status, trigger, started_at, finished_at, "
           f"error, host, pid, code_version) VALUES ('{run_id}', 'old_rollup', '{DAY}', 1, 'failed', 'cron', "
           f"now64(6) - 60, now64(6), 'gone', '{socket.gethostname()}', 1, 'test')")
    found = checks(env)["failed runs"]
    assert found["status"] == "warn", found
    assert found["reason"] == ("failed runs of pipelines that no longer exist: old_rollup (1 day) "
                               "(acknowledge them: inv proc.ack --pipeline old_rollup)")
    acked = inv("proc.ack", "--pipeline", "old_rollup", "--json", env=env)
    assert acked.returncode == 0, acked.stderr
    report = json.loads(acked.stdout)
    assert [a["run_id"] for a in report["to_ack"]] == [run_id] and report["acknowledged"]["by"]
    assert checks(env)["failed runs"]["status"] == "pass"


@pytest.mark.slow
def test_history_shows_who_acknowledged_a_failure(env, tmp_path):
    run_id = fail_flaky(env, tmp_path)
    assert inv("proc.ack", "--run-id", run_id, "--note", "known outage", env=env).returncode == 0
    newest = history(env, "flaky")[0]
    assert newest["acknowledged"]["note"] == "known outage" and newest["acknowledged"]["by"]
    table = inv("pipeline.history", "--name", "flaky", env=env).stdout
    assert "failed (acked)" in table and "acked by" in table and "known outage" in table


# --- stale pid files and locks of work that succeeded since; orphaned staging tables --------------------------------

@pytest.mark.slow
def test_the_pid_file_of_a_sigkilled_run_fails_health_until_its_day_succeeds(env, tmp_path):
    (tmp_path / "block").touch()
    proc = subprocess.Popen([INV, "pipeline.run", "blocking", "--date", DAY], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (tmp_path / "mark").exists() and time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    pid_file = tmp_path / "var" / "run" / f"{proc.pid}.json"
    assert pid_file.exists()
    before = checks(env)
    assert before["pid files"]["status"] == "fail" and f"pid {proc.pid} (pipeline.run blocking {DAY})" in \
        before["pid files"]["reason"]
    assert before["locks"]["status"] == "fail" and f"pipeline-blocking-{DAY}.lock" in before["locks"]["reason"]
    assert before["staging tables"]["status"] == "warn" and "_chops_staging_blocking_" in \
        before["staging tables"]["reason"]

    (tmp_path / "block").unlink()
    assert inv("pipeline.run", "blocking", "--date", DAY, env=env).returncode == 0
    after = checks(env)
    assert pid_file.exists()  # still there (proc.clean removes it), but its work is done
    assert after["pid files"]["status"] == "pass", after["pid files"]
    assert f"blocking {DAY} has succeeded since" in after["pid files"]["reason"]
    assert after["locks"]["status"] == "pass"  # the rerun took the lock and released it
    assert after["staging tables"]["status"] == "pass"  # the rerun dropped the dead run's staging table
    assert after["failed runs"]["status"] == "pass"


@pytest.mark.slow
def test_an_orphaned_staging_table_is_a_check_item(env):
    name = f"_chops_staging_numbers_{DAY.replace('-', '')}_deadbeef"
    q(env, f"CREATE TABLE {name} AS numbers_t")
    found = checks(env)["staging tables"]
    assert found["status"] == "warn" and f"{name} (no run deadbeef in the ledger)" in found["reason"]
    assert inv("proc.clean", env=env).returncode == 0
    assert checks(env)["staging tables"]["status"] == "pass"


@pytest.mark.slow
def test_a_killed_then_resumed_backfill_passes_health(env, tmp_path):
    (tmp_path / "block").touch()
    proc = subprocess.Popen([INV, "backfill", "--start", DAY, "--end", DAY, "--jobs", "blocking"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (tmp_path / "mark").exists() and time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        [pid_file] = (tmp_path / "var" / "run").glob("*.json")
        plan_id = json.loads(pid_file.read_text())["what"].split()[-1]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    before = checks(env)
    assert before["pid files"]["status"] == "fail" and f"plan {plan_id}" in before["pid files"]["reason"]

    (tmp_path / "block").unlink()
    resumed = inv("backfill", "--resume", plan_id, env=env)
    assert resumed.returncode == 0, resumed.stderr
    after = checks(env)
    assert pid_file.exists()
    assert after["pid files"]["status"] == "pass", after["pid files"]
    assert f"every partition of plan {plan_id} has succeeded since" in after["pid files"]["reason"]
    for name in ("failed runs", "locks", "staging tables"):
        assert after[name]["status"] == "pass", after[name]


# --- one bad module does not take everything down -------------------------------------------------------------------

EXITS = '''
import sys
from ops.pipelines.definition import pipeline

@pipeline(name="quitter", target="numbers_t")
def quitter(run):
    pass

sys.exit(3)
'''


@pytest.mark.slow
def test_a_module_that_calls_sys_exit_is_listed_broken_while_the_others_run(env, tmp_path):
    pipelines = Path(env["CHOPS_PIPELINES__DIR"])
    (pipelines / "exits.py").write_text(textwrap.dedent(EXITS))
    listed = inv("pipeline.list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr  # it was exit 3 with no output
    report = json.loads(listed.stdout)
    assert {p["name"] for p in report["pipelines"]} == {"numbers", "flaky", "blocking"}
    assert list(report["errors"].values()) == ["exits.py (line 9): calls sys.exit(3) when imported"]
    shown = inv("pipeline.list", env=env)
    assert "warning: exits.py (line 9): calls sys.exit(3) when imported" in shown.stderr

    found = checks(env)["pipelines"]
    assert found["status"] == "fail" and "exits.py (line 9): calls sys.exit(3) when imported" in found["reason"]
    for trigger in ("manual", "cron"):
        ran = inv("pipeline.run", "numbers", "--date", DAY, "--force", "--trigger", trigger, env=env)
        assert ran.returncode == 0, ran.stderr
    refused = inv("pipeline.run", "quitter", "--date", DAY, env=env)
    assert refused.returncode == 2 and "pipeline 'quitter' did not load: exits.py (line 9)" in refused.stderr


def test_a_cron_run_imports_only_the_modules_it_needs(env, tmp_path):
    pipelines = Path(env["CHOPS_PIPELINES__DIR"])
    (pipelines / "other.py").write_text(textwrap.dedent(f'''
        from ops.pipelines.definition import pipeline
        open({str(tmp_path / "other-imported")!r}, "w").close()

        @pipeline(name="other", target="numbers_t")
        def other(run):
            pass
        '''))
    ran = inv("pipeline.run", "numbers", "--date", DAY, "--force", "--trigger", "cron", env=env)
    assert ran.returncode == 0, ran.stderr
    assert not (tmp_path / "other-imported").exists()
    assert inv("pipeline.run", "numbers", "--date", DAY, "--force", env=env).returncode == 0
    assert (tmp_path / "other-imported").exists()  # a manual run still looks at every module
