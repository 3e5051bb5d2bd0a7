"""Range builds (``batch_days``), for real: the same target content as one day at a time in about days/N staging
tables, a failing check failing its day alone, SIGTERM in the middle of a batch, resume, and the load error."""

import json
import re
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.conftest import ROOT, inv, pipeline_project, query

YESTERDAY = date.today() - timedelta(days=1)
BAD = YESTERDAY - timedelta(days=5)

PIPELINES = '''
import os, time
from pathlib import Path
from ops.pipelines.definition import checks, pipeline

BAD = os.environ.get("TEST_BAD", "1970-01-01")
NO_99 = checks.sql("no_99", "SELECT countIf(n = 99) FROM {table}")

def build(run):
    if os.environ.get("TEST_MARK"):
        Path(os.environ["TEST_MARK"]).write_text(f"{run.start} {run.end}")
        time.sleep(float(os.environ.get("TEST_SLEEP", "0")))
    run.db.command(f"INSERT INTO {run.staging} SELECT addDays({{start:Date}}, intDiv(number, 16)) AS d, "
                   "if(d = {bad:Date}, 99, number % 16) "
                   "FROM numbers(16 * toUInt64(dateDiff('day', {start:Date}, {end:Date}) + 1))", run.params(bad=BAD))

ranged = pipeline(name="ranged", target="ranged_t", batch_days=4,
                  checks=[checks.not_empty(), checks.unique("n"), NO_99])(build)
'''
SINGLE = '''
@pipeline(name="single", target="single_t", checks=[checks.not_empty(), checks.unique("n"), NO_99])
def single(run):
    build(run)
'''
TABLES = tuple(f"CREATE TABLE {t} (day Date, n UInt64) ENGINE = MergeTree PARTITION BY day ORDER BY n"
               for t in ("ranged_t", "single_t"))

# Runs a backfill through the library, counting the staging tables it makes (argv: --select, days).
COUNT_STAGING = """
import sys
from datetime import date, timedelta
from ops.clickhouse import client
from ops.core.settings import load_settings
from ops.pipelines import backfill
from ops.pipelines.definition import load_pipelines

made = []
original = client.Database.command
def counted(self, sql, *args, **kwargs):
    if sql.startswith("CREATE TABLE"):
        made.append(sql)
    return original(self, sql, *args, **kwargs)
client.Database.command = counted
s = load_settings()
registry = load_pipelines(s)
db = client.connect(s)
last = date.today() - timedelta(days=1)
plan = backfill.make_plan(s, db, registry, last - timedelta(days=int(sys.argv[2]) - 1), last, [sys.argv[1]])
backfill.store(db, plan)
outcomes = backfill.execute(s, plan, registry, db=db)
print(len(made), sorted({str(o.status) for o in outcomes}))
"""


def _env(tmp_path, **extra):
    return pipeline_project(tmp_path, PIPELINES + SINGLE, TABLES, **extra)


def _content(env, table):
    return query(env, f"SELECT toString(day) AS day, count() AS rows, sum(cityHash64(n)) AS sum FROM {table} "
                      "GROUP BY day ORDER BY day")


def _attempts(env):
    return query(env, "SELECT toString(partition) AS day, toString(status) AS status, error, attempt "
                      "FROM run_ledger FINAL WHERE pipeline = 'ranged' ORDER BY partition, attempt")


