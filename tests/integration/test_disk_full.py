"""A full disk, for real (issue 14, finding 8): a small tmpfs filled to the last byte, with var/ (or the database, or
the logs) on it. Every command gives one line and exit 1 (or works, when it writes nothing), never a traceback;
proc.check reports the database and the disk as failed; nothing is lost or left half-written, and once space is
freed everything works as before. Mounting needs root: skipped with the reason otherwise (a failure under CI=true).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import textwrap
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.conftest import clean_environ, inv, require

pytestmark = pytest.mark.slow

DAY = (date.today() - timedelta(days=3)).isoformat()

PIPELINES = '''
from ops.pipelines.definition import pipeline

@pipeline(name="numbers", target="numbers_t")
def numbers(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number FROM numbers(1000)", run.params())
'''


@pytest.fixture
def tmpfs(tmp_path):
    """A 48 MiB tmpfs of this test's own."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount = shutil.which("mount")
    done = subprocess.run([mount, "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], capture_output=True,
                          text=True) if mount else None
    require(done is not None and done.returncode == 0,
            f"cannot mount a tmpfs here ({(done.stderr.strip() if done else 'no mount command') or 'refused'}): "
            "the disk-full tests need root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(mnt: Path) -> Path:
    """Fill the file system of ``mnt`` to its last byte: 1 MiB writes, then single bytes, until ENOSPC."""
    path = mnt / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    assert os.statvfs(mnt).f_bavail == 0
    return path


def project(tmp_path, **settings) -> dict[str, str]:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir(exist_ok=True)
    (pipelines / "testing.py").write_text(textwrap.dedent(PIPELINES))
    env = clean_environ(CHOPS_ENV="test", CHOPS_ENV_FILE=str(tmp_path / "none"), CHOPS_PIPELINES__DIR=str(pipelines),
                        **settings)
    for args in (["db.setup"], ["db.migrate"],
                 ["db.query", "CREATE TABLE numbers_t (day Date, n UInt64) ENGINE = MergeTree PARTITION BY day ORDER BY n"],
                 ["pipeline.run", "numbers", "--date", DAY]):
        result = inv(*args, env=env)
        assert result.returncode == 0, result.stderr
    return env


def content(env) -> list:
    result = inv("db.query", "SELECT count() AS rows, sum(n) AS total FROM numbers_t", "--json", env=env)
    assert result.returncode == 0, result.stderr
    ledger = inv("db.query", "SELECT count() AS attempts, countIf(status = 'succeeded') AS ok FROM run_ledger FINAL",
                 "--json", env=env)
    return json.loads(result.stdout) + json.loads(ledger.stdout)


def one_line_or_success(result, args) -> None:
    """What a command may do on a full disk: work (it writes nothing), or fail with exit 1 and one line."""
    assert "Traceback" not in result.stderr and "Logging error" not in result.stderr, (args, result.stderr)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1, (args, result.returncode, result.stderr)
        if args[0] == "proc.check":  # the verdict: its table, then one line naming what failed
            assert lines[-1] == "error: unhealthy: 2 checks failed: database, disk (the reasons are above)", result.stderr
            assert "No space left on device" in result.stdout
            return
        assert lines[-1].startswith("error: ") and "No space left on device" in lines[-1], (args, result.stderr)
        assert len(lines) == 1, (args, result.stderr)


COMMANDS = [
    ["config"], ["db.info"], ["db.status"], ["db.migrate"], ["db.query", "SELECT 1"], ["db.validate", "--no-sql"],
    ["pipeline.list"], ["pipeline.history"], ["pipeline.run", "numbers", "--date", DAY, "--force"],
    ["pipeline.run", "numbers", "--date", DAY, "--dry-run"], ["backfill", "--start", DAY, "--end", DAY, "--force"],
    ["backfill.plans"], ["proc.list"], ["proc.clean"], ["proc.check"], ["proc.logs"],
]


def test_every_command_gives_one_line_on_a_full_var_and_nothing_is_lost(tmp_path, tmpfs):
    var = tmpfs / "var"
    env = project(tmp_path, CHOPS_PATHS__VAR=str(var))
    before = content(env)
    filler = fill(tmpfs)

    failed = []
    for args in COMMANDS:
        result = inv(*args, env=env)
        one_line_or_success(result, args)
        failed += [args[0]] if result.returncode else []
    for must_fail in ("db.info", "db.migrate", "pipeline.run", "backfill", "proc.check"):
        assert must_fail in failed, f"{must_fail} did not fail on a full disk"

    report = inv("proc.check", "--json", env=env)
    assert report.returncode == 1 and "Traceback" not in report.stderr
    found = {c["name"]: c for c in json.loads(report.stdout)["checks"]}
    assert found["database"]["status"] == "fail" and "clickhouse.lock: No space left on device" in \
        found["database"]["reason"]
    assert found["disk"]["status"] == "fail" and "has 0.0% free" in found["disk"]["reason"]
    assert found["pid files"]["status"] == "pass" and found["locks"]["status"] in ("pass", "warn")

    # nothing half-written is left behind, and nothing is lost
    assert list((var / "run").glob("*")) == []
    assert (var / "clickhouse.lock").read_text() == ""
    assert all(p.read_text() == "" for p in (var / "locks").glob("*.lock"))
    filler.unlink()
    assert content(env) == before
    assert inv("pipeline.run", "numbers", "--date", DAY, "--force", env=env).returncode == 0
    after = json.loads(inv("proc.check", "--json", env=env).stdout)["checks"]
    assert {c["name"]: c["status"] for c in after}["disk"] == "pass"


def test_a_database_elsewhere_is_measured_where_it_really_is(tmp_path, tmpfs):
    # the database on the tmpfs through a symlink, var/ on the ordinary disk: the disk check names the database's
    # file system, and a full one there gives one line (its lock is beside the real path, on the full disk)
    (tmpfs / "db").mkdir()
    (tmp_path / "link").symlink_to(tmpfs / "db")
    env = project(tmp_path, CHOPS_PATHS__VAR=str(tmp_path / "var"), CLICKHOUSE_URL=f"chdb://{tmp_path}/link")
    assert (tmpfs / "db.lock").exists() and not (tmp_path / "link.lock").exists()
    healthy = json.loads(inv("proc.check", "--json", env=env).stdout)
    disk = {c["name"]: c for c in healthy["checks"]}["disk"]
    assert f"the database {tmp_path}/link has " in disk["reason"] and "of 48.0 MiB" in disk["reason"], disk
    before = content(env)

    filler = fill(tmpfs)
    run = inv("pipeline.run", "numbers", "--date", DAY, "--force", env=env)
    one_line_or_success(run, ["pipeline.run"])
    assert run.returncode == 1
    report = inv("proc.check", "--json", env=env)
    found = {c["name"]: c for c in json.loads(report.stdout)["checks"]}
    assert found["database"]["status"] == "fail"
    assert found["disk"]["status"] == "fail" and f"the database {tmp_path}/link has 0.0% free" in \
        found["disk"]["reason"]
    filler.unlink()
    assert content(env) == before


def test_a_full_disk_under_the_logs_does_not_fail_a_run(tmp_path, tmpfs):
    env = project(tmp_path, CHOPS_PATHS__VAR=str(tmp_path / "var"), CHOPS_PATHS__LOGS=str(tmpfs / "logs"))
    fill(tmpfs)
    run = inv("pipeline.run", "numbers", "--date", DAY, "--force", env=env)
    assert "Traceback" not in run.stderr and "Logging error" not in run.stderr, run.stderr
    assert run.returncode == 0, run.stderr  # the data and the ledger do not depend on the log
    assert "warning: cannot write the log" in run.stderr and "succeeded" in run.stderr


def test_a_lock_file_that_cannot_be_written_holds_nothing_and_stays_empty(tmpfs):
    from ops.core.errors import WorkFailed
    from ops.core.locks import FileLock

    path = tmpfs / "locks" / "x.lock"
    path.parent.mkdir()
    path.touch()
    filler = fill(tmpfs)
    with pytest.raises(WorkFailed) as err:
        FileLock(path, "a test lock", 1).acquire()
    assert err.value.line() == (f"cannot write lock file {path}: No space left on device (free space on its disk "
                                "(df -h), then run the command again)")
    assert path.read_text() == ""
    filler.unlink()
    with FileLock(path, "a test lock", 1):  # not held by anyone: the failed attempt let go
        assert str(os.getpid()) in path.read_text()
    assert path.read_text() == ""


def test_a_pid_file_that_cannot_be_created_stops_the_work_and_a_later_update_does_not(tmpfs):
    from ops.core import pidfile
    from ops.core.errors import WorkFailed
    from ops.core.settings import load_settings

    settings = load_settings(environ=clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmpfs / "var"),
                                                   CHOPS_ENV_FILE=str(tmpfs / "none")))
    run = tmpfs / "var" / "run"
    run.mkdir(parents=True)
    filler = fill(tmpfs)
    try:
        with pytest.raises(WorkFailed, match="cannot write pid file .*: No space left on device"):
            pidfile.working(settings, "backfill", "plan p1", progress="0/2")
        assert list(run.iterdir()) == []  # nothing half-written
        filler.unlink()
        path = pidfile.working(settings, "backfill", "plan p1", progress="0/2")
        filler = fill(tmpfs)
        time.sleep(0.6)  # past the twice-a-second limit, so this update is written (and fails)
        assert pidfile.working(settings, "backfill", "plan p1", progress="1/2") == path
        assert json.loads(path.read_text())["progress"] == "0/2"  # kept as it was: only its progress is behind
        assert sorted(p.name for p in run.iterdir()) == [path.name]
    finally:
        pidfile.done()
        filler.unlink(missing_ok=True)


def test_a_log_file_on_a_full_disk_warns_once_and_never_raises(tmpfs, capsys):
    import logging

    from ops.core.output import LogFile

    fill(tmpfs)
    logger = logging.getLogger("chops.test.full-disk")
    logger.propagate = False
    handler = LogFile(tmpfs / "run.log")
    logger.addHandler(handler)
    try:
        for n in range(3):
            logger.warning("line %d", n)
    finally:
        logger.removeHandler(handler)
        handler.close()
    err = capsys.readouterr().err
    assert err == f"warning: cannot write the log {tmpfs}/run.log: No space left on device; going on without it\n"
