"""proc.list / kill / clean / check / logs for real: real `inv` processes, the real embedded engine, real signals.

A long pipeline run is started in the background, listed and killed; a pid file whose pid now belongs to an
unrelated program is refused; proc.clean removes what a SIGKILLed run left and nothing else; proc.check is healthy
on a fresh demo and fails, with the right reason, for each check made to fail on purpose.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, clean_environ, inv, require

DAY = (date.today() - timedelta(days=3)).isoformat()
INV = str(Path(sys.executable).parent / "inv")

PIPELINES = '''
import os, signal, time
from pathlib import Path
from ops.pipelines.definition import pipeline

@pipeline(name="numbers", target="numbers_t")
def numbers(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number FROM numbers(1000)", run.params())

@pipeline(name="slow", target="numbers_t")
def slow(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number FROM numbers(10)", run.params())
    Path(os.environ["TEST_MARK"]).write_text("building")
    for _ in range(600):
        time.sleep(0.1)

@pipeline(name="stubborn", target="numbers_t")
def stubborn(run):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a build that will not stop: only SIGKILL ends it
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number FROM numbers(10)", run.params())
    Path(os.environ["TEST_MARK"]).write_text("building")
    for _ in range(600):
        time.sleep(0.1)
'''


# --- helpers ----------------------------------------------------------------------------------------------------------

def run_json(*args, env):
    result = inv(*args, "--json", env=env)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout), result


def q(env, sql):
    result = inv("db.query", sql, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip().startswith("[") else result.stdout


def by_name(report):
    return {c["name"]: c for c in report["checks"]}


def start(env, *args):
    return subprocess.Popen([INV, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc, timeout=60):
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    assert path.exists(), "the pipeline never started building"


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def pid_file(var: Path, pid: int, create_time, what="numbers " + DAY, kind="pipeline.run") -> Path:
    path = var / "run" / f"{pid}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "create_time": create_time, "host": socket.gethostname(),
                                "command": "inv pipeline.run numbers", "since": "2026-01-01 00:00:00 UTC",
                                "kind": kind, "what": what, "progress": None}))
    return path


def holder(pid: int) -> str:
    return json.dumps({"pid": pid, "command": "inv pipeline.run gone", "since": "2026-01-01 00:00:00 UTC",
                       "host": socket.gethostname()})


@contextlib.contextmanager
def crontab_lock():
    """The lock the crontab tests share: while held, no test has entries of its own in this user's crontab."""
    with open(Path(tempfile.gettempdir()) / "chops-crontab-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def crontab_text():
    done = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    return done.returncode == 0, done.stdout


def restore_crontab(had: bool, text: str) -> None:
    if had:
        subprocess.run(["crontab", "-"], input=text, text=True, check=True, capture_output=True)
    else:
        subprocess.run(["crontab", "-r"], capture_output=True)
    assert crontab_text() == (had, text if had else ""), "the crontab was not restored"


@contextlib.contextmanager
def crontab_without_this_project(settings):
    """This user's crontab with no entry of this checkout (so the verdict does not depend on this machine's
    scheduling), restored exactly afterwards."""
    with crontab_lock():
        if shutil.which("crontab") is None:
            yield
            return
        from ops.pipelines import cron

        had, text = crontab_text()
        mine = cron.installed(settings, text) if had else []
        if not mine:
            yield
            return
        drop = {i.index for i in mine}
        lines = text.split("\n")
        kept = "\n".join(line for n, line in enumerate(lines) if n not in drop)
        try:
            subprocess.run(["crontab", "-"], input=kept, text=True, check=True, capture_output=True)
            yield
        finally:
            restore_crontab(had, text)


# --- test pipelines in a database of their own -----------------------------------------------------------------------

@pytest.fixture
def bare_env(tmp_path):
    """The test pipelines, and no database yet."""
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "testing.py").write_text(textwrap.dedent(PIPELINES))
    return clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"), CHOPS_ENV_FILE=str(tmp_path / "none"),
                         CHOPS_PIPELINES__DIR=str(pipelines), TEST_MARK=str(tmp_path / "mark"))


