"""SIGTERM and Ctrl-C while a ClickHouse statement runs, for real: the real `inv` in a process of its own, a statement
that takes minutes (``sleepEachRow``) on the real embedded engine, and the signal sent while it runs.

What must hold (issue 14, finding 1): the run ends ``killed`` (never ``failed`` with a database error), at once (the
statement is cancelled, not waited for), the target is untouched, the exit code is the shell's for that signal, the
error is one line with no traceback; a backfill starts nothing after the signal and says how to resume, and the
resumed backfill counts on from what was done.
"""

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

DAY = (date.today() - timedelta(days=3)).isoformat()
YESTERDAY = date.today() - timedelta(days=1)

PIPELINES = '''
import os
from pathlib import Path
from ops.pipelines.definition import pipeline

# minutes, unless TEST_FAST: one row a second (sleepEachRow is capped per block, so one row per block)
SLOW = "" if os.environ.get("TEST_FAST") else " WHERE sleepEachRow(1) = 0 SETTINGS max_block_size = 1"

@pipeline(name="quick", target="numbers_t")
def quick(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number, 'quick' FROM numbers(10)", run.params())

@pipeline(name="long", target="numbers_t", timeout=float(os.environ.get("TEST_TIMEOUT", "600")), depends_on=["quick"])
def long(run):
    # a statement that names no staging table: known as this run's by its connection's tag
    Path(os.environ["TEST_MARK"]).write_text(str(run.day))
    run.db.command(f"SELECT count() FROM numbers(120){SLOW}")
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number, 'long' FROM numbers(5)", run.params())
'''


@pytest.fixture
def env(tmp_path):
    return pipeline_project(tmp_path, PIPELINES, ("CREATE TABLE numbers_t (day Date, n UInt64, s String) "
                                                  "ENGINE = MergeTree PARTITION BY day ORDER BY n",),
                            TEST_MARK=str(tmp_path / "mark"))


q = query


def content(env):
    return q(env, "SELECT toString(day) AS day, count() AS rows, sum(cityHash64(n, s)) AS checksum FROM numbers_t "
                  "GROUP BY day ORDER BY day")


def attempts(env, pipeline):
    return q(env, f"SELECT toString(partition) AS day, toString(status) AS status, error FROM run_ledger FINAL "
                  f"WHERE pipeline = '{pipeline}' ORDER BY started_at")


def start(env, *args):
    return subprocess.Popen([str(Path(sys.executable).parent / "inv"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def signal_when_marked(proc, mark: Path, sig: int) -> tuple[str, str, float]:
    """Send ``sig`` once the build has written ``mark`` and its long statement runs; (stdout, stderr, seconds the
    process took to end after the signal)."""
    deadline = time.time() + 60
    while not mark.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert mark.exists(), proc.communicate()[1]
    time.sleep(1.0)  # well inside the statement (it runs for two minutes)
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return out, err, time.monotonic() - sent


def staging_tables(env):
    return q(env, "SELECT name FROM system.tables WHERE database = currentDatabase() AND name LIKE '_chops_staging_%'")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_during_a_statement_ends_the_run_killed_at_once(env, tmp_path, sig):
    assert inv("pipeline.run", "quick", "--date", DAY, env=env).returncode == 0
    before = content(env)
    proc = start(env, "pipeline.run", "long", "--date", DAY)
    _, err, took = signal_when_marked(proc, tmp_path / "mark", sig)
    name = signal.Signals(sig).name
    assert proc.returncode == 128 + sig, err
    assert took < 15, f"the run took {took:.0f}s to stop: its statement was waited for, not cancelled"
    assert "Traceback" not in err and "ClickHouse" not in err and "refused" not in err, err
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    assert f"long {DAY}: stopped by {name}; the target was not touched" in line
    assert f"inv pipeline.run long --date {DAY}" in line
    assert attempts(env, "long") == [{"day": DAY, "status": "killed", "error": f"stopped by {name}"}]
    assert content(env) == before and staging_tables(env) == []
    again = inv("pipeline.run", "long", "--date", DAY, env={**env, "TEST_FAST": "1"})
    assert again.returncode == 0, again.stderr  # nothing was left behind that stands in the way


@pytest.mark.slow
def test_the_timeout_cancels_a_long_statement_and_blames_no_file_or_database(env, tmp_path):
    assert inv("pipeline.run", "quick", "--date", DAY, env=env).returncode == 0
    t0 = time.monotonic()
    result = inv("pipeline.run", "long", "--date", DAY, env={**env, "TEST_TIMEOUT": "2"}, timeout=90)
    assert result.returncode == 1 and time.monotonic() - t0 < 30, result.stderr
    assert "timed out after 2s" in result.stderr and "refused" not in result.stderr and "Traceback" not in result.stderr
    [attempt] = attempts(env, "long")
    assert attempt["status"] == "failed" and "timed out after 2s" in attempt["error"]


def progress_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("[")]


@pytest.mark.slow
@pytest.mark.parametrize("sig, parallel", [(signal.SIGTERM, "1"), (signal.SIGINT, "1"), (signal.SIGTERM, "2")],
                         ids=["SIGTERM", "Ctrl-C", "SIGTERM-parallel-2"])
def test_a_signal_stops_a_backfill_at_once_and_it_resumes_counting_on(env, tmp_path, sig, parallel):
    slow = "long"  # one run at a time runs in the main thread, more run in threads
    proc = start(env, "backfill", "--select", f"quick,{slow}", "--days", "2", "--parallel", parallel, "--json")
    out, err, took = signal_when_marked(proc, tmp_path / "mark", sig)
    name = signal.Signals(sig).name
    assert proc.returncode == 128 + sig, err
    assert took < 20 and "Traceback" not in err, err
    plan_id = re.search(r"^plan (\S+):", err, re.M)[1]
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    assert f"backfill {plan_id} stopped by {name}" in line and f"inv backfill --resume {plan_id}" in line
    outcomes = {(o["pipeline"], o["day"]): o for o in json.loads(out)["outcomes"]}
    statuses = [o["status"] for o in outcomes.values()]
    killed = attempts(env, slow)
    assert {a["status"] for a in killed} == {"killed"} and statuses.count("killed") == len(killed) >= 1, killed
    assert not any("refused" in a["error"] or "ClickHouse" in a["error"] for a in killed)
    assert {o["error"] for o in outcomes.values() if o["status"] == "not started"} <= {f"stopped by {name}"}
    if parallel == "1":  # quick for the first day, then long, killed; nothing after it started
        assert statuses == ["succeeded", "killed", "not started", "not started"], statuses
        assert len(attempts(env, "quick")) == 1
    assert staging_tables(env) == []
    done = statuses.count("succeeded")

    resumed = inv("backfill", "--resume", plan_id, env={**env, "TEST_FAST": "1"}, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done} done already" in resumed.stderr
    lines = progress_lines(resumed.stderr)
    assert [x.split("]")[0] + "]" for x in lines] == [f"[{n}/4]" for n in range(done + 1, 5)], lines
    assert all(re.search(r"\(ETA \d+s\)$", x) for x in lines)
    assert {r["day"] for r in content(env)} == {str(YESTERDAY - timedelta(days=i)) for i in (0, 1)}
