"""Deploys against a real sshd and rsync on loopback, as a non-root user, from a git copy of this project.

The module starts ``sshd -D`` on 127.0.0.1 (a free port, a throwaway host key and config) and deploys to
``/home/chopsdeploy/e2e`` as user ``chopsdeploy``. The first deploy builds the target's virtualenv (pip install of
requirements.txt); every later scenario reuses it. Tests of this module share that one target, so each holds a
machine-wide lock for its duration (pytest-xdist may run them in two processes) and starts from the known-good
commit (``ensure_good``), whatever ran before it.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import sys
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, VENV_BIN, clean_environ, require

pytestmark = pytest.mark.slow

USER = "chopsdeploy"
RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
GIT_ENV = {"GIT_AUTHOR_NAME": "e2e", "GIT_AUTHOR_EMAIL": "e2e@localhost", "GIT_COMMITTER_NAME": "e2e",
           "GIT_COMMITTER_EMAIL": "e2e@localhost", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True, capture_output=True,
                          text=True).stdout.strip()


class Target:
    """The sshd, the deploy user and the source repository of this test process."""

    def __init__(self, base: Path, port: int, src: Path, good: str):
        self.base, self.port, self.src, self.good = base, port, src, good
        self.home = Path(pwd.getpwnam(USER).pw_dir)
        self.path = self.home / "e2e"
        self.known_hosts = base / "known_hosts"
        self.key = base / "client"

    def args(self, path: Path | None = None) -> list[str]:
        return ["--host", "127.0.0.1", "--port", str(self.port), "--user", USER, "--path", str(path or self.path)]

    def env(self, **extra: str) -> dict[str, str]:
        return clean_environ(**{"CHOPS_DEPLOY__KNOWN_HOSTS": str(self.known_hosts),
                                "CHOPS_DEPLOY__IDENTITY_FILE": str(self.key), "CHOPS_DEPLOY__CONTROL_PERSIST": "15",
                                "CHOPS_PATHS__VAR": str(self.base / "var"), "CHOPS_ENV_FILE": str(self.base / "no.env"),
                                **extra})

    def inv(self, *args: str, timeout: float = 600, **extra: str) -> subprocess.CompletedProcess:
        """This project's inv (so coverage sees it), shipping the copy where a task ships (``--source``)."""
        return subprocess.run([str(VENV_BIN / "inv"), *args], cwd=ROOT, env=self.env(**extra), input="",
                              capture_output=True, text=True, timeout=timeout)

    def deploy(self, *flags: str, **extra: str) -> subprocess.CompletedProcess:
        return self.inv("deploy", *self.args(), "--source", str(self.src), *flags, **extra)

    def current(self) -> str | None:
        link = self.path / "current"
        return os.readlink(link) if link.is_symlink() else None

    def revision(self) -> str:
        return (self.path / "current" / "REVISION").read_text().strip()

    def crontab(self) -> str:
        return subprocess.run(["crontab", "-l", "-u", USER], capture_output=True, text=True).stdout

    def audit(self) -> list[dict]:
        path = self.path / "audit.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def releases(self) -> list[str]:
        base = self.path / "releases"
        return sorted(os.listdir(base)) if base.is_dir() else []

    def commit(self, message: str, files: dict[str, str | bytes]) -> str:
        for name, content in files.items():
            path = self.src / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        _git(self.src, "add", "-A")
        _git(self.src, "commit", "-qm", message)
        return _git(self.src, "rev-parse", "HEAD")

    def reset(self) -> None:
        _git(self.src, "reset", "-q", "--hard", self.good)
        _git(self.src, "clean", "-qfd")

    def ensure_good(self) -> None:
        """The known-good commit is current and healthy (a deploy when it is not; a no-op when it is)."""
        self.reset()
        if self.current() and self.revision() == self.good[:12] and (self.path / "current" / "HEALTHY").exists():
            return
        done = self.deploy()
        assert done.returncode == 0, done.stderr[-3000:]
        assert self.revision() == self.good[:12]

    def close_shared_connection(self) -> None:
        subprocess.run(["ssh", "-o", f"ControlPath={_control_dir()}/%C", "-O", "exit", "-p", str(self.port),
                        f"{USER}@127.0.0.1"], capture_output=True, timeout=10)

    def wipe(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
        subprocess.run(["crontab", "-r", "-u", USER], capture_output=True)

    def snapshot(self) -> dict:
        """Every name, link target, size and mtime under the deploy path, and the crontab. Under shared/var only the
        names: reading the embedded database (pending migrations) opens it, which touches its directory's mtime."""
        seen = {}
        var = self.path / "shared" / "var"
        for base, dirs, files in os.walk(self.path):
            for name in dirs + files:
                p = Path(base) / name
                st = p.lstat()
                seen[str(p)] = None if p.is_relative_to(var) else (
                    os.readlink(p) if p.is_symlink() else None, st.st_size, st.st_mtime_ns)
        return {"files": seen, "crontab": self.crontab()}


def _setup_user(base: Path) -> None:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", USER], check=True, capture_output=True)
    # a user made by useradd is locked ('!') and refused even with a key under UsePAM no
    subprocess.run(["usermod", "-p", "*", USER], check=True, capture_output=True)
    home = Path(pwd.getpwnam(USER).pw_dir)
    # the deploy user installs packages the way this machine is set up to (index, mirrors, certificates)
    for conf in (Path.home() / ".config" / "pip" / "pip.conf", Path.home() / ".pip" / "pip.conf"):
        if conf.exists():
            dest = home / ".config" / "pip" / "pip.conf"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(conf, dest)
            shutil.chown(dest.parent, USER, USER)
            shutil.chown(dest.parent.parent, USER, USER)
            shutil.chown(dest, USER, USER)
            break


def _start_sshd(base: Path, keys: Path, port: int) -> subprocess.Popen:
    """``keys``: a directory the deploy user can read (the sshd child that checks its key runs as that user)."""
    os.makedirs("/run/sshd", exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "hostkey")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "client")], check=True)
    keys.chmod(0o755)
    shutil.copy(base / "client.pub", keys / "authorized_keys")
    (keys / "authorized_keys").chmod(0o644)
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base / 'hostkey'}\nPidFile {base / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nMaxSessions 50\nMaxStartups 50\n")
    host_key = (base / "hostkey.pub").read_text().split()
    (base / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    sshd = subprocess.Popen([shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f", str(base / "sshd_config")],
                            stdout=open(base / "sshd.log", "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return sshd
        except OSError:
            if sshd.poll() is not None:
                break
            time.sleep(0.05)
    sshd.kill()
    pytest.fail(f"sshd did not start: {(base / 'sshd.log').read_text()[-2000:]}")


def _copy_project(dest: Path) -> str:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split("\n")
    for name in listed:
        if name and (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-qm", "the project as it is")
    return _git(dest, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    require(os.geteuid() == 0, "deploy tests create a user and start sshd: they run as root")
    require(bool(shutil.which("sshd") or os.path.exists("/usr/sbin/sshd")) and bool(shutil.which("rsync")),
            "sshd and rsync are not installed (apt-get install openssh-server rsync)")
    require(bool(shutil.which("ssh")) and bool(shutil.which("ssh-keygen")) and bool(shutil.which("git")),
            "ssh, ssh-keygen and git are needed")
    require(bool(shutil.which("crontab")), "the crontab command is not installed (apt-get install cron)")
    base = tmp_path_factory.mktemp("deploy")
    _setup_user(base)
    port = _free_port()
    keys = Path(tempfile.mkdtemp(prefix="chops-e2e-keys-"))
    sshd = _start_sshd(base, keys, port)
    src = base / "src"
    src.mkdir()
    good = _copy_project(src)
    t = Target(base, port, src, good)
    try:
        yield t
    finally:
        t.close_shared_connection()
        sshd.terminate()
        sshd.wait(timeout=10)
        shutil.rmtree(keys, ignore_errors=True)


def _control_dir() -> str:
    return os.path.join(os.environ.get("XDG_RUNTIME_DIR") or "/tmp", f"chops-ssh-{os.getuid()}")


@pytest.fixture
def target(loopback):
    """The target is one per machine: tests that use it run one at a time across test processes, and the first of
    a test run wipes it."""
    from ops.core.locks import FileLock

    with FileLock(Path(tempfile.gettempdir()) / "chops-e2e-deploy.lock", "the deploy e2e target", timeout=1800):
        marker = loopback.home / ".chops-e2e-run"
        if not marker.exists() or marker.read_text() != RUN_ID:
            loopback.wipe()
            marker.write_text(RUN_ID)
        try:
            yield loopback
        finally:
            loopback.reset()


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- the scenarios ------------------------------------------------------------------------------------------------------

def test_first_deploy_builds_the_venv_and_points_cron_at_current(target):
    target.wipe()
    target.reset()
    done = target.deploy()
    assert done.returncode == 0, done.stderr[-3000:]
    for n in range(1, 8):
        assert f"[{n}/7] " in done.stderr
    assert "built in" in done.stderr and "[7/7] verify: healthy" in done.stderr
    release = target.current()
    assert release and release.startswith("releases/") and release.endswith("-" + target.good[:12])
    rel = target.path / release
    assert target.revision() == target.good[:12] and (rel / "HEALTHY").exists()
    assert os.readlink(rel / "var") == "../../shared/var" and os.readlink(rel / ".env") == "../../shared/.env"
    assert oct((target.path / "shared" / ".env").stat().st_mode & 0o777) == "0o600"
    assert (target.path / "shared" / "var" / "clickhouse").is_dir()  # the database lives in shared/
    owner = pwd.getpwuid((rel / "tasks.py").stat().st_uid).pw_name
    assert owner == USER  # deployed as the non-root user
    entries = [line for line in _lines(target.crontab()) if "# chops:" in line]
    assert len(entries) == 3, target.crontab()
    current = f"{target.path}/current"
    for line in entries:
        assert f"cd {current} && " in line and f"{current}/.venv/bin/inv pipeline.run" in line
        assert "releases/" not in line
    last = target.audit()[-1]
    assert (last["action"], last["result"], last["from"], last["to"]) == ("deploy", "ok", None, release.split("/")[-1])
    assert last["who"].startswith("root@") and len(last["steps"]) == 7


def test_the_same_commit_again_is_a_no_op_that_reverifies_health(target):
    target.ensure_good()
    before, cron = target.releases(), target.crontab()
    started = time.monotonic()
    done = target.deploy()
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert "nothing to deploy" in done.stderr and "health re-verified: healthy" in done.stderr
    assert "skipped" in done.stderr and "[2/7]" not in done.stderr
    assert target.releases() == before and target.crontab() == cron
    assert target.audit()[-1]["result"] == "no-op"
    assert took < 10, f"a no-op deploy took {took:.1f}s"


def test_a_code_change_is_a_new_release_that_reuses_the_venv(target):
    target.ensure_good()
    old = target.path / target.current()
    target.commit("a code-only change", {"README.md": (target.src / "README.md").read_text() + "\nchanged\n"})
    done = target.deploy()
    assert done.returncode == 0, done.stderr[-3000:]
    new = target.path / target.current()
    assert new != old and "reused" in done.stderr and "built in" not in done.stderr
    assert os.readlink(new / ".venv") == os.readlink(old / ".venv")
    assert "1 sent" in done.stderr
    assert (new / "tasks.py").stat().st_ino == (old / "tasks.py").stat().st_ino  # hard-linked from the old release
    assert (new / "README.md").stat().st_ino != (old / "README.md").stat().st_ino
    assert old.is_dir()  # kept for rollback


def test_an_unhealthy_release_is_rolled_back(target):
    target.ensure_good()
    before, cron = target.current(), target.crontab()
    prod = (target.src / "config" / "prod.toml").read_text()
    target.commit("a release whose health check fails", {
        "config/prod.toml": prod + "\n[proc]\nmin_free_disk_percent = 100.0\n"})
    # two hosts (the same sshd by another name): the first fails its health gate, so the second is not attempted
    args = target.args()
    done = target.inv("deploy", "--host", "127.0.0.1,localhost", *args[2:], "--source", str(target.src))
    assert done.returncode == 1, done.stderr[-3000:]
    assert "failed its health check" in done.stderr and "rolled back" in done.stderr
    assert "min_free_disk_percent" in done.stderr and "not attempted: localhost" in done.stderr
    assert "re-verified: healthy" in done.stderr  # the restored release was checked, not assumed healthy
    assert target.current() == before
    assert target.crontab() == cron
    last = target.audit()[-1]
    assert last["result"] == "rolled back" and "disk" in last["error"] and last["from"] == before.split("/")[-1]
    bad = target.path / "releases" / last["to"] / "BAD"
    assert bad.exists() and "health check" in bad.read_text()
    status = target.inv("deploy.status", *target.args(), "--json")
    assert status.returncode == 0, status.stderr
    [report] = json.loads(status.stdout)
    assert report["health"]["healthy"] and any(r["bad"] for r in report["releases"])
    # rolling back (forward) to the BAD release by name: it is unhealthy, so current is switched back again
    again = target.inv("deploy.rollback", *target.args(), "--to", last["to"])
    assert again.returncode == 1, again.stderr[-3000:]
    assert "was marked BAD" in again.stderr and "is unhealthy" in again.stderr and "switched back" in again.stderr
    assert target.current() == before and target.crontab() == cron
    assert target.audit()[-1]["action"] == "rollback" and target.audit()[-1]["result"] == "failed"


def test_a_release_that_fails_its_smoke_test_is_never_switched_to(target):
    target.ensure_good()
    before, cron, releases = target.current(), target.crontab(), target.releases()
    target.commit("a pipeline module that does not load", {"pipelines/broken.py": "raise RuntimeError('broken on "
                                                                                   "purpose')\n"})
    done = target.deploy()
    assert done.returncode == 1, done.stderr[-3000:]
    assert "[5/7] test FAILED" in done.stderr and "broken on purpose" in done.stderr
    assert "[6/7]" not in done.stderr and "current was not touched" in done.stderr
    assert target.current() == before and target.crontab() == cron
    [new] = [r for r in target.releases() if r not in releases]
    assert "broken on purpose" in (target.path / "releases" / new / "BAD").read_text()
    last = target.audit()[-1]
    assert last["result"] == "failed" and "broken on purpose" in last["error"] and last["to"] == new
    assert not (target.path / "deploy.lock").exists()


def test_an_unhealthy_current_release_fails_the_no_op(target):
    target.ensure_good()
    env = target.path / "shared" / ".env"
    kept = env.read_text()
    try:
        env.write_text(kept + "CHOPS_PROC__MIN_FREE_DISK_PERCENT=100\nAPI_TOKEN=s3cret-never-shown\n")
        done = target.deploy()
        assert done.returncode == 1, done.stderr[-3000:]
        assert "is current and UNHEALTHY" in done.stderr and "disk" in done.stderr
        assert "s3cret" not in done.stderr + done.stdout
        assert target.audit()[-1]["result"] == "unhealthy" and "s3cret" not in (target.path / "audit.log").read_text()
        plan = target.inv("deploy.plan", *target.args(), "--source", str(target.src), "--force")
        assert plan.returncode == 0, plan.stderr
        assert "not in .env.example: API_TOKEN" in plan.stdout and "s3cret" not in plan.stdout + plan.stderr
    finally:
        env.write_text(kept)


def test_a_deploy_killed_during_sync_leaves_current_and_a_stale_lock(target):
    target.ensure_good()
    before, cron = target.current(), target.crontab()
    target.commit("a big file to make the sync slow", {"big.bin": os.urandom(1_500_000)})
    env = target.env(CHOPS_DEPLOY__BWLIMIT="150")
    first = subprocess.Popen([str(VENV_BIN / "inv"), "deploy", *target.args(), "--source", str(target.src)], cwd=ROOT,
                             env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            syncing = [r for r in target.releases() if not (target.path / "releases" / r / "REVISION").exists()]
            if syncing and (target.path / "deploy.lock").exists():
                break
            assert first.poll() is None, first.communicate()[1][-3000:]
            time.sleep(0.1)
        else:
            pytest.fail("the deploy never started syncing")
        # two deploys at once: the second refuses, naming the first
        second = target.deploy()
        assert second.returncode == 1, second.stderr[-3000:]
        assert "is being deployed by" in second.stderr and f"pid {first.pid}" in second.stderr
        # the hint reaches this target again: every flag that is not the default
        assert (f"inv deploy.unlock --host 127.0.0.1 --user {USER} --port {target.port} --path {target.path}"
                in second.stderr), second.stderr
        assert first.poll() is None, "the first deploy should still be syncing"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    assert target.current() == before and target.crontab() == cron
    status = target.inv("deploy.status", *target.args(), "--json")
    assert status.returncode == 0, status.stderr
    [report] = json.loads(status.stdout)
    assert report["lock"]["state"] == "stale" and f"pid {first.pid}" in report["lock"]["reason"]
    shown = target.inv("deploy.status", *target.args())
    assert "STALE" in shown.stdout
    target.reset()
    done = target.deploy()
    assert done.returncode == 0, done.stderr[-3000:]
    assert "took over a stale deploy lock" in done.stderr
    assert not (target.path / "deploy.lock").exists()
    assert all((target.path / "releases" / r / "REVISION").exists() for r in target.releases())  # the half sync is gone
    assert target.current() == before


def _busy_chops_process(target) -> tuple[subprocess.Popen, Path]:
    """A chops process on the target that works until it is stopped (as a long backfill would), and the folder of
    its pid file, which it has written."""
    code = ("import time; from ops.core import pidfile; from ops.core.settings import load_settings; "
            "pidfile.working(load_settings(), 'backfill', 'plan e2e'); time.sleep(300)")
    worker = subprocess.Popen(["su", USER, "-s", "/bin/sh", "-c",
                               f"cd {target.path}/current && CHOPS_ENV=prod exec ./.venv/bin/python -c \"{code}\""],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = target.path / "shared" / "var" / "run"
    deadline = time.monotonic() + 30
    while not list(run.glob("*.json")) and time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.1)
    if not list(run.glob("*.json")):
        worker.kill()
        raise AssertionError("the chops process never wrote its pid file")
    return worker, run


def test_running_chops_processes_are_drained_then_stopped(target):
    target.ensure_good()
    worker, run = _busy_chops_process(target)
    try:
        target.commit("deploy while a backfill runs", {"NOTES.txt": "drain\n"})
        done = target.deploy(CHOPS_DEPLOY__DRAIN_TIMEOUT="2", CHOPS_DEPLOY__KILL_GRACE="2")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "still running after 2s: proc.kill --all --grace 2" in done.stderr
        assert "stopped 1 with proc.kill" in done.stderr
        assert worker.wait(timeout=30) != 0  # ended by the signal, before the switch
        assert not list(run.glob("*.json"))
    finally:
        if worker.poll() is None:
            worker.kill()


def test_unlock_removes_a_lock_that_blocks_deploys(target):
    target.ensure_good()
    lock = target.path / "deploy.lock"
    lock.write_text(json.dumps({"id": "x1", "user": "ops", "host": "build-7", "pid": 4242, "since": "2026-01-01 "
                                "00:00:00 UTC", "command": "inv deploy --host h", "release": "R"}))
    shutil.chown(lock, USER, USER)
    refused = target.deploy()
    assert refused.returncode == 1 and "ops@build-7 pid 4242" in refused.stderr and "deploy.unlock" in refused.stderr
    done = target.inv("deploy.unlock", *target.args())
    assert done.returncode == 0, done.stderr
    assert "removed the deploy lock of ops@build-7 pid 4242" in done.stderr and not lock.exists()
    assert target.audit()[-1]["action"] == "unlock"
    again = target.inv("deploy.unlock", *target.args())
    assert again.returncode == 0 and "nothing to remove" in again.stderr
    # a holder alive on this machine (this test process) is not removed without --force
    import psutil

    me = {"id": "x2", "user": "root", "host": socket.gethostname(), "pid": os.getpid(),
          "create_time": psutil.Process().create_time(), "since": "2026-01-01 00:00:00 UTC", "command": "pytest"}
    lock.write_text(json.dumps(me))
    shutil.chown(lock, USER, USER)
    alive = target.inv("deploy.unlock", *target.args())
    assert alive.returncode == 1 and "held by a running deploy" in alive.stderr and lock.exists()
    forced = target.inv("deploy.unlock", *target.args(), "--force")
    assert forced.returncode == 0 and not lock.exists()


def test_deploy_rollback_and_rollback_to(target):
    target.ensure_good()
    good = target.current()
    target.commit("another release", {"NOTES.txt": "two\n"})
    done = target.deploy()
    assert done.returncode == 0, done.stderr[-3000:]
    newer = target.current()
    back = target.inv("deploy.rollback", *target.args())
    assert back.returncode == 0, back.stderr[-3000:]
    assert target.current() == good and "[3/3] verify: healthy" in back.stderr
    assert all(f"{target.path}/current" in line for line in _lines(target.crontab()) if "# chops:" in line)
    last = target.audit()[-1]
    assert (last["action"], last["result"], last["to"]) == ("rollback", "ok", good.split("/")[-1])
    forward = target.inv("deploy.rollback", *target.args(), "--to", newer.split("/")[-1])
    assert forward.returncode == 0, forward.stderr[-3000:]
    assert target.current() == newer
    missing = target.inv("deploy.rollback", *target.args(), "--to", "20000101T000000Z-nope")
    assert missing.returncode == 2 and "no release" in missing.stderr
    assert not (target.path / "deploy.lock").exists()


def test_plan_changes_nothing(target):
    target.ensure_good()
    target.commit("a change to plan", {"README.md": "replaced\n", "docs/new.md": "new\n"})
    (target.src / "Makefile").unlink()
    _git(target.src, "commit", "-qam", "no Makefile")
    before = target.snapshot()
    done = target.inv("deploy.plan", *target.args(), "--source", str(target.src), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    [plan] = json.loads(done.stdout)
    files = plan["details"]["files"]
    assert files == {"added": ["docs/new.md"], "changed": ["README.md"], "removed": ["Makefile"]}
    assert plan["action"] == "deploy" and plan["lock"]["state"] == "free"
    assert plan["details"]["dependencies"]["change"] is False
    assert plan["details"]["migrations"]["pending"] == []
    assert plan["details"]["cron"]["changed"] is False and plan["env"]["missing"] == []
    human = target.inv("deploy.plan", *target.args(), "--source", str(target.src))
    assert human.returncode == 0 and "nothing was changed" in human.stderr and "README.md" in human.stdout
    assert target.snapshot() == before


def test_bad_input_is_one_line_exit_2_and_changes_nothing(target):
    target.ensure_good()
    before = target.snapshot()
    args = target.args()
    cases = {
        "host": ["deploy", "--host", "127.0.0.1;touch /tmp/x", *args[2:]],
        "host with a space": ["deploy", "--host", "a b", *args[2:]],
        "user": ["deploy", *args[:4], "--user", "chops deploy", "--path", str(target.path)],
        "target": ["deploy", "--target", "no-such-target"],
        "relative path": ["deploy", *args[:-1], "srv/chops"],
        "root path": ["deploy", *args[:-1], "/"],
    }
    for case, argv in cases.items():
        done = target.inv(*argv)
        assert done.returncode == 2, (case, done.stderr)
        assert len(_lines(done.stderr)) == 1 and done.stderr.startswith("error: "), (case, done.stderr)
    (target.src / "README.md").write_text("uncommitted\n")
    dirty = target.deploy()
    assert dirty.returncode == 2 and "uncommitted changes (README.md)" in dirty.stderr and "--allow-dirty" in dirty.stderr
    assert target.snapshot() == before


def test_a_host_that_does_not_answer_times_out(target):
    with socket.socket() as silent:  # accepts connections (the kernel does) but never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        started = time.monotonic()
        done = target.inv("deploy", "--host", "127.0.0.1", "--port", str(port), "--user", USER, "--path", "/srv/x",
                          "--source", str(target.src), CHOPS_DEPLOY__CONNECT_TIMEOUT="2", timeout=60)
        took = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert "did not answer within 2s" in done.stderr and len(_lines(done.stderr)) == 1
    assert took < 20


def test_an_unknown_host_key_is_refused_unless_accepted(target):
    empty = target.base / "empty_known_hosts"
    empty.write_text("")
    target.close_shared_connection()  # a shared connection, once open, is not checked again
    plan = ["deploy.plan", *target.args(), "--source", str(target.src)]
    refused = target.inv(*plan, CHOPS_DEPLOY__KNOWN_HOSTS=str(empty))
    assert refused.returncode == 2 and "is not in" in refused.stderr and "--accept-new-host-key" in refused.stderr
    accepted = target.inv(*plan, "--accept-new-host-key", CHOPS_DEPLOY__KNOWN_HOSTS=str(empty))
    assert accepted.returncode == 0, accepted.stderr[-2000:]
    assert (target.base / "hostkey.pub").read_text().split()[1] in empty.read_text()  # recorded (hashed name)
    again = target.inv(*plan, CHOPS_DEPLOY__KNOWN_HOSTS=str(empty))
    assert again.returncode == 0, again.stderr[-2000:]


# --- the target-side entry points, run here (no ssh: what a deploy runs inside a new release) ---------------------------

def _here(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    env = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"), CHOPS_ENV_FILE=str(tmp_path / "no.env"),
                        **extra)
    return subprocess.run([*args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_the_smoke_check_of_a_release_names_what_fails(tmp_path):
    inv = str(VENV_BIN / "inv")
    before = _here(tmp_path, inv, "deploy.smoke", "--json")
    assert before.returncode == 1 and "database" in before.stderr and "inv db.setup" in before.stderr
    for task in ("db.setup", "db.migrate"):
        done = _here(tmp_path, inv, task)
        assert done.returncode == 0, done.stderr
    ok = _here(tmp_path, inv, "deploy.smoke", "--json")
    assert ok.returncode == 0, ok.stderr
    assert [c["check"] for c in json.loads(ok.stdout)] == ["imports", "configuration", "database", "migrations",
                                                           "pipelines"]
    broken = tmp_path / "pipelines"
    broken.mkdir()
    (broken / "bad.py").write_text("raise RuntimeError('this module is broken')\n")
    bad = _here(tmp_path, inv, "deploy.smoke", "--json", CHOPS_PIPELINES__DIR=str(broken))
    assert bad.returncode == 1 and "pipelines:" in bad.stderr and "broken" in bad.stderr


def test_pausing_waits_for_nothing_when_nothing_runs(tmp_path):
    inv = str(VENV_BIN / "inv")
    done = _here(tmp_path, inv, "deploy.drain", "--timeout", "5", "--keep-cron", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"unscheduled": 0, "running": [], "waited": 0.0}
    usage = _here(tmp_path, inv, "deploy.drain", "--timeout", "nonsense")
    assert usage.returncode == 2 and len(_lines(usage.stderr)) == 1 and "--timeout" in usage.stderr


def test_the_venv_helper_builds_once_and_reports_a_failing_install(tmp_path):
    from ops.deploy import helper

    path = tmp_path / "app"
    release = path / "releases" / "r1"
    release.mkdir(parents=True)
    (release / "requirements.txt").write_text("")
    built = helper.cmd_venv({"path": str(path), "venv": "k1", "release": "r1", "python": sys.executable})
    assert built["built"] and (path / "venvs" / "k1" / "bin" / "pip").exists()
    assert (path / "venvs" / "k1" / ".chops-complete").exists()
    assert helper.cmd_venv({"path": str(path), "venv": "k1", "release": "r1", "python": sys.executable}) == {
        "built": False, "seconds": 0.0}
    (release / "requirements.txt").write_text("this is not a requirement !!!\n")
    failed = helper.cmd_venv({"path": str(path), "venv": "k2", "release": "r1", "python": sys.executable})
    assert failed["failed"] and failed["exit"] != 0 and failed["tail"]
    assert not (path / "venvs" / "k2").exists()  # a half-built venv never counts


# --- migrations, faults and interrupts (issue 16) ----------------------------------------------------------------------

HALF = ("CREATE TABLE IF NOT EXISTS e2e_half (x UInt8) ENGINE = MergeTree ORDER BY x;\n\n"
        "ALTER TABLE e2e_no_such_table ADD COLUMN y UInt8;\n")
HALF_ROLLBACK = "SELECT 1;\n\nDROP TABLE IF EXISTS e2e_half SYNC;\n"


def _exec(target, *task: str) -> subprocess.CompletedProcess:
    return target.inv("deploy.exec", *target.args(), "--", *task)


def _db_rows(target) -> dict[str, str]:
    done = _exec(target, "db.status", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    return {r["id"]: r["state"] for r in json.loads(done.stdout)}


def _remote_work(target) -> list[str]:
    """The deploy user's processes that a deploy started (helpers, inv tasks, pip), not sshd's own."""
    ps = subprocess.run(["ps", "-u", USER, "-o", "pid=,args="], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if any(w in line for w in ("chops-deploy-helper", ".venv/bin/inv", "pip"))]


def _settled(target, timeout: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := _remote_work(target)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_a_dirty_database_is_refused_before_anything_is_shipped_and_exec_repairs_it(target):
    target.ensure_good()
    live = target.path / target.current()
    for name, text in (("0900_e2e_half.sql", HALF), ("0900_e2e_half.rollback.sql", HALF_ROLLBACK)):
        (live / "migrations" / name).write_text(text)
        shutil.chown(live / "migrations" / name, USER, USER)
    try:
        broken = _exec(target, "db.migrate")  # without --undo-on-failure: statement 1 ran, 2 failed
        assert broken.returncode == 1 and "exit 1" in broken.stderr
        assert _db_rows(target)["0900_e2e_half"] == "dirty"
        before, cron, releases = target.current(), target.crontab(), target.releases()
        target.commit("a change while the database is dirty", {"NOTES.txt": "dirty\n"})
        refused = target.deploy()
        assert refused.returncode == 1, refused.stderr[-3000:]
        assert "is DIRTY: migration 0900_e2e_half" in refused.stderr and "nothing was shipped" in refused.stderr
        assert "[2/7]" not in refused.stderr and refused.stderr.count("is DIRTY") == 1  # said once
        assert target.releases() == releases and target.current() == before and target.crontab() == cron
        assert not (target.path / "deploy.lock").exists() and target.audit()[-1]["result"] == "failed"
        # the hint is a command to copy: it reaches this target (every flag that is not a default)
        undo = refused.stderr.split("repair: ", 1)[1].split(";", 1)[0]
        argv = shlex.split(undo)
        assert argv[:2] == ["inv", "deploy.exec"] and "--port" in argv and "--path" in argv and "--user" in argv
        assert argv[-2:] == ["--", "db.rollback"]  # it has a rollback file: what ran is undone
        repaired = target.inv(*argv[1:])
        assert repaired.returncode == 0, repaired.stderr[-2000:]
        assert _db_rows(target).get("0900_e2e_half") in (None, "pending")
    finally:
        if _db_rows(target).get("0900_e2e_half") == "dirty":  # a failure above: leave the database clean for the rest
            _exec(target, "db.rollback")
        for name in ("0900_e2e_half.sql", "0900_e2e_half.rollback.sql"):
            (live / "migrations" / name).unlink(missing_ok=True)
    done = target.deploy()
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_migration_failing_during_a_deploy_is_undone_and_current_stays_healthy(target):
    target.ensure_good()
    before, cron = target.current(), target.crontab()
    target.commit("a migration that fails half way", {"migrations/0900_e2e_half.sql": HALF,
                                                     "migrations/0900_e2e_half.rollback.sql": HALF_ROLLBACK})
    done = target.deploy("--json")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "[4/7] migrate FAILED" in done.stderr and "migration 0900_e2e_half" in done.stderr
    assert "the database is clean as before" in done.stderr and "current was not touched" in done.stderr
    assert done.stderr.count("e2e_no_such_table") == 1  # the error, printed once
    error = json.loads(done.stdout)
    assert error["exit_code"] == 1 and "the database is clean" in error["error"]
    assert target.current() == before and target.crontab() == cron
    assert _db_rows(target).get("0900_e2e_half") in (None, "pending")
    status = target.inv("deploy.status", *target.args(), "--json")
    [report] = json.loads(status.stdout)
    assert report["health"]["healthy"], report["health"]
    # the fixed file deploys
    target.commit("the migration fixed", {"migrations/0900_e2e_half.sql": HALF.split("\n\n")[0] + "\n"})
    fixed = target.deploy()
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert "1 migration applied: 0900_e2e_half" in fixed.stderr
    back = target.inv("deploy.rollback", *target.args(), "--with-migrations")  # the database as the others expect
    assert back.returncode == 0 and "undid 1 migration: 0900_e2e_half" in back.stderr, back.stderr[-3000:]


def test_rollbacks_across_a_migration_stay_healthy_and_with_migrations_undo_it(target):
    target.ensure_good()
    good = target.current()
    target.commit("a release with a migration", {
        "migrations/0901_e2e_extra.sql": "CREATE TABLE e2e_extra (x UInt8) ENGINE = MergeTree ORDER BY x;\n",
        "migrations/0901_e2e_extra.rollback.sql": "DROP TABLE IF EXISTS e2e_extra SYNC;\n"})
    done = target.deploy()
    assert done.returncode == 0, done.stderr[-3000:]
    newer = target.current()
    back = target.inv("deploy.rollback", *target.args(), "--to", good.split("/")[-1])
    assert back.returncode == 0, back.stderr[-3000:]
    assert target.current() == good and "[3/3] verify: healthy" in back.stderr
    assert "warning: migrations:" in back.stderr and "0901_e2e_extra" in back.stderr  # ahead, said, not drift
    assert _db_rows(target)["0901_e2e_extra"] == "ahead"
    forward = target.inv("deploy.rollback", *target.args(), "--to", newer.split("/")[-1])
    assert forward.returncode == 0, forward.stderr[-3000:]
    undo = target.inv("deploy.rollback", *target.args(), "--to", good.split("/")[-1], "--with-migrations")
    assert undo.returncode == 0, undo.stderr[-3000:]
    assert "0901_e2e_extra" in undo.stderr.split("undid ")[1] and target.current() == good
    assert "0901_e2e_extra" not in _db_rows(target)
    assert "warning: migrations" not in undo.stderr


def _deploy_until(target, line: str, sig: int, **extra: str) -> tuple[subprocess.Popen, str]:
    """Start a deploy and send it ``sig`` as soon as its stderr shows ``line``; its stderr so far."""
    proc = subprocess.Popen([str(VENV_BIN / "inv"), "deploy", *target.args(), "--source", str(target.src)], cwd=ROOT,
                            env=target.env(**extra), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = []
    for text in proc.stderr:
        seen.append(text)
        if line in text and "FAILED" not in text:
            os.kill(proc.pid, sig)
            break
    rest = proc.stderr.read()
    proc.wait(timeout=120)
    return proc, "".join(seen) + rest


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_an_interrupt_at_every_step_leaves_current_and_cron_as_before(target, sig):
    """The fault-injection matrix: the deploy is stopped at the start of each step in turn (as soon as the step
    before it says it is done); each time the target keeps its current release and its crontab, the lock is free, no
    remote work is left running, and the audit says interrupted."""
    target.ensure_good()
    before, cron = target.current(), target.crontab()
    target.commit("a release that is never finished", {"NOTES.txt": "interrupted\n"})
    steps = ["[1/7]", "[2/7]", "[3/7]", "[4/7]", "[5/7]", "[6/7]"]
    for shown in steps if sig == signal.SIGTERM else steps[3:]:
        proc, said = _deploy_until(target, shown, sig)
        assert proc.returncode in (1, 130), (shown, said[-3000:])
        assert shown in said, said[-3000:]
        assert target.current() == before, (shown, said[-3000:])
        assert target.crontab() == cron, (shown, said[-3000:])
        assert not (target.path / "deploy.lock").exists(), (shown, said[-3000:])
        assert not _settled(target), (shown, _remote_work(target))
        assert target.audit()[-1]["result"] == "interrupted", (shown, target.audit()[-1])
    assert not list(target.path.glob("releases/*/var/run/cron.paused"))


def test_a_deploy_killed_during_the_cron_pause_is_healed_by_a_no_op(target):
    """kill -9 while the deploy waits for a running chops process (its cron entries removed): the entries stay
    paused, the remote drain ends with the connection, and a redeploy of the current commit installs them again.
    Ctrl-C at the same moment puts them back at once."""
    target.ensure_good()
    before, cron = target.current(), target.crontab()
    assert "# chops:" in cron
    worker, run = _busy_chops_process(target)
    try:
        target.commit("deploy during a backfill", {"NOTES.txt": "paused\n"})
        interrupted, said = _deploy_until(target, "[5/7]", signal.SIGINT, CHOPS_DEPLOY__DRAIN_TIMEOUT="60")
        assert interrupted.returncode in (1, 130), said[-3000:]
        assert target.current() == before and target.crontab() == cron, said[-3000:]
        proc = subprocess.Popen([str(VENV_BIN / "inv"), "deploy", *target.args(), "--source", str(target.src)],
                                cwd=ROOT, env=target.env(CHOPS_DEPLOY__DRAIN_TIMEOUT="60"), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while "# chops:" in target.crontab() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "# chops:" not in target.crontab(), "the drain never paused cron"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert not _settled(target), _remote_work(target)  # the remote drain ended with the connection
    finally:
        stopped = _exec(target, "proc.kill", "--all", "--grace", "2")  # the worker, by its pid file
        assert stopped.returncode == 0, stopped.stderr[-2000:]
        worker.wait(timeout=30)
    assert target.current() == before and (target.path / "shared" / "var" / "run" / "cron.paused").exists()
    target.reset()  # the current commit again: a no-op but for the paused cron
    healed = target.deploy()
    assert healed.returncode == 0, healed.stderr[-3000:]
    assert "took over a stale deploy lock" in healed.stderr and "cron entries were left paused" in healed.stderr
    assert target.crontab() == cron and target.current() == before
    audit = target.audit()
    assert any(a["result"] == "killed" for a in audit[-3:]), audit[-3:]
    index = [json.loads(line) for line in (target.base / "var" / "log" / "deploy" / "deploys.jsonl").read_text()
             .splitlines()]
    assert index[-1]["outcome"] == "reverified" and any(i["outcome"] == "killed" for i in index[-3:])
    assert Path(index[-1]["log"]).exists()


def test_ssh_config_gives_the_user_port_key_and_jump_host(target):
    """A host alias of ssh's config (deploy.ssh_config here; ~/.ssh/config by default) with User, Port, IdentityFile
    and ProxyJump: no --user or --port, no deploy.identity_file, and [defaults] user = "chops" of deploy.toml loses
    to it. What deploy.plan shows is the user ssh logs in as."""
    target.ensure_good()
    config = target.base / "ssh_config"
    config.write_text(
        f"Host chops-e2e-alias chops-e2e-jumped\n  HostName 127.0.0.1\n  Port {target.port}\n  User {USER}\n"
        f"  IdentityFile {target.key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {target.known_hosts}\n"
        f"Host chops-e2e-jumped\n  ProxyJump chops-e2e-alias\n")
    extra = {"CHOPS_DEPLOY__SSH_CONFIG": str(config), "CHOPS_DEPLOY__IDENTITY_FILE": ""}
    target.close_shared_connection()  # the jump is taken, not a shared connection of an earlier test
    for alias in ("chops-e2e-jumped", "chops-e2e-alias"):
        done = target.inv("deploy.plan", "--host", alias, "--path", str(target.path), "--source", str(target.src),
                          "--json", **extra)
        assert done.returncode == 0, (alias, done.stderr[-3000:])
        [plan] = json.loads(done.stdout)
        assert (plan["target"]["user"], plan["target"]["port"]) == (USER, target.port), plan["target"]
        assert plan["action"] == "no-op" and plan["current"] == target.current().split("/")[-1]
    # without that config the alias means nothing
    plain = target.inv("deploy.plan", "--host", "chops-e2e-alias", "--path", str(target.path), "--source",
                       str(target.src), **{**extra, "CHOPS_DEPLOY__SSH_CONFIG": "/dev/null"})
    assert plain.returncode == 2 and "cannot resolve the host name chops-e2e-alias" in plain.stderr, plain.stderr


def test_an_interrupt_in_the_first_round_trip_gives_the_lock_back(target):
    """SIGINT while the first ssh round trip (which takes the lock) has not answered yet, and a second SIGINT while
    the interrupted deploy gives the lock back: the lock is free afterwards either way. The target's Python is a
    wrapper that waits 1 s before and 2 s after each helper, so the signals land inside those round trips."""
    target.ensure_good()
    slow = target.home / "slow-python"
    slow.write_text('#!/bin/sh\nsleep 1\npython3 "$@"\ncode=$?\nsleep 2\nexit $code\n')
    slow.chmod(0o755)
    target.commit("never deployed", {"NOTES.txt": "first round trip\n"})
    lock = target.path / "deploy.lock"
    try:
        for signals in (1, 2):
            proc = subprocess.Popen([str(VENV_BIN / "inv"), "deploy", *target.args(), "--source", str(target.src)],
                                    cwd=ROOT, env=target.env(CHOPS_DEPLOY__PYTHON=str(slow)), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
            deadline = time.monotonic() + 30
            while not lock.exists() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            assert lock.exists(), proc.communicate()[1][-3000:]
            os.kill(proc.pid, signal.SIGINT)  # the helper took the lock; ssh has not returned (sleep 2)
            if signals == 2:
                time.sleep(0.6)  # the unlock's round trip started; its helper has not run yet (sleep 1)
                assert lock.exists()
                os.kill(proc.pid, signal.SIGINT)
            said = proc.communicate(timeout=60)[1]
            assert proc.returncode == 130, said[-3000:]
            assert not lock.exists(), (signals, said[-3000:])
            assert target.audit()[-1]["result"] == "interrupted", target.audit()[-1]
            assert target.revision() == target.good[:12]
    finally:
        slow.unlink()


def test_repeated_no_ops_collapse_into_one_audit_line(target):
    target.ensure_good()
    for _ in range(2):
        done = target.deploy()
        assert done.returncode == 0, done.stderr[-3000:]
    last, before = target.audit()[-1], target.audit()[-2]
    assert last["result"] == "no-op" and last["repeats"] >= 2 and last["first_at"] <= last["at"]
    assert not (before["result"] == "no-op" and before["to"] == last["to"])
    check = subprocess.run(["ssh", "-o", f"ControlPath={_control_dir()}/%C", "-O", "check", "-p", str(target.port),
                            f"{USER}@127.0.0.1"], capture_output=True, text=True, timeout=10)
    assert check.returncode != 0, "the shared ssh connection outlived the deploy"


def test_root_and_a_trailing_newline_are_refused_and_json_says_so(tmp_path):
    inv = str(VENV_BIN / "inv")
    root = _here(tmp_path, inv, "deploy.plan", "--host", "127.0.0.1", "--user", "root", "--path", "/srv/x", "--json")
    assert root.returncode == 2 and len(_lines(root.stderr)) == 1 and "as root is refused" in root.stderr
    error = json.loads(root.stdout)
    assert error["exit_code"] == 2 and "deploy.allow_root" in error["error"]
    for flag, value, said in (("--user", "chops\n", "is not a valid user name"), ("--path", "/srv/x\n", "may hold only"),
                              ("--port", "22\n", "whole number")):
        argv = {"--user": "chops", "--path": "/srv/x", "--port": "22", flag: value}
        newline = _here(tmp_path, inv, "deploy.plan", "--host", "127.0.0.1", *[a for k, v in argv.items() for a in (k, v)])
        assert newline.returncode == 2 and said in newline.stderr, (flag, newline.stderr)
    allowed = _here(tmp_path, inv, "deploy.plan", "--host", "127.0.0.1", "--port", "1", "--user", "root", "--path",
                    "/srv/x", CHOPS_DEPLOY__ALLOW_ROOT="true")
    assert allowed.returncode == 2 and "refused the connection" in allowed.stderr  # root allowed: it tried to connect