@pytest.fixture
def env(bare_env):
    """The test pipelines, the project's migrations, a target table, and one day of `numbers` built."""
    e = bare_env
    for args in (["db.setup"], ["db.migrate"],
                 ["db.query", "CREATE TABLE numbers_t (day Date, n UInt64) ENGINE = MergeTree PARTITION BY day ORDER BY n"],
                 ["pipeline.run", "numbers", "--date", DAY]):
        result = inv(*args, env=e)
        assert result.returncode == 0, result.stderr
    return e


def content(env):
    return q(env, f"SELECT count() AS rows, sum(n) AS total FROM numbers_t WHERE day = '{DAY}'")[0]


def attempts(env, pipeline):
    return q(env, f"SELECT attempt, toString(status) AS status, error FROM run_ledger FINAL "
                  f"WHERE pipeline = '{pipeline}' AND partition = '{DAY}' ORDER BY attempt")


def tables(env):
    return {r["name"] for r in q(env, "SELECT name FROM system.tables WHERE database = currentDatabase()")}


@pytest.mark.slow
def test_a_running_pipeline_is_listed_and_killed_cleanly(env, tmp_path):
    var = tmp_path / "var"
    before = content(env)
    proc = start(env, "pipeline.run", "slow", "--date", DAY)
    try:
        wait_for(tmp_path / "mark", proc)
        listed, _ = run_json("proc.list", env=env)
        [me] = [p for p in listed if p["pid"] == proc.pid]
        assert (me["kind"], me["what"], me["state"]) == ("pipeline.run", f"slow {DAY}", "running")
        assert me["since"].endswith("UTC") and me["running_for"]
        table = inv("proc.list", env=env)
        assert f"slow {DAY}" in table.stdout and str(proc.pid) in table.stdout

        # the run holds the embedded engine: the verdict says so (a warning) instead of waiting for it, and
        # proc.clean cleans the files it can
        busy, result = run_json("proc.check", env={**env, "CHOPS_PROC__DB_WAIT": "1"})
        assert result.returncode == 0, result.stderr
        assert by_name(busy)["database"]["status"] == "warn"
        assert "busy: the embedded database" in by_name(busy)["database"]["reason"]
        assert f"held by pid {proc.pid}" in by_name(busy)["database"]["reason"]
        assert by_name(busy)["migrations"] == {"name": "migrations", "status": "warn",
                                               "reason": "not checked: the database is busy", "seconds": 0.0}
        cleaning = inv("proc.clean", env={**env, "CHOPS_PROC__DB_WAIT": "1"})
        assert cleaning.returncode == 0 and "staging tables and the migration lock were not checked" in cleaning.stderr

        dry = inv("proc.kill", "--name", "slow", "--dry-run", env=env)
        assert dry.returncode == 0 and "nothing was sent" in dry.stderr and str(proc.pid) in dry.stdout
        assert proc.poll() is None

        killed = inv("proc.kill", "--name", "slow", "--grace", "30", env=env)
        assert killed.returncode == 0, killed.stderr
        assert f"pid {proc.pid} (pipeline.run slow {DAY}): ended after SIGTERM" in killed.stderr
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143 and "stopped by SIGTERM" in err  # the shell's code for death by SIGTERM
    [attempt] = attempts(env, "slow")
    assert attempt["status"] == "killed" and "SIGTERM" in attempt["error"]
    assert content(env) == before  # the target is untouched
    assert not any(t.startswith("_chops_staging_") for t in tables(env))
    assert list((var / "run").glob("*.json")) == []  # the pid file went with the process
    assert "no chops process is running" in inv("proc.list", env=env).stderr