def _count_staging(env, pipeline, days):
    out = subprocess.run([sys.executable, "-c", COUNT_STAGING, pipeline, str(days)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    made, statuses = out.stdout.split(" ", 1)
    return int(made), statuses.strip()


@pytest.mark.slow
def test_a_batch_backfill_builds_what_one_day_at_a_time_builds_in_days_over_n_staging_tables(tmp_path):
    env = _env(tmp_path)
    assert _count_staging(env, "ranged", 10) == (3, "['succeeded']")  # 4 + 4 + 2 days
    assert _count_staging(env, "single", 10) == (10, "['succeeded']")
    ranged, single = _content(env, "ranged_t"), _content(env, "single_t")
    assert len(ranged) == 10 and ranged == single
    rows = _attempts(env)
    assert len(rows) == 10 and {r["status"] for r in rows} == {"succeeded"}  # a ledger row per day
    again = inv("backfill", "--days", "10", "--select", "ranged", env=env)  # done days are not rebuilt
    assert again.returncode == 0 and len(_attempts(env)) == 10, again.stderr
    cron = inv("pipeline.run", "ranged", "--date", str(YESTERDAY), "--force", env=env)  # one day: start = end
    assert cron.returncode == 0, cron.stderr
    assert _content(env, "ranged_t") == single


@pytest.mark.slow
def test_a_failing_check_fails_its_day_alone_and_the_others_are_published(tmp_path):
    env = _env(tmp_path, TEST_BAD=str(BAD))
    result = inv("backfill", "--days", "8", "--select", "ranged", "--json", env=env)
    assert result.returncode == 1, result.stderr
    outcomes = {o["day"]: o for o in json.loads(result.stdout)["outcomes"]}
    assert outcomes[str(BAD)]["status"] == "failed"  # the first check that fails, of those declared, says why
    assert "check unique(n) failed: 15 duplicate rows" in outcomes[str(BAD)]["error"], outcomes[str(BAD)]
    assert sum(o["status"] == "succeeded" for o in outcomes.values()) == 7
    rows = {r["day"]: r for r in _attempts(env)}
    assert rows[str(BAD)]["status"] == "failed" and "unique(n)" in rows[str(BAD)]["error"]
    assert {r["day"] for r in _content(env, "ranged_t")} == set(outcomes) - {str(BAD)}
    fixed = inv("backfill", "--days", "8", "--select", "ranged", "--reprocess", "failed",
                env={**env, "TEST_BAD": "1970-01-01"})
    assert fixed.returncode == 0, fixed.stderr
    assert len(_content(env, "ranged_t")) == 8
    assert [r["attempt"] for r in _attempts(env) if r["day"] == str(BAD)] == [1, 2]


@pytest.mark.slow
def test_sigterm_in_the_middle_of_a_batch_kills_every_day_of_it_and_resume_builds_them(tmp_path):
    mark = tmp_path / "mark"
    env = _env(tmp_path, TEST_MARK=str(mark), TEST_SLEEP="30")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "inv"), "backfill", "--days", "6", "--select",
                             "ranged", "--parallel", "1", "--json"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not mark.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert mark.exists(), proc.communicate()[1]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    statuses = [o["status"] for o in json.loads(out)["outcomes"]]
    assert statuses == ["killed"] * 4 + ["not started"] * 2, statuses
    rows = _attempts(env)
    assert [r["status"] for r in rows] == ["killed"] * 4, rows
    assert _content(env, "ranged_t") == []  # nothing half-published
    assert query(env, "SELECT count() AS n FROM system.tables WHERE database = currentDatabase() "
                      "AND name LIKE '_chops_staging_%'")[0]["n"] == 0
    plan_id = re.search(r"^plan (\S+):", err, re.M)[1]
    resumed = inv("backfill", "--resume", plan_id, env={k: v for k, v in env.items() if k != "TEST_MARK"})
    assert resumed.returncode == 0, resumed.stderr
    assert len(_content(env, "ranged_t")) == 6
    assert sorted(r["status"] for r in _attempts(env)) == ["killed"] * 4 + ["succeeded"] * 6


def test_a_batch_pipeline_whose_sql_lacks_start_and_end_is_a_load_error(tmp_path):
    source = '''
from ops.pipelines.definition import pipeline

@pipeline(name="broken_batch", target="ranged_t", batch_days=7)
def build(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, 1", run.params())
'''
    env = pipeline_project(tmp_path, source, TABLES[:1])
    result = inv("pipeline.list", env=env)
    assert "broken_batch" in result.stdout + result.stderr
    assert "does not use {start:Date} or {end:Date}" in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.slow
def test_a_batch_that_failed_for_a_retryable_reason_is_tried_again(tmp_path):
    source = PIPELINES.replace("ranged = pipeline(", "ranged = None and pipeline(") + '''
@pipeline(name="flaky", target="ranged_t", batch_days=3, retries=1, retry_delay=0)
def flaky(run):
    tried = Path(os.environ["TEST_TRIED"])
    if not tried.exists():
        tried.write_text("once")
        raise RuntimeError("Code: 159. Timeout exceeded")
    build(run)
'''
    env = pipeline_project(tmp_path, source, TABLES[:1], TEST_TRIED=str(tmp_path / "tried"))
    result = inv("backfill", "--days", "3", env=env)
    assert result.returncode == 0, result.stderr
    tries = query(env, "SELECT toString(partition) AS day, attempt, toString(status) AS status, error "
                       "FROM run_ledger FINAL ORDER BY partition, attempt")
    assert [(t["attempt"], t["status"]) for t in tries] == [(1, "failed"), (2, "succeeded")] * 3, tries
    assert "Code: 159" in tries[0]["error"] and len(_content(env, "ranged_t")) == 3


@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_batch_leaves_every_day_of_it_died_and_nothing_published(tmp_path):
    mark = tmp_path / "mark"
    env = _env(tmp_path, TEST_MARK=str(mark), TEST_SLEEP="30")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "inv"), "backfill", "--days", "6", "--select",
                             "ranged", "--parallel", "1"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not mark.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert mark.exists(), proc.communicate()[1]
    proc.kill()
    proc.wait()
    history = json.loads(inv("pipeline.history", "--name", "ranged", "--json", env=env).stdout)
    assert sorted(a["status"] for a in history) == ["died"] * 4, history
    assert _content(env, "ranged_t") == []
    resumed = inv("backfill", "--days", "6", "--select", "ranged",
                  env={k: v for k, v in env.items() if k != "TEST_MARK"})
    assert resumed.returncode == 0, resumed.stderr
    assert len(_content(env, "ranged_t")) == 6
    assert query(env, "SELECT count() AS n FROM system.tables WHERE database = currentDatabase() "
                      "AND name LIKE '_chops_staging_%'")[0]["n"] == 0
