"""Alerts for real (issue 14, finding 10): a real shell script as ``[alerts] on_failure``, real failing runs and
backfills through the real ``inv``, and exactly what the script received on stdin and in its environment; an alert
command that fails or hangs never changes the run's outcome; ``inv pipeline.alert-test``.
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

from tests.conftest import ROOT, clean_environ, inv, pipeline_project, query

DAY = (date.today() - timedelta(days=3)).isoformat()
DAY2 = (date.today() - timedelta(days=2)).isoformat()

PIPELINES = '''
import os
from pathlib import Path
from ops.pipelines.definition import pipeline

@pipeline(name="good", target="t", schedule="15 1 * * *")
def good(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number FROM numbers(10)", run.params())

@pipeline(name="bad", target="t")
def bad(run):
    raise RuntimeError("the source is down")

@pipeline(name="slow", target="t")
def slow(run):
    Path(os.environ["TEST_MARK"]).write_text(str(run.day))
    run.db.command("SELECT count() FROM numbers(120) WHERE sleepEachRow(1) = 0 SETTINGS max_block_size = 1")
'''

# The alert script: what it got on stdin and in CHOPS_ALERT_* goes to files beside it, one call per line.
SCRIPT = '''#!/bin/sh
here=$(dirname "$0")
cat >> "$here/stdin.jsonl"
echo >> "$here/stdin.jsonl"
env | grep '^CHOPS_ALERT_' | sort > "$here/env.txt"
echo "alert script ran"
'''


def the_script(tmp_path: Path) -> tuple[Path, str]:
    """(folder, command): the alert script in a folder of its own, and an on_failure that calls it."""
    folder = tmp_path / "alerts"
    folder.mkdir()
    script = folder / "on_failure.sh"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    return folder, f"'{script}' --from-chops"


@pytest.fixture
def alerted(tmp_path):
    """(env, folder): a project with the pipelines above, whose on_failure is a real script writing to folder."""
    folder, command = the_script(tmp_path)
    env = pipeline_project(tmp_path, PIPELINES, ("CREATE TABLE t (day Date, n UInt64) ENGINE = MergeTree "
                                                 "PARTITION BY day ORDER BY n",),
                           TEST_MARK=str(tmp_path / "mark"), CHOPS_ALERTS__ON_FAILURE=command)
    return env, folder


def received(folder: Path) -> list[dict]:
    path = folder / "stdin.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def variables(folder: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (folder / "env.txt").read_text().splitlines())


def test_a_failed_cron_run_sends_its_facts_once_to_the_script_and_exits_as_it_would(alerted):
    env, folder = alerted
    ok = inv("pipeline.run", "good", "--date", DAY, "--trigger", "cron", env=env)
    assert ok.returncode == 0, ok.stderr
    assert received(folder) == []  # a success alerts nobody

    result = inv("pipeline.run", "bad", "--date", DAY, "--trigger", "cron", env=env)
    assert result.returncode == 1
    assert "the source is down" in result.stderr and "Traceback" not in result.stderr
    assert "alert sent: the on_failure command exited 0" in result.stderr

    [ledger] = query(env, "SELECT toString(run_id) AS run_id, log_path, host, attempt FROM run_ledger FINAL "
                          "WHERE pipeline = 'bad'")
    [data] = received(folder)
    assert data["test"] is False and data["count"] == 1 and data["invocation"] == "pipeline.run"
    assert "pipeline.run bad --date" in data["command"] and "--trigger cron" in data["command"]
    assert data["project"]["root"] == str(ROOT) and data["project"]["env"] == "test"
    [f] = data["failures"]
    assert f["pipeline"] == "bad" and f["day"] == DAY and f["status"] == "failed" and f["signal"] == ""
    assert f["run_id"] == ledger["run_id"] and f["log"] == ledger["log_path"] and Path(f["log"]).exists()
    assert f["host"] == ledger["host"] and f["attempt"] == 1 and f["trigger"] == "cron"
    assert "RuntimeError: the source is down" in f["error"]
    assert f["started_at"] and f["finished_at"] >= f["started_at"]
    assert data["summary"].startswith("pipeline.run: 1 failed on ") and "bad " + DAY in data["summary"]

    got = variables(folder)
    assert got["CHOPS_ALERT_PIPELINE"] == "bad" and got["CHOPS_ALERT_DAY"] == DAY
    assert got["CHOPS_ALERT_RUN_ID"] == ledger["run_id"] and got["CHOPS_ALERT_STATUS"] == "failed"
    assert got["CHOPS_ALERT_LOG"] == ledger["log_path"] and got["CHOPS_ALERT_COUNT"] == "1"
    assert got["CHOPS_ALERT_TEST"] == "0" and got["CHOPS_ALERT_SUMMARY"] == data["summary"]
    assert "the source is down" in got["CHOPS_ALERT_ERROR"] and got["CHOPS_ALERT_HOST"] == ledger["host"]
    assert "ALERT alert sent" in Path(f["log"]).read_text()  # the run's log says so too


@pytest.mark.slow
def test_a_refused_run_and_a_backfill_alert_once_per_invocation(alerted):
    env, folder = alerted
    # no attempt begins: the day is in the future; bad input alerts only a cron run
    assert inv("pipeline.run", "good", "--date", "2100-01-01", env=env).returncode == 2
    assert received(folder) == []
    assert inv("pipeline.run", "good", "--date", "2100-01-01", "--trigger", "cron", env=env).returncode == 2
    [refused] = received(folder)
    assert refused["failures"][0]["run_id"] == "" and "future" in refused["failures"][0]["error"]

    result = inv("backfill", "--start", DAY, "--end", DAY2, "--select", "good,bad", env=env)
    assert result.returncode == 1 and "did not succeed" in result.stderr
    data = received(folder)[1]
    assert data["invocation"] == "backfill" and data["count"] == 2
    assert [(f["pipeline"], f["day"], f["status"], f["trigger"]) for f in data["failures"]] == [
        ("bad", DAY, "failed", "backfill"), ("bad", DAY2, "failed", "backfill")]
    assert all(f["plan_id"] and f["run_id"] for f in data["failures"])
    assert data["summary"].startswith("backfill: 2 failed on ")
    assert variables(folder)["CHOPS_ALERT_COUNT"] == "2"


@pytest.mark.slow
def test_a_failing_or_hanging_alert_command_never_changes_the_run_outcome(alerted):
    env, folder = alerted
    failing = {**env, "CHOPS_ALERTS__ON_FAILURE": "echo 'no route to the pager' >&2; exit 7"}
    result = inv("pipeline.run", "bad", "--date", DAY, env=failing)
    assert result.returncode == 1 and "the source is down" in result.stderr
    lines = [line for line in result.stderr.splitlines() if "alert" in line]
    assert lines == ["alert not sent: the on_failure command exited 7: no route to the pager"]

    # it hangs, and what it started holds its output open: the whole process group is killed at the timeout
    hanging = {**env, "CHOPS_ALERTS__ON_FAILURE": "sleep 60 & sleep 60", "CHOPS_ALERTS__TIMEOUT": "1"}
    started = time.monotonic()
    result = inv("pipeline.run", "bad", "--date", DAY, env=hanging)
    assert time.monotonic() - started < 20
    assert result.returncode == 1 and "the source is down" in result.stderr
    assert "alert not sent: the on_failure command timed out after 1s and was killed" in result.stderr
    [log] = query(env, "SELECT argMax(log_path, started_at) AS log FROM run_ledger FINAL WHERE pipeline = 'bad'")
    assert "ALERT alert not sent: the on_failure command timed out" in Path(log["log"]).read_text()
    assert received(folder) == []  # the script of the fixture was never the command here


@pytest.mark.slow
def test_a_run_killed_by_sigterm_alerts_as_killed(alerted, tmp_path):
    env, folder = alerted
    proc = subprocess.Popen([str(Path(sys.executable).parent / "inv"), "pipeline.run", "slow", "--date", DAY,
                             "--trigger", "cron"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    mark = tmp_path / "mark"
    deadline = time.time() + 60
    while not mark.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    [data] = received(folder)
    [f] = data["failures"]
    assert (f["pipeline"], f["status"], f["signal"]) == ("slow", "killed", "SIGTERM") and f["run_id"]
    assert variables(folder)["CHOPS_ALERT_SIGNAL"] == "SIGTERM"


def no_database(tmp_path: Path, command: str) -> dict:
    """An environment with the pipelines above and no database (what needs none: a test alert, a cron run of a
    pipeline that does not exist)."""
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "testing.py").write_text(textwrap.dedent(PIPELINES))
    return clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"), CHOPS_ENV_FILE=str(tmp_path / "none"),
                         CHOPS_PIPELINES__DIR=str(tmp_path / "pipelines"), CHOPS_ALERTS__ON_FAILURE=command)


def test_a_hanging_alert_command_is_killed_with_what_it_started_and_the_exit_stays(tmp_path):
    env = no_database(tmp_path, "sleep 60 & sleep 60")  # what it started holds its output open too
    started = time.monotonic()
    result = inv("pipeline.run", "gone", "--trigger", "cron", env={**env, "CHOPS_ALERTS__TIMEOUT": "1"})
    assert time.monotonic() - started < 20
    assert result.returncode == 2 and "unknown pipeline" in result.stderr and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if "alert" in line] == [
        "alert not sent: the on_failure command timed out after 1s and was killed"]


def test_alert_test_fires_a_marked_test_and_reports_the_command_outcome(tmp_path):
    folder, command = the_script(tmp_path)
    env = no_database(tmp_path, command)  # a test alert needs no database
    result = inv("pipeline.alert-test", "--json", env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["exit_code"] == 0 and out["stdout"].strip() == "alert script ran"
    [data] = received(folder)
    assert data["test"] is True and data["failures"][0]["pipeline"] == "good"  # the scheduled one
    assert variables(folder)["CHOPS_ALERT_TEST"] == "1"

    dry = inv("pipeline.alert-test", "--dry-run", "--json", env=env)
    assert dry.returncode == 0 and json.loads(dry.stdout)["dry_run"] is True and len(received(folder)) == 1

    failing = inv("pipeline.alert-test", env={**env, "CHOPS_ALERTS__ON_FAILURE": "exit 5"})
    assert failing.returncode == 1 and "test alert failed: the on_failure command exited 5" in failing.stderr
    none = inv("pipeline.alert-test", env={k: v for k, v in env.items() if k != "CHOPS_ALERTS__ON_FAILURE"})
    assert none.returncode == 2 and "[alerts] on_failure" in none.stderr and "Traceback" not in none.stderr


def test_no_secret_reaches_the_alert(settings):
    from ops.pipelines import alerts

    s = settings.with_overrides(clickhouse__url="http://ops:s3cr%2Ft%40pw@db.example.com:8123/prod")
    error = "cannot reach ClickHouse at http://ops:s3cr/t@pw@db.example.com:8123/prod: refused (s3cr%2Ft%40pw)"
    data = alerts.payload(s, [alerts.failure("events", DAY, error)], invocation="pipeline.run", command="inv x")
    text = json.dumps(data) + json.dumps(alerts.environment(data))
    assert "s3cr" not in text and "********" in text
    assert os.environ.get("CHOPS_ALERT_PIPELINE") is None