def test_a_reused_pid_is_never_signalled_and_its_pid_file_is_stale(tmp_path):
    # no database needed: pid files are files
    env = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"),
                        CHOPS_ENV_FILE=str(tmp_path / "none"))
    var = tmp_path / "var"
    sleeper = subprocess.Popen(["sleep", "60"])
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        # a pid file naming the sleeper's pid, written by a process that started earlier: the pid was reused
        path = pid_file(var, sleeper.pid, psutil.Process(sleeper.pid).create_time() - 1000)
        refused = inv("proc.kill", "--name", str(sleeper.pid), env=env)
        assert refused.returncode == 2
        assert f"pid {sleeper.pid} is not a chops process" in refused.stderr and "reused" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert inv("proc.kill", "--name", "numbers", env=env).returncode == 2  # its name: not running either
        everything = inv("proc.kill", "--all", "--grace", "0", env=env)
        assert everything.returncode == 0 and "nothing to kill" in everything.stderr
        # a pid with no pid file at all: refused, even as root
        no_file = inv("proc.kill", "--name", str(stranger.pid), env=env)
        assert no_file.returncode == 2 and "no pid file" in no_file.stderr
        assert sleeper.poll() is None and stranger.poll() is None

        [listed] = json.loads(inv("proc.list", "--json", env=env).stdout)
        assert (listed["pid"], listed["state"]) == (sleeper.pid, "stale")
        assert "STALE" in inv("proc.list", env=env).stdout

        cleaned = inv("proc.clean", "--json", env=env)
        assert cleaned.returncode == 0, cleaned.stderr
        [removed] = json.loads(cleaned.stdout)["removed"]
        assert removed["kind"] == "pid file" and "now belongs to another process" in removed["reason"]
        assert not path.exists()
        assert sleeper.poll() is None  # still alive: cleaning a pid file never touches a process
    finally:
        for p in (sleeper, stranger):
            p.kill()
            p.wait()


@pytest.mark.parametrize("args, fragment", [
    (["--grace=-1", "--all"], "--grace must be at least 0, got -1"),
    (["--grace", "soon", "--all"], "--grace must be a whole number"),
    ([], "name a process (--name NAME|PID) or use --all"),
    (["--name", "numbrs"], "unknown name 'numbrs'"),
    (["--name", "slow", "--all"], "not both"),
])
def test_kill_bad_input_is_one_line_and_exit_2(bare_env, args, fragment):
    result = inv("proc.kill", *args, env=bare_env)
    assert result.returncode == 2 and fragment in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_sigkill_after_grace_then_clean_removes_what_it_left_and_nothing_else(env, tmp_path):
    var = tmp_path / "var"
    logs = var / "log" / "pipelines"
    proc = start(env, "pipeline.run", "stubborn", "--date", DAY)
    try:
        wait_for(tmp_path / "mark", proc)
        killed = inv("proc.kill", "--name", str(proc.pid), "--grace", "1", "--json", env=env)
        assert killed.returncode == 0, killed.stderr
        [outcome] = json.loads(killed.stdout)["outcomes"]
        assert outcome["signal"] == "SIGKILL" and outcome["ended"]
        assert "stays 'running'" in outcome["note"] and "inv proc.clean" in outcome["note"]
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (var / "run" / f"{proc.pid}.json").exists()  # kill removed the pid file the process could not
    history = json.loads(inv("pipeline.history", "--name", "stubborn", "--json", env=env).stdout)
    assert history[0]["status"] == "died"  # the ledger row stays 'running'; its process is gone

    # What must survive: a live process's pid file, a held lock, a released lock, a recent log, and the staging table
    # of a run that is alive.
    live = subprocess.Popen(["sleep", "60"])
    held = None
    try:
        live_pid_file = pid_file(var, live.pid, psutil.Process(live.pid).create_time(), what=f"numbers {DAY}")
        run8 = uuid.uuid4().hex[:8]
        live_staging = f"_chops_staging_numbers_{DAY.replace('-', '')}_{run8}"
        q(env, f"CREATE TABLE {live_staging} AS numbers_t")
        q(env, f"INSERT INTO run_ledger (run_id, pipeline, partition, attempt, status, trigger, started_at, host, pid, "
               f"code_version) VALUES ('{run8}-0000-4000-8000-000000000000', 'numbers', '{DAY}', 9, 'running', "
               f"'manual', now64(6), '{socket.gethostname()}', {live.pid}, 'test')")
        from ops.core.locks import FileLock

        held = FileLock(var / "locks" / "held-by-a-live-process.lock", "a test lock", 5).acquire()
        released = var / "locks" / f"pipeline-numbers-{DAY}.lock"
        stale = var / "locks" / f"pipeline-stubborn-{DAY}.lock"
        assert released.read_text() == "" and str(proc.pid) in stale.read_text()
        old_log = logs / "numbers" / "2020-01-01_deadbeef.log"
        old_log.write_text("an old run\n")
        os.utime(old_log, (time.time() - 40 * 86400,) * 2)
        recent_logs = set(logs.glob("*/*.log")) - {old_log}

        checked, _ = run_json("proc.check", env=env)
        assert by_name(checked)["locks"]["status"] == "fail"
        assert f"pipeline-stubborn-{DAY}.lock left by pid {proc.pid}" in by_name(checked)["locks"]["reason"]

        before_tables = tables(env)
        staging = {t for t in before_tables if t.startswith("_chops_staging_stubborn_")}
        assert len(staging) == 1
        expected = {("lock", f"pipeline-stubborn-{DAY}.lock"), ("staging table", next(iter(staging))),
                    ("log", old_log.name)}

        dry = json.loads(inv("proc.clean", "--dry-run", "--json", env=env).stdout)
        assert {(i["kind"], Path(i["what"]).name) for i in dry["would_remove"]} == expected
        assert tables(env) == before_tables and old_log.exists() and str(proc.pid) in stale.read_text()

        cleaned = inv("proc.clean", "--json", env=env)
        assert cleaned.returncode == 0, cleaned.stderr
        removed = json.loads(cleaned.stdout)["removed"]
        assert {(i["kind"], Path(i["what"]).name) for i in removed} == expected
        reasons = {i["kind"]: i["reason"] for i in removed}
        assert f"left by pid {proc.pid}" in reasons["lock"] and "died" in reasons["staging table"]
        assert "older than 30 days" in reasons["log"]

        assert tables(env) == before_tables - staging  # the live run's staging table is still there
        assert stale.exists() and stale.read_text() == ""  # cleared under its lock, like a release
        assert not old_log.exists() and set(logs.glob("*/*.log")) == recent_logs
        assert live_pid_file.exists() and live.poll() is None
        assert str(os.getpid()) in (var / "locks" / "held-by-a-live-process.lock").read_text()
        assert released.exists()

        again = inv("proc.clean", env=env)
        assert again.returncode == 0 and "nothing to clean" in again.stderr
        checked, _ = run_json("proc.check", env=env)
        assert by_name(checked)["locks"]["status"] == "pass"
    finally:
        if held is not None:
            held.release()
        live.kill()
        live.wait()


