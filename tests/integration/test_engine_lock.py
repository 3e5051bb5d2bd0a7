"""Two processes contending for the embedded engine: the second waits, names the holder, and then succeeds
(or, with a short timeout, fails with one line naming the holder's pid)."""

import subprocess
import sys
import time

from tests.conftest import ROOT, clean_environ, inv

HOLDER = """
import sys, time
from ops.core.settings import load_settings
from ops.clickhouse.client import connect
db = connect(load_settings(), create=True)
db.command("CREATE TABLE IF NOT EXISTS held (x UInt8) ENGINE = MergeTree ORDER BY x")
print("holding", flush=True)
time.sleep(float(sys.argv[1]))
"""


def start_holder(env, seconds):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(seconds)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding", proc.stderr.read()
    return proc


def test_second_process_waits_then_succeeds(tmp_path):
    env = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"),
                        CHOPS_ENV_FILE=str(tmp_path / "none.env"))
    holder = start_holder(env, 2.5)
    try:
        started = time.monotonic()
        result = inv("db.info", "--json", env={**env, "CHOPS_CLICKHOUSE__LOCK_TIMEOUT": "60"})
        waited = time.monotonic() - started
    finally:
        holder.wait(timeout=30)
    assert result.returncode == 0, result.stderr
    assert '"held"' in result.stdout  # it saw the holder's table: same engine, opened after the holder closed
    waiting = [line for line in result.stderr.splitlines() if line.startswith("waiting for")]
    assert len(waiting) == 1, result.stderr  # told once, not once per poll
    assert f"pid {holder.pid}" in waiting[0] and "since" in waiting[0]
    assert waited > 1.0  # it really queued behind the holder rather than failing or sharing


def test_short_timeout_fails_naming_the_holder(tmp_path):
    env = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"),
                        CHOPS_ENV_FILE=str(tmp_path / "none.env"))
    holder = start_holder(env, 20)
    try:
        result = inv("db.info", env={**env, "CHOPS_CLICKHOUSE__LOCK_TIMEOUT": "0.5"})
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the embedded database") and f"pid {holder.pid}" in last
    assert "after 0.5s" in last and "Traceback" not in result.stderr


def test_lock_is_released_when_the_holder_is_killed(tmp_path):
    env = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"),
                        CHOPS_ENV_FILE=str(tmp_path / "none.env"))
    holder = start_holder(env, 60)
    holder.kill()  # kill -9: no cleanup ran; the kernel drops the flock
    holder.wait()
    result = inv("db.info", "--json", env={**env, "CHOPS_CLICKHOUSE__LOCK_TIMEOUT": "5"})
    assert result.returncode == 0, result.stderr
    assert "waiting for" not in result.stderr


def test_the_same_database_through_a_symlink_waits_for_the_lock(tmp_path):
    # the lock is keyed by the resolved path: a second process naming the same data through a symlink queues
    # behind the holder instead of failing at once on chDB's own lock ("open in a process that is not chops")
    env = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"),
                        CHOPS_ENV_FILE=str(tmp_path / "none.env"))
    holder = start_holder(env, 2.5)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "db").symlink_to(tmp_path / "var" / "clickhouse")
    try:
        started = time.monotonic()
        result = inv("db.info", "--json", env={**env, "CLICKHOUSE_URL": f"chdb://{tmp_path}/elsewhere/db",
                                               "CHOPS_CLICKHOUSE__LOCK_TIMEOUT": "60"})
        waited = time.monotonic() - started
    finally:
        holder.wait(timeout=30)
    assert result.returncode == 0, result.stderr
    assert '"held"' in result.stdout  # the holder's table: the same database
    assert f"pid {holder.pid}" in result.stderr and waited > 1.0
    assert not (tmp_path / "elsewhere" / "db.lock").exists()  # one lock, beside the real path
