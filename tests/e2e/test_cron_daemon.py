"""The real cron daemon runs a scheduled pipeline through the real runner, in cron's bare environment.

Installs a `* * * * *` entry (the rendered command, with the data directory of this test), waits for the run to
appear in the ledger with trigger='cron', unschedules, and checks that the crontab is exactly as it was. Needs
root to start the daemon when none runs (then stops it again); a running daemon is used and left running.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import clean_environ, inv, require

pytestmark = pytest.mark.slow

CRON = Path("/usr/sbin/cron")
PIDFILE = Path("/run/crond.pid")
FIRE_WITHIN = 130.0  # seconds: cron notices a new crontab at its next minute and fires it at the one after


def crontab_l() -> tuple[int, str]:
    done = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    return done.returncode, done.stdout


@pytest.fixture
def cron_daemon():
    """A running cron daemon: the one already running, or one started here (and stopped afterwards)."""
    from ops.pipelines.cron import daemon_pid

    require(shutil.which("crontab") is not None and CRON.exists(), "cron is not installed (apt-get install cron)")
    running = daemon_pid()
    if running:
        yield running
        return
    require(os.geteuid() == 0, "no cron daemon runs, and starting one needs root")
    subprocess.run([str(CRON)], check=True, capture_output=True, timeout=30)  # daemonizes
    started = None
    for _ in range(100):
        started = daemon_pid()
        if started and PIDFILE.exists():
            break
        time.sleep(0.1)
    assert started, "cron did not start"
    try:
        yield started
    finally:
        pid = int(PIDFILE.read_text().split()[0]) if PIDFILE.exists() else started
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)


@pytest.fixture
def saved_crontab():
    """This user's crontab, saved and restored exactly (shares its lock with the integration tests)."""
    with open(Path(tempfile.gettempdir()) / "chops-crontab-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        code, text = crontab_l()
        try:
            yield (code, text)
        finally:
            if code == 0:
                subprocess.run(["crontab", "-"], input=text, text=True, check=True, capture_output=True)
            else:
                subprocess.run(["crontab", "-r"], capture_output=True)


def pick_pipeline(settings):
    """A real pipeline from pipelines/: events_ingest when it is there, else one without dependencies."""
    listed = inv("--list").stdout
    require("pipeline.run" in listed, "the pipeline runner (inv pipeline.run) does not exist yet")
    from ops.pipelines.definition import load_pipelines

    registry = load_pipelines(settings)

    def has_module(p) -> bool:
        module = sys.modules.get(p.module)
        return bool(module and getattr(module, "__file__", None) and Path(module.__file__).exists())

    candidates = [p for p in registry.pipelines.values() if has_module(p) and not p.depends_on]
    candidates.sort(key=lambda p: (p.name != "events_ingest", p.name))
    require(bool(candidates), "pipelines/ has no pipeline without dependencies to schedule")
    return candidates[0]


def ledger_row(env: dict, name: str) -> dict | None:
    """The newest attempt of ``name`` started by cron, or None (also while the run holds the embedded engine)."""
    sql = ("SELECT toString(status) AS status, toString(trigger) AS trigger, toString(partition) AS day, error "
           f"FROM run_ledger FINAL WHERE pipeline = '{name}' AND trigger = 'cron' ORDER BY updated_at DESC LIMIT 1")
    done = inv("db.query", sql, "--json", env={**env, "CHOPS_CLICKHOUSE__LOCK_TIMEOUT": "2"}, timeout=60)
    if done.returncode != 0:
        return None
    rows = json.loads(done.stdout or "[]")
    return rows[0] if rows else None


def test_cron_runs_a_scheduled_pipeline(cron_daemon, saved_crontab, tmp_path):
    from ops.pipelines import cron, cron_doctor
    from ops.core.settings import load_settings

    var = tmp_path / "var"
    env = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(var), CHOPS_ENV_FILE=str(tmp_path / "no.env"))
    settings = load_settings(environ=env)
    p = pick_pipeline(settings)
    for step in (("db.setup",), ("db.migrate",)):
        done = inv(*step, env=env)
        assert done.returncode == 0, done.stderr
    if p.name == "events_ingest":
        from ops.pipelines.sample_data import write_sample_data

        # today too: should midnight (UTC) pass during the test, cron's "yesterday" is today's date
        write_sample_data(settings, days=2, end=datetime.now(timezone.utc).date(), rows_per_day=500)

    # the settings that came from this process's environment must reach the job: name them explicitly
    extra = {"CHOPS_PATHS__VAR": str(var)}
    every_minute = dataclasses.replace(p, schedule="* * * * *")

    [row] = cron_doctor.doctor(settings, [every_minute], environment=extra)
    assert row["status"] == "ok", row

    plan = cron.plan(settings, [every_minute], names=[p.name], environment=extra)
    assert [c.action for c in plan.changes] == ["add"]
    installed_at = time.monotonic()
    cron.apply(plan)
    log = cron.log_path(settings, p.name)
    fired = found = None
    try:
        while time.monotonic() - installed_at < FIRE_WITHIN + 60:
            if fired is None and log.exists():
                fired = time.monotonic() - installed_at
            if fired is not None or time.monotonic() - installed_at > 30:
                found = ledger_row(env, p.name)
                if found:  # the job may have started and ended while the query ran: its log is there by now
                    fired = fired if fired is not None or not log.exists() else time.monotonic() - installed_at
                    break
            if fired is None and time.monotonic() - installed_at > FIRE_WITHIN:
                break
            time.sleep(1)
    finally:
        cron.apply(cron.unschedule(settings, [p], names=[p.name]))
        assert crontab_l() == saved_crontab, "the crontab is not back to what it was"
    assert fired is not None or found, \
        f"cron did not run the entry within {FIRE_WITHIN:.0f} s (daemon pid {cron_daemon})"
    assert fired is not None, f"cron ran the entry (its ledger row: {found}) but wrote no log at {log}"
    print(f"\ncron fired {fired:.0f} s after the entry was installed; ledger row seen after "
          f"{time.monotonic() - installed_at:.0f} s")
    assert found, f"no ledger row with trigger=cron; the job's log says:\n{log.read_text()[-2000:]}"
    # let the run finish, then it must have succeeded: cron's environment was enough
    deadline = time.monotonic() + 300
    while found["status"] == "running" and time.monotonic() < deadline:
        time.sleep(3)
        found = ledger_row(env, p.name) or found
    expected_day = {date.today() - timedelta(days=1), date.today(),
                    datetime.now(timezone.utc).date() - timedelta(days=1)}
    assert found["status"] == "succeeded", f"{found}\nlog:\n{log.read_text()[-2000:]}"
    assert date.fromisoformat(found["day"]) in expected_day