@pytest.mark.slow
def test_logs_prints_the_latest_run_and_follows_it(env, tmp_path):
    assert inv("pipeline.run", "numbers", "--date", DAY, "--force", env=env).returncode == 0
    history = json.loads(inv("pipeline.history", "--name", "numbers", "--json", env=env).stdout)
    newest = Path(history[0]["log_path"])
    shown = inv("proc.logs", "--name", "numbers", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == newest.read_text() and str(newest) in shown.stderr
    assert "swapped 1000 rows" in shown.stdout
    assert inv("proc.logs", "--name", "numbers", "--date", DAY, env=env).stdout == newest.read_text()
    assert inv("proc.logs", env=env).stdout == newest.read_text()  # no name: whichever ran last

    for args, fragment in ((["--name", "numbrs"], "unknown pipeline 'numbrs'"),
                           (["--name", "numbers", "--date", "2020-01-01"], f"days with logs: {DAY}"),
                           (["--name", "slow"], "it has not run here yet"),
                           (["--name", "numbers", "--date", "2020-02-30"], "does not exist")):
        bad = inv("proc.logs", *args, env=env)
        assert bad.returncode == 2 and fragment in bad.stderr, bad.stderr

    follower = subprocess.Popen([INV, "proc.logs", "--name", "numbers", "--follow"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(follower.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.time() + 30
        while not any("swapped 1000 rows" in line for line in lines) and time.time() < deadline:
            time.sleep(0.05)
        with newest.open("a") as fh:
            fh.write("a line written while following\n")
        while not any("while following" in line for line in lines) and time.time() < deadline:
            time.sleep(0.05)
        assert any("while following" in line for line in lines), lines
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=10)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, follower.stderr.read()


# --- the health verdict on a demo -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A demo as `make demo` builds it, with the real CLI and the project's pipelines, smaller."""
    base = tmp_path_factory.mktemp("demo")
    e = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(base / "var"), CHOPS_ENV_FILE=str(base / "none"))
    for args in (["db.setup"], ["db.migrate"], ["pipeline.sample-data", "--days", "2", "--rows", "2000"],
                 ["backfill", "--days", "2"]):
        result = inv(*args, env=e, timeout=300)
        assert result.returncode == 0, result.stderr
    return e


def check(env, **extra):
    result = inv("proc.check", "--json", env={**env, **extra})
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout), result


def test_check_is_healthy_on_a_fresh_demo(demo, settings, tmp_path):
    junit = tmp_path / "reports" / "health.xml"
    with crontab_without_this_project(settings):
        result = inv("proc.check", "--junit", str(junit), env=demo)
        as_json, _ = check(demo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "healthy:" in result.stderr and "check" in result.stdout
    assert as_json["healthy"] is True and as_json["failed"] == 0
    checks = by_name(as_json)
    assert list(checks) == ["database", "migrations", "pipelines", "cron", "freshness", "failed runs",
                            "staging tables", "disk", "locks", "pid files"]
    assert [c["name"] for c in as_json["checks"] if c["status"] == "fail"] == []
    for name in ("database", "migrations", "pipelines", "freshness", "failed runs", "staging tables", "disk", "locks",
                 "pid files"):
        assert checks[name]["status"] == "pass", checks[name]
    if shutil.which("crontab"):
        assert checks["cron"]["status"] == "warn" and "no cron entries" in checks["cron"]["reason"]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("name") == "chops health" and suite.get("tests") == "10" and suite.get("failures") == "0"


def migrations_copy(tmp_path, change):
    copy = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", copy)
    change(copy)
    return {"CHOPS_MIGRATIONS__DIR": str(copy)}


def pipelines_copy(tmp_path, name, text):
    copy = tmp_path / "pipelines"
    shutil.copytree(ROOT / "pipelines", copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / name).write_text(textwrap.dedent(text))
    return {"CHOPS_PIPELINES__DIR": str(copy)}


YESTERDAY = (date.today() - timedelta(days=1)).isoformat()


def ledger_row(status, pipeline, day, started, finished=None, error=""):
    run_id = str(uuid.uuid4())
    finished_sql = f"'{finished}'" if finished else "NULL"
    sql = (f"INSERT INTO run_ledger (run_id, pipeline, partition, attempt, status, trigger, started_at, finished_at, "
           f"error, host, pid, code_version) VALUES ('{run_id}', '{pipeline}', '{day}', 99, '{status}', 'manual', "
           f"'{started}', {finished_sql}, '{error}', '{socket.gethostname()}', 1, 'test')")
    return run_id, sql


def stamp(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) - delta).strftime("%Y-%m-%d %H:%M:%S")


@contextlib.contextmanager
def ledger_rows(env, *rows):
    for _, sql in rows:
        q(env, sql)
    try:
        yield
    finally:
        ids = ", ".join(f"'{run_id}'" for run_id, _ in rows)
        q(env, f"DELETE FROM run_ledger WHERE run_id IN ({ids})")


@contextlib.contextmanager
def file_with(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    try:
        yield
    finally:
        path.unlink()


def var_of(env) -> Path:
    return Path(env["CHOPS_PATHS__VAR"])


@pytest.mark.parametrize("case", [
    "database unreachable", "no database", "migration drifted", "migration pending", "pipeline module broken",
    "scheduled pipeline stale", "failed run", "disk", "stale lock file", "stale migration lock", "stale pid file",
])
@pytest.mark.slow
def test_check_fails_with_the_reason_for_each_cause(demo, tmp_path, case):
    extra: dict[str, str] = {}
    stack = contextlib.ExitStack()
    with stack:
        if case == "database unreachable":
            extra, name, fragment = {"CLICKHOUSE_URL": "http://127.0.0.1:9/chops"}, "database", "cannot reach ClickHouse"
        elif case == "no database":
            extra, name, fragment = {"CHOPS_CLICKHOUSE__DATABASE": "nothing_here"}, "database", "inv db.setup"
        elif case == "migration drifted":
            extra = migrations_copy(tmp_path, lambda d: (d / "0002_events.sql").write_text(
                (d / "0002_events.sql").read_text() + "\n-- edited after it was applied\n"))
            name, fragment = "migrations", "drifted: 0002_events (file changed after it was applied)"
        elif case == "migration pending":
            extra = migrations_copy(tmp_path, lambda d: (d / "0099_more.sql").write_text(
                "CREATE TABLE IF NOT EXISTS more (n UInt8) ENGINE = MergeTree ORDER BY n;\n"))
            name, fragment = "migrations", "not applied: 0099_more (run: inv db.migrate)"
        elif case == "pipeline module broken":
            extra = pipelines_copy(tmp_path, "broken.py", "import no_such_module_anywhere\n")
            name, fragment = "pipelines", "broken.py (line 1): ModuleNotFoundError"
        elif case == "scheduled pipeline stale":
            extra = pipelines_copy(tmp_path, "hourly_stats.py", '''
                from ops.pipelines.definition import pipeline

                @pipeline(name="hourly_stats", target="daily_rollup", schedule="0 * * * *")
                def build(run):
                    pass
                ''')
            stack.enter_context(ledger_rows(demo, ledger_row("succeeded", "hourly_stats", YESTERDAY,
                                                             stamp(timedelta(hours=5, minutes=1)),
                                                             stamp(timedelta(hours=5)))))
            name, fragment = "freshness", "hourly_stats last succeeded 5h 0m ago, more than twice its 1h interval"
        elif case == "failed run":
            retried = ledger_row("failed", "events_ingest", YESTERDAY, stamp(timedelta(hours=3)), error="flaky")
            with ledger_rows(demo, retried):
                report, _ = check(demo)
                assert by_name(report)["failed runs"]["status"] == "pass"
                assert "each retried successfully" in by_name(report)["failed runs"]["reason"]
            stack.enter_context(ledger_rows(demo, ledger_row("failed", "events_ingest", YESTERDAY, stamp(timedelta(0)),
                                                             error="check not_empty failed")))
            name, fragment = "failed runs", f"events_ingest {YESTERDAY} failed at"
        elif case == "disk":
            extra = {"CHOPS_PROC__MIN_FREE_DISK_PERCENT": "100"}
            name, fragment = "disk", "below proc.min_free_disk_percent = 100"
        elif case == "stale lock file":
            pid = dead_pid()
            stack.enter_context(file_with(var_of(demo) / "locks" / "pipeline-events_ingest-2020-01-01.lock", holder(pid)))
            name, fragment = "locks", f"pipeline-events_ingest-2020-01-01.lock left by pid {pid}"
        elif case == "stale migration lock":
            pid = dead_pid()
            comment = holder(pid).replace("'", "\\'")
            q(demo, f"CREATE TABLE _chops_migration_lock (held UInt8) ENGINE = Memory COMMENT '{comment}'")
            stack.callback(lambda: q(demo, "DROP TABLE IF EXISTS _chops_migration_lock"))
            name, fragment = "locks", f"the migration lock is held by pid {pid}"
        elif case == "stale pid file":
            pid = dead_pid()
            path = pid_file(var_of(demo), pid, 1.0)
            stack.callback(path.unlink)
            name, fragment = "pid files", f"pid {pid} (pipeline.run numbers {DAY}) is gone"
        report, result = check(demo, **extra)
    assert result.returncode == 1 and "error: unhealthy: " in result.stderr and "Traceback" not in result.stderr
    found = by_name(report)[name]
    assert found["status"] == "fail", found
    assert fragment in found["reason"], found["reason"]
    assert report["healthy"] is False
    if name == "database":
        # nothing else can be judged without it: reported as not checked, not as more failures
        skipped = by_name(report)["migrations"]
        assert skipped["status"] == "warn" and skipped["reason"].startswith("not checked"), skipped


def test_check_fails_when_cron_entries_differ(demo, settings):
    require(shutil.which("crontab") is not None, "cron is not installed (apt-get install cron)")
    from ops.pipelines import cron

    with crontab_lock():
        had, text = crontab_text()
        # an entry of this checkout for events_ingest, but not the one it should be (and it never fires: Feb 30)
        line = f"0 0 30 2 * /bin/true # {cron.tag(settings, 'events_ingest')}\n"
        try:
            subprocess.run(["crontab", "-"], input=(text if had else "") + line, text=True, check=True,
                           capture_output=True)
            report, result = check(demo)
        finally:
            restore_crontab(had, text)
    assert result.returncode == 1
    found = by_name(report)["cron"]
    assert found["status"] == "fail" and "events_ingest differs" in found["reason"], found
    assert "daily_rollup missing" in found["reason"] and "inv pipeline.schedule --all" in found["reason"]
