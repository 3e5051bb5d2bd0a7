"""The pipeline runner for real: the project's migrations, test pipelines in a folder of their own, the real `inv`.

How we know nothing is lost: a day run three times is identical; kill -9 mid-run leaves the target as it was;
failing checks, SIGTERM and timeouts leave it untouched; two runs at once do the work once.
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

DAY = (date.today() - timedelta(days=3)).isoformat()

PIPELINES = '''
import os, time
from pathlib import Path
from ops.pipelines.definition import checks, pipeline

ROWS = int(os.environ.get("TEST_ROWS", "1000"))

@pipeline(name="numbers", target="numbers_t", checks=[checks.not_empty(), checks.unique("n")], retries=0)
def numbers(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number, toString(number * 7) "
                   f"FROM numbers({ROWS})", run.params())

@pipeline(name="doubled", target="doubled_t", depends_on=["numbers"])
def doubled(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT day, n * 2, s FROM numbers_t WHERE day = {{day:Date}}",
                   run.params())

@pipeline(name="slow", target="numbers_t", timeout=float(os.environ.get("TEST_TIMEOUT", "60")))
def slow(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number, 'slow' FROM numbers(10)", run.params())
    Path(os.environ["TEST_MARK"]).write_text("building")
    for _ in range(600):
        time.sleep(0.1)

@pipeline(name="failing_check", target="numbers_t",
          checks=[checks.sql("no_sevens", "SELECT countIf(n % 7 = 0) FROM {table}", "no multiples of 7")])
def failing_check(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number, 'x' FROM numbers(100)", run.params())

@pipeline(name="no_target", target="missing_t")
def no_target(run):
    pass

@pipeline(name="flaky", target="numbers_t", retries=2, retry_delay=0.1)
def flaky(run):
    mark = Path(os.environ["TEST_MARK"])
    if not mark.exists():
        mark.write_text("failed once")
        run.db.command("SELECT sleep(1) SETTINGS max_execution_time = 0.2")  # TIMEOUT_EXCEEDED: retryable
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number, 'flaky' FROM numbers(5)", run.params())
'''

BROKEN = {
    "bad_cron.py": "from ops.pipelines.definition import pipeline\n@pipeline(name='bad_cron', target='t', schedule='61 * * * *')\n"
                   "def build(run):\n    pass\n",
    "bad_import.py": "import no_such_module_anywhere\n",
}


@pytest.fixture
def env(tmp_path):
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "testing.py").write_text(textwrap.dedent(PIPELINES))
    e = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"), CHOPS_ENV_FILE=str(tmp_path / "none"),
                      CHOPS_PIPELINES__DIR=str(pipelines), TEST_MARK=str(tmp_path / "mark"))
    for args in (["db.setup"], ["db.migrate"],
                 ["db.query", "CREATE TABLE numbers_t (day Date, n UInt64, s String) ENGINE = MergeTree "
                              "PARTITION BY day ORDER BY n"],
                 ["db.query", "CREATE TABLE doubled_t (day Date, n UInt64, s String) ENGINE = MergeTree "
                              "PARTITION BY day ORDER BY n"]):
        result = inv(*args, env=e)
        assert result.returncode == 0, result.stderr
    return e


def q(env, sql):
    result = inv("db.query", sql, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def content(env, table="numbers_t"):
    return q(env, f"SELECT count() AS rows, sum(cityHash64(n, s)) AS checksum FROM {table} WHERE day = '{DAY}'")[0]


def ledger(env, pipeline):
    return q(env, f"SELECT attempt, toString(status) AS status, rows_written, error, toString(trigger) AS trigger "
                  f"FROM run_ledger FINAL WHERE pipeline = '{pipeline}' AND partition = '{DAY}' ORDER BY attempt")


def staging_tables(env):
    return q(env, "SELECT name FROM system.tables WHERE database = currentDatabase() AND name LIKE '_chops_staging_%'")


@pytest.mark.slow
def test_same_day_three_times_is_identical(env):
    first = inv("pipeline.run", "numbers", "--date", DAY, env=env)
    assert first.returncode == 0, first.stderr
    assert "succeeded, 1,000 rows" in first.stderr
    expected = content(env)
    assert expected["rows"] == 1000
    skipped = inv("pipeline.run", "numbers", "--date", DAY, env=env)
    assert skipped.returncode == 0 and "skipped, already succeeded" in skipped.stderr
    for _ in range(2):
        again = inv("pipeline.run", "numbers", "--date", DAY, "--force", env=env)
        assert again.returncode == 0, again.stderr
        assert content(env) == expected  # replaced, never appended
    assert [r["status"] for r in ledger(env, "numbers")] == ["succeeded"] * 3
    assert staging_tables(env) == []


@pytest.mark.slow
def test_failing_checks_leave_the_target_untouched(env):
    assert inv("pipeline.run", "numbers", "--date", DAY, env=env).returncode == 0
    before = content(env)
    result = inv("pipeline.run", "failing_check", "--date", DAY, env=env)
    assert result.returncode == 1
    assert "check no_sevens failed" in result.stderr and "target was not touched" in result.stderr
    assert "Traceback" not in result.stderr
    assert content(env) == before
    [attempt] = ledger(env, "failing_check")
    assert attempt["status"] == "failed" and "no_sevens" in attempt["error"]
    assert staging_tables(env) == []


@pytest.mark.slow
def test_kill_9_mid_run_leaves_target_untouched_and_next_run_succeeds(env, tmp_path):
    assert inv("pipeline.run", "numbers", "--date", DAY, env=env).returncode == 0
    before = content(env)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "inv"), "pipeline.run", "slow", "--date", DAY],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    mark = tmp_path / "mark"
    deadline = time.time() + 60
    while not mark.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert mark.exists(), proc.stderr.read() if proc.poll() is not None else "slow never started building"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert content(env) == before  # nothing reached the target
    [attempt] = ledger(env, "slow")
    assert attempt["status"] == "running"  # the ledger shows it never finished...
    history = json.loads(inv("pipeline.history", "--name", "slow", "--json", env=env).stdout)
    assert history[0]["status"] == "died"  # ...and chops knows its process is gone
    assert len(staging_tables(env)) == 1  # the orphan staging table is still there

    numbers_again = inv("pipeline.run", "numbers", "--date", DAY, "--force", env=env)
    assert numbers_again.returncode == 0
    env2 = {**env, "TEST_MARK": str(tmp_path / "mark2")}
    (tmp_path / "mark2").write_text("")
    result = inv("pipeline.run", "slow", "--date", DAY, "--dry-run", env=env2)
    assert result.returncode == 0 and "nothing was changed" in result.stderr
    # the next real run closes the dead attempt and cleans its staging table
    fast = subprocess.run([str(Path(sys.executable).parent / "inv"), "pipeline.run", "slow", "--date", DAY],
                          cwd=ROOT, env={**env2, "TEST_TIMEOUT": "1"}, capture_output=True, text=True, timeout=60)
    assert fast.returncode == 1 and "timed out after 1s" in fast.stderr
    attempts = ledger(env, "slow")
    assert [a["status"] for a in attempts] == ["failed", "failed"]
    assert "died without finishing" in attempts[0]["error"] and "timed out" in attempts[1]["error"]
    assert staging_tables(env) == []
    assert content(env) == before


@pytest.mark.slow
def test_sigterm_stops_a_run_cleanly_as_killed(env, tmp_path):
    assert inv("pipeline.run", "numbers", "--date", DAY, env=env).returncode == 0
    before = content(env)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "inv"), "pipeline.run", "slow", "--date", DAY],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (tmp_path / "mark").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in err and "Traceback" not in err
    [attempt] = ledger(env, "slow")
    assert attempt["status"] == "killed"
    assert content(env) == before and staging_tables(env) == []


@pytest.mark.slow
def test_two_concurrent_runs_of_one_day_do_the_work_once(env):
    procs = [subprocess.Popen([str(Path(sys.executable).parent / "inv"), "pipeline.run", "numbers", "--date", DAY],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum("succeeded, 1,000 rows" in o for o in outs) == 1, outs
    assert sum("skipped, already succeeded by a run that finished while this one waited" in o for o in outs) == 1, outs
    assert [a["status"] for a in ledger(env, "numbers")] == ["succeeded"]
    assert content(env)["rows"] == 1000


@pytest.mark.slow
def test_dependency_order(env):
    early = inv("pipeline.run", "doubled", "--date", DAY, env=env)
    assert early.returncode == 1
    assert "depends on numbers, which has not succeeded" in early.stderr
    assert f"inv pipeline.run numbers --date {DAY}" in early.stderr
    assert ledger(env, "doubled") == []  # refused before any attempt
    assert inv("pipeline.run", "numbers", "--date", DAY, env=env).returncode == 0
    late = inv("pipeline.run", "doubled", "--date", DAY, env=env)
    assert late.returncode == 0, late.stderr
    assert q(env, f"SELECT sum(n) AS s FROM doubled_t WHERE day = '{DAY}'")[0]["s"] == 2 * sum(range(1000))


@pytest.mark.slow
def test_dry_run_says_would_refuse_where_the_run_would(env):
    # finding 3: the dry run said "would build and swap in" where the run refused
    dry = inv("pipeline.run", "doubled", "--date", DAY, "--dry-run", env=env)
    assert dry.returncode == 1, dry.stderr
    line = dry.stderr.strip().splitlines()[-1]
    assert line == (f"error: doubled {DAY}: would refuse: doubled depends on numbers, which has not succeeded for "
                    f"{DAY} (never run) (run: inv pipeline.run numbers --date {DAY})")
    real = inv("pipeline.run", "doubled", "--date", DAY, env=env)
    assert real.returncode == 1 and "doubled depends on numbers, which has not succeeded" in real.stderr
    as_json = inv("pipeline.run", "doubled", "--date", DAY, "--dry-run", "--json", env=env)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["refusal"].startswith("doubled depends on numbers")
    missing = inv("pipeline.run", "no_target", "--date", DAY, "--dry-run", env=env)
    assert missing.returncode == 1 and "would refuse: target table missing_t of no_target does not exist" in \
        missing.stderr and "inv db.migrate" in missing.stderr
    assert inv("pipeline.run", "numbers", "--date", DAY, env=env).returncode == 0
    fine = inv("pipeline.run", "doubled", "--date", DAY, "--dry-run", env=env)
    assert fine.returncode == 0 and "would build and swap in" in fine.stderr and "depends: numbers: succeeded" in \
        fine.stderr
    assert ledger(env, "doubled") == []  # dry runs write nothing


def test_dry_run_checks_the_declared_inputs(env, tmp_path):
    env = {k: v for k, v in env.items() if k != "CHOPS_PIPELINES__DIR"}  # the project's own pipelines
    empty = inv("pipeline.run", "events_ingest", "--date", DAY, "--dry-run", env=env)
    assert empty.returncode == 1
    assert f"would refuse: no inbox files for {DAY} in {tmp_path / 'var' / 'inbox' / 'events' / DAY}" in empty.stderr
    assert "inv pipeline.sample-data" in empty.stderr
    inbox = tmp_path / "var" / "inbox" / "events" / DAY
    inbox.mkdir(parents=True)
    (inbox / "a.csv").write_text("event_time,event_id,user_id,event_type,country,revenue\n"
                                 f"{DAY} 10:00:00.000,6f1c1d7e-1111-4a2b-9c3d-000000000001,7,page_view,DE,0\n")
    ready = inv("pipeline.run", "events_ingest", "--date", DAY, "--dry-run", "--json", env=env)
    assert ready.returncode == 0, ready.stderr
    report = json.loads(ready.stdout)
    assert report["would"] == "build and swap in" and report["inputs"] == [str(inbox / "a.csv")]
    refused = inv("pipeline.run", "daily_rollup", "--date", DAY, "--dry-run", env=env)
    assert refused.returncode == 1 and "depends on events_ingest" in refused.stderr


@pytest.mark.slow
def test_doctor_passes_when_all_is_well_and_says_why_not_otherwise(env, tmp_path):
    from ops.core.settings import load_settings
    from ops.pipelines import cron_doctor
    from ops.pipelines.definition import load_pipelines
    from ops.pipelines.sample_data import write_sample_data

    env = {k: v for k, v in env.items() if k != "CHOPS_PIPELINES__DIR"}
    settings = load_settings(environ=env)
    yesterday = (date.today() - timedelta(days=1))
    extra = {"CHOPS_PATHS__VAR": env["CHOPS_PATHS__VAR"]}
    registry = load_pipelines(settings)
    write_sample_data(settings, 1, end=yesterday, rows_per_day=200)
    rows = {r["pipeline"]: r for r in cron_doctor.doctor(settings, registry, environment=extra)}
    assert rows["events_ingest"]["status"] == "ok", rows
    assert rows["daily_rollup"]["status"] == "failed"
    assert "would refuse: daily_rollup depends on events_ingest" in rows["daily_rollup"]["last_line"]
    assert inv("pipeline.run", "events_ingest", "--date", str(yesterday), env=env).returncode == 0
    rows = cron_doctor.doctor(settings, registry, environment=extra)
    assert {r["pipeline"]: r["status"] for r in rows} == {"events_ingest": "ok", "daily_rollup": "ok",
                                                         "user_sessions": "ok"}, rows


@pytest.mark.slow
def test_retryable_failure_is_retried_with_backoff(env):
    result = inv("pipeline.run", "flaky", "--date", DAY, env=env)
    assert result.returncode == 0, result.stderr
    assert "attempt 1 failed" in result.stderr and "retrying" in result.stderr
    assert [a["status"] for a in ledger(env, "flaky")] == ["failed", "succeeded"]


@pytest.mark.parametrize("date_text, fragment", [
    ("2026-02-30", "does not exist"),
    ("20260101", "must be YYYY-MM-DD"),
    ("tomorrow", "must be YYYY-MM-DD"),
    ((date.today() + timedelta(days=2)).isoformat(), "is in the future"),
])
def test_impossible_dates_are_bad_input(env, date_text, fragment):
    result = inv("pipeline.run", "numbers", "--date", date_text, env=env)
    assert result.returncode == 2 and fragment in result.stderr
    assert ledger(env, "numbers") == []


def test_future_date_allowed_explicitly(env):
    future = (date.today() + timedelta(days=1)).isoformat()
    result = inv("pipeline.run", "numbers", "--date", future, "--allow-future", env=env)
    assert result.returncode == 0, result.stderr


def test_unknown_pipeline_suggests_and_broken_modules_are_named(env, tmp_path):
    for name, text in BROKEN.items():
        (tmp_path / "pipelines" / name).write_text(text)
    unknown = inv("pipeline.run", "numbrs", env=env)
    assert unknown.returncode == 2 and "did you mean numbers" in unknown.stderr
    broken = inv("pipeline.run", "bad_cron", env=env)
    assert broken.returncode == 2 and "invalid cron schedule '61 * * * *'" in broken.stderr
    listing = inv("pipeline.list", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    assert {p["name"] for p in data["pipelines"]} == {"numbers", "doubled", "slow", "failing_check", "flaky",
                                                      "no_target"}
    errors = " ".join(data["errors"].values())
    assert "bad_import.py" in errors and "No module named 'no_such_module_anywhere'" in errors
    assert "bad_cron.py" in errors
    works = inv("pipeline.run", "numbers", "--date", DAY, env=env)  # the others still run
    assert works.returncode == 0, works.stderr


def test_list_and_history_show_the_ledger(env):
    assert inv("pipeline.run", "numbers", "--date", DAY, env=env).returncode == 0
    listing = json.loads(inv("pipeline.list", "--json", env=env).stdout)["pipelines"]
    numbers = next(p for p in listing if p["name"] == "numbers")
    assert numbers["last_status"] == "succeeded" and numbers["last_day"] == DAY
    order = [p["name"] for p in listing]
    assert order.index("numbers") < order.index("doubled")
    history = json.loads(inv("pipeline.history", "--name", "numbers", "--json", env=env).stdout)
    assert history[0]["rows_written"] == 1000 and history[0]["trigger"] == "manual"
    log = Path(history[0]["log_path"])
    assert log.exists() and "swapped 1000 rows" in log.read_text()
    table = inv("pipeline.history", env=env)
    assert "numbers" in table.stdout and "succeeded" in table.stdout


def test_inbox_file_with_bad_rows_fails_naming_file_and_row(env, tmp_path):
    inbox = tmp_path / "var" / "inbox" / "events" / DAY
    inbox.mkdir(parents=True)
    (inbox / "good.csv").write_text(
        "event_time,event_id,user_id,event_type,country,revenue\n"
        f"{DAY} 10:00:00.000,6f1c1d7e-1111-4a2b-9c3d-000000000001,7,page_view,DE,0\n")
    env = {k: v for k, v in env.items() if k != "CHOPS_PIPELINES__DIR"}  # the project's own pipelines
    ok = inv("pipeline.run", "events_ingest", "--date", DAY, env=env)
    assert ok.returncode == 0, ok.stderr
    (inbox / "later.csv").write_text(
        "event_time,event_id,user_id,event_type,country,revenue\n"
        f"{DAY} 11:00:00.000,6f1c1d7e-1111-4a2b-9c3d-000000000002,8,click,FR,0\n"
        f"{DAY} 12:00:00.000,6f1c1d7e-1111-4a2b-9c3d-000000000003,not-a-user,click,FR,0\n")
    bad = inv("pipeline.run", "events_ingest", "--date", DAY, "--force", env=env)
    assert bad.returncode == 1
    assert "later.csv" in bad.stderr and "row 2" in bad.stderr and "Traceback" not in bad.stderr
    assert q(env, f"SELECT count() AS n FROM events WHERE day = '{DAY}'")[0]["n"] == 1  # untouched
    assert staging_tables(env) == []
