"""Fleet rollouts against three real sshd on loopback: 127.0.0.2, .3 and .4 (all loopback on Linux), one sshd each with
a host key of its own, deployed to as user ``chopsfleet`` with a deploy path per host (``~/fleet/h2`` …).

The target ``fleet`` of the copy's config/deploy.toml has a ``scheduler`` role (127.0.0.2, runs cron) and a ``workers``
role (.3 and .4), ``parallel = 2`` after a canary of one, and hooks that write where they ran. The hosts share one
``venvs/`` directory (a symlink on .3 and .4), so the virtualenv is built once, by the canary. ``inv`` runs in the
copy, as a user runs it in a checkout: the copy's config/deploy.toml names the targets and what ships.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import VENV_BIN, clean_environ, require
from tests.e2e.test_deploy import _control_dir, _copy_project, _free_port, _git

pytestmark = pytest.mark.slow

USER = "chopsfleet"
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")

DEPLOY_TOML = '''
[defaults]
user = "chopsfleet"
environment = "prod"
cron = false

[targets.fleet]
parallel = 2
canary = 1
before = [{{ local = ["sh", "-c", "echo \\"before $CHOPS_DEPLOY_TARGET $CHOPS_DEPLOY_HOSTS\\" >> {hooks}"] }}]
after = [{{ local = ["sh", "-c", "echo \\"after $CHOPS_DEPLOY_RESULT\\" >> {hooks}"] }},
         {{ roles = ["workers"], remote = ["sh", "-c", "echo $CHOPS_DEPLOY_HOST $CHOPS_DEPLOY_REVISION $(pwd) > $CHOPS_DEPLOY_PATH/hook-ran"] }}]

[targets.fleet.roles.scheduler]
hosts = [{{ host = "127.0.0.2", path = "{home}/fleet/h2" }}]
cron = true

[targets.fleet.roles.workers]
hosts = [{{ host = "127.0.0.3", path = "{home}/fleet/h3" }}, {{ host = "127.0.0.4", path = "{home}/fleet/h4" }}]
'''


class Fleet:
    """Three sshd, the deploy user, and the copy of the project that is deployed (and runs inv)."""

    def __init__(self, base: Path, port: int, src: Path, good: str, home: Path):
        self.base, self.port, self.src, self.good, self.home = base, port, src, good, home

    def path(self, host: str) -> Path:
        return self.home / "fleet" / f"h{host.rsplit('.', 1)[1]}"

    def env(self, **extra: str) -> dict[str, str]:
        return clean_environ(**{"CHOPS_DEPLOY__KNOWN_HOSTS": str(self.base / "known_hosts"),
                                "CHOPS_DEPLOY__IDENTITY_FILE": str(self.base / "client"),
                                "CHOPS_DEPLOY__CONTROL_PERSIST": "15", "CHOPS_PATHS__VAR": str(self.base / "var"),
                                "CHOPS_ENV_FILE": str(self.base / "no.env"), **extra})

    def inv(self, *args: str, timeout: float = 900, **extra: str) -> subprocess.CompletedProcess:
        """``inv ARGS --port P`` in the copy (its config/deploy.toml, its tree shipped)."""
        return subprocess.run([str(VENV_BIN / "inv"), *args, "--port", str(self.port)], cwd=self.src,
                              env=self.env(**extra), input="", capture_output=True, text=True, timeout=timeout)

    def current(self, host: str) -> str | None:
        link = self.path(host) / "current"
        return os.readlink(link).split("/")[-1] if link.is_symlink() else None

    def revision(self, host: str) -> str | None:
        found = self.path(host) / "current" / "REVISION"
        return found.read_text().strip() if found.exists() else None

    def audit(self, host: str) -> list[dict]:
        found = self.path(host) / "audit.log"
        return [json.loads(line) for line in found.read_text().splitlines()] if found.exists() else []

    def hooks(self) -> list[str]:
        found = self.base / "hooks.log"
        return found.read_text().splitlines() if found.exists() else []

    def commit(self, message: str, files: dict[str, str]) -> str:
        for name, content in files.items():
            (self.src / name).write_text(content)
        _git(self.src, "add", "-A")
        _git(self.src, "commit", "-qm", message)
        return _git(self.src, "rev-parse", "HEAD")

    def reset(self) -> None:
        _git(self.src, "reset", "-q", "--hard", self.good)
        _git(self.src, "clean", "-qfd")

    def ensure_good(self) -> None:
        """The known-good commit current and healthy on every host, no lock left, the hook log empty."""
        self.reset()
        for host in HOSTS:
            (self.path(host) / "deploy.lock").unlink(missing_ok=True)
        if any(self.revision(h) != self.good[:12] or not (self.path(h) / "current" / "HEALTHY").exists()
               for h in HOSTS):
            done = self.inv("deploy", "--target", "fleet")
            assert done.returncode == 0, done.stderr[-4000:]
        (self.base / "hooks.log").unlink(missing_ok=True)


def _sshd(base: Path, keys: Path, host: str, port: int) -> subprocess.Popen:
    """``sshd -D`` listening on ``host`` only, with a host key of its own."""
    name = host.replace(".", "_")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / f"hostkey_{name}")], check=True)
    config = base / f"sshd_{name}.conf"
    config.write_text(
        f"Port {port}\nListenAddress {host}\nHostKey {base / f'hostkey_{name}'}\nPidFile {base / f'sshd_{name}.pid'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nMaxSessions 50\nMaxStartups 50\n")
    key = (base / f"hostkey_{name}.pub").read_text().split()
    with open(base / "known_hosts", "a") as known:
        known.write(f"[{host}]:{port} {key[0]} {key[1]}\n")
    log = open(base / f"sshd_{name}.log", "w")
    sshd = subprocess.Popen([shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sshd.poll() is None:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return sshd
        except OSError:
            time.sleep(0.05)
    sshd.kill()
    pytest.fail(f"sshd on {host} did not start: {(base / f'sshd_{name}.log').read_text()[-2000:]}")


def _deploy_user() -> Path:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", USER], check=True, capture_output=True)
    subprocess.run(["usermod", "-p", "*", USER], check=True, capture_output=True)  # useradd leaves it locked
    home = Path(pwd.getpwnam(USER).pw_dir)
    for conf in (Path.home() / ".config" / "pip" / "pip.conf", Path.home() / ".pip" / "pip.conf"):
        if conf.exists():  # pip installs the way this machine is set up to
            dest = home / ".config" / "pip" / "pip.conf"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(conf, dest)
            for p in (dest, dest.parent, dest.parent.parent):
                shutil.chown(p, USER, USER)
            break
    return home


def _layout(home: Path) -> None:
    """Empty deploy paths; .3 and .4 share the venvs/ of .2 (the virtualenv is built once, by the canary)."""
    fleet = home / "fleet"
    shutil.rmtree(fleet, ignore_errors=True)
    (fleet / "venvs").mkdir(parents=True)
    for host in HOSTS:
        path = fleet / f"h{host.rsplit('.', 1)[1]}"
        path.mkdir()
        os.symlink(fleet / "venvs", path / "venvs")
    for base, dirs, files in os.walk(fleet):
        for name in [base, *(os.path.join(base, d) for d in dirs)]:
            os.lchown(name, pwd.getpwnam(USER).pw_uid, pwd.getpwnam(USER).pw_gid)
    subprocess.run(["crontab", "-r", "-u", USER], capture_output=True)


@pytest.fixture(scope="module")
def loopback_fleet(tmp_path_factory):
    require(os.geteuid() == 0, "fleet tests create a user and start sshd: they run as root")
    require(bool(shutil.which("sshd") or os.path.exists("/usr/sbin/sshd")) and bool(shutil.which("rsync")),
            "sshd and rsync are not installed (apt-get install openssh-server rsync)")
    require(bool(shutil.which("crontab")) and bool(shutil.which("git")), "crontab and git are needed")
    try:
        socket.create_connection(("127.0.0.2", 9), timeout=0.2).close()
    except ConnectionRefusedError:
        pass  # 127.0.0.2 is loopback here: refused, not unreachable
    except OSError as exc:
        require(False, f"127.0.0.2 is not a loopback address here ({exc})")
    base = tmp_path_factory.mktemp("fleet")
    home = _deploy_user()
    os.makedirs("/run/sshd", exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "client")], check=True)
    keys = Path(tempfile.mkdtemp(prefix="chops-e2e-fleet-keys-"))
    keys.chmod(0o755)
    shutil.copy(base / "client.pub", keys / "authorized_keys")
    (keys / "authorized_keys").chmod(0o644)
    port = _free_port()
    daemons = [_sshd(base, keys, host, port) for host in HOSTS]
    src = base / "src"
    src.mkdir()
    _copy_project(src)
    (src / "config" / "deploy.toml").write_text(DEPLOY_TOML.format(home=home, hooks=base / "hooks.log"))
    _git(src, "add", "-A")
    _git(src, "commit", "-qm", "a fleet to deploy to")
    fleet = Fleet(base, port, src, _git(src, "rev-parse", "HEAD"), home)
    try:
        yield fleet
    finally:
        for host in HOSTS:
            subprocess.run(["ssh", "-o", f"ControlPath={_control_dir()}/%C", "-O", "exit", "-p", str(port),
                            f"{USER}@{host}"], capture_output=True, timeout=10)
        for sshd in daemons:
            sshd.terminate()
            sshd.wait(timeout=10)
        shutil.rmtree(keys, ignore_errors=True)


@pytest.fixture
def fleet(loopback_fleet):
    """The deploy paths are one set per machine: tests run one at a time across test processes; the first of a run
    starts from empty paths."""
    from ops.core.locks import FileLock

    with FileLock(Path(tempfile.gettempdir()) / "chops-e2e-fleet.lock", "the fleet e2e hosts", timeout=3600):
        marker = loopback_fleet.home / ".chops-e2e-fleet-run"
        run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getppid())
        if not marker.exists() or marker.read_text() != run:
            _layout(loopback_fleet.home)
            marker.write_text(run)
        try:
            yield loopback_fleet
        finally:
            loopback_fleet.reset()


# --- the scenarios ----------------------------------------------------------------------------------------------------

def test_a_fleet_rolls_out_canary_first_then_two_at_once_with_its_hooks(fleet):
    fleet.ensure_good()
    before = {h: fleet.current(h) for h in HOSTS}
    change = fleet.commit("a code change", {"README.md": (fleet.src / "README.md").read_text() + "\nfleet\n"})
    done = fleet.inv("deploy", "--target", "fleet")
    assert done.returncode == 0, done.stderr[-4000:]
    err = done.stderr
    assert "batch 1 (canary): 127.0.0.2" in err and "batch 2: 127.0.0.3, 127.0.0.4, 2 at once" in err
    for host in HOSTS:
        assert fleet.revision(host) == change[:12] and fleet.current(host) != before[host]
        last = fleet.audit(host)[-1]
        assert (last["action"], last["result"], last["host"]) == ("deploy", "ok", host)
    # the canary finished before batch 2 started; the two workers ran at the same time
    lines = err.splitlines()
    first = lambda text: next(i for i, line in enumerate(lines) if text in line)  # noqa: E731
    assert first("127.0.0.2: [7/7] verify") < first("127.0.0.3: [1/7]")
    assert first("127.0.0.4: [1/7]") < first("127.0.0.3: [7/7] verify")
    assert first("127.0.0.3: [1/7]") < first("127.0.0.4: [7/7] verify")
    assert fleet.hooks() == ["before fleet 127.0.0.2,127.0.0.3,127.0.0.4", "after ok"]
    for host in HOSTS[1:]:  # the remote after hook ran on the workers only, in <path>/current
        ran = (fleet.path(host) / "hook-ran").read_text().split()
        assert ran[:2] == [host, change[:12]] and os.path.realpath(ran[2]) == os.path.realpath(fleet.path(host) /
                                                                                                "current")
    assert not (fleet.path(HOSTS[0]) / "hook-ran").exists()
    assert "hook before: local: sh -c" in err and "127.0.0.3: hook after: remote: sh -c" in err
    table = fleet.inv("deploy.status", "--target", "fleet", "--wide")  # one line per host, whatever the widths
    assert table.returncode == 0, table.stderr
    rows = [line.strip() for line in table.stdout.splitlines() if line.strip().startswith("127.0.0.")]
    assert [r.split()[0] for r in rows] == list(HOSTS), table.stdout
    assert all(change[:12] in r and "healthy" in r for r in rows), table.stdout
    status = fleet.inv("deploy.status", "--target", "fleet", "--json")
    assert [r["target"]["host"] for r in json.loads(status.stdout)] == list(HOSTS)
    back = fleet.inv("deploy.rollback", "--target", "fleet", "--parallel", "3", "--json")
    assert back.returncode == 0, back.stderr[-4000:]
    assert [(o["target"]["host"], o["release"]) for o in json.loads(back.stdout)] == [(h, before[h]) for h in HOSTS]
    assert all(fleet.current(h) == before[h] for h in HOSTS)


def test_an_unhealthy_host_stops_the_rollout_and_the_switched_hosts_roll_back(fleet):
    fleet.ensure_good()
    good = {h: fleet.current(h) for h in HOSTS}
    env = fleet.path("127.0.0.4") / "shared" / ".env"
    kept = env.read_text()
    env.write_text(kept + "CHOPS_PROC__MIN_FREE_DISK_PERCENT=100\n")  # every release on .4 fails its health check
    try:
        fleet.commit("a change", {"README.md": "changed\n"})
        done = fleet.inv("deploy", "--target", "fleet", "--json")
    finally:
        env.write_text(kept)
    assert done.returncode == 1, done.stderr[-4000:]
    assert "127.0.0.4" in done.stderr and "failed its health check" in done.stderr
    assert "rolling back 2 hosts this rollout switched" in done.stderr
    assert "rolled back: 127.0.0.2, 127.0.0.3" in done.stderr
    for host in HOSTS:  # the whole fleet is on the release it had: no mixed versions
        assert fleet.current(host) == good[host] and fleet.revision(host) == fleet.good[:12]
    assert [a["action"] for a in fleet.audit("127.0.0.2")[-2:]] == ["deploy", "rollback"]
    assert fleet.audit("127.0.0.4")[-1]["result"] == "rolled back"  # its own Deployer switched it back
    report = json.loads(done.stdout)  # the failure as JSON, with every host's result
    hosts = (report.get("details") or report)["hosts"]
    assert report["error"] and {h["host"]: h["result"] for h in hosts} == {
        "127.0.0.2": "rolled back", "127.0.0.3": "rolled back", "127.0.0.4": "failed"}
    assert fleet.hooks()[-1] == "after failed"


def test_no_rollback_leaves_the_switched_hosts_on_the_new_release(fleet):
    """--no-rollback overrides rollback_on_failure = true (the default) for one deploy; each host's log and index line
    are its own although the Deployers ran at once in one process."""
    fleet.ensure_good()
    good = {h: fleet.current(h) for h in HOSTS}
    env = fleet.path("127.0.0.4") / "shared" / ".env"
    kept = env.read_text()
    env.write_text(kept + "CHOPS_PROC__MIN_FREE_DISK_PERCENT=100\n")  # every release on .4 fails its health check
    index = fleet.base / "var" / "log" / "deploy" / "deploys.jsonl"
    seen = len(index.read_text().splitlines()) if index.exists() else 0
    try:
        change = fleet.commit("a change left in place", {"README.md": "left\n"})
        done = fleet.inv("deploy", "--target", "fleet", "--no-rollback", "--json")
    finally:
        env.write_text(kept)
    assert done.returncode == 1, done.stderr[-4000:]
    assert "this rollout switched" not in done.stderr  # .4 alone switched back, by its own Deployer
    report = json.loads(done.stdout)
    hosts = {h["host"]: h for h in (report.get("details") or report)["hosts"]}
    assert {h: r["result"] for h, r in hosts.items()} == {
        "127.0.0.2": "left on the new release", "127.0.0.3": "left on the new release", "127.0.0.4": "failed"}
    assert "--no-rollback" in hosts["127.0.0.2"]["note"]
    for host in HOSTS[:2]:
        assert fleet.revision(host) == change[:12] and fleet.current(host) != good[host]
    assert fleet.current("127.0.0.4") == good["127.0.0.4"]  # its own Deployer switched it back
    lines = [json.loads(line) for line in index.read_text().splitlines()[seen:]]
    assert sorted(line["host"] for line in lines) == list(HOSTS)
    assert len({line["log"] for line in lines}) == 3 and all(Path(line["log"]).exists() for line in lines)
    for line in lines:
        assert f"{line['host']}" in Path(line["log"]).read_text()


def test_limit_deploys_only_the_hosts_it_names(fleet):
    fleet.ensure_good()
    change = fleet.commit("a change for one host", {"README.md": "one host\n"})
    dry = fleet.inv("deploy", "--target", "fleet", "--limit", "workers", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "batch 1 (canary): 127.0.0.3" in dry.stdout and "batch 2: 127.0.0.4" in dry.stdout
    assert "127.0.0.2" not in dry.stdout and fleet.revision("127.0.0.3") == fleet.good[:12]
    plans = fleet.inv("deploy.plan", "--target", "fleet", "--json")
    assert plans.returncode == 0, plans.stderr
    assert [(p["target"]["host"], p["batch"], p["canary"], p["action"]) for p in json.loads(plans.stdout)] == [
        ("127.0.0.2", 1, True, "deploy"), ("127.0.0.3", 2, False, "deploy"), ("127.0.0.4", 2, False, "deploy")]
    done = fleet.inv("deploy", "--target", "fleet", "--limit", "127.0.0.3")
    assert done.returncode == 0, done.stderr[-4000:]
    assert fleet.revision("127.0.0.3") == change[:12]
    assert fleet.revision("127.0.0.2") == fleet.revision("127.0.0.4") == fleet.good[:12]
    refused = fleet.inv("deploy", "--target", "fleet", "--limit", "127.0.0.9")
    assert refused.returncode == 2 and "--limit 127.0.0.9: not a host or a role" in refused.stderr


def test_a_failing_before_hook_changes_nothing(fleet):
    fleet.ensure_good()
    text = (fleet.src / "config" / "deploy.toml").read_text().replace(
        'before = [', 'before = [{ local = ["sh", "-c", "echo the gate is closed; exit 4"] }, ')
    fleet.commit("a closed gate", {"config/deploy.toml": text})
    before = {h: (fleet.current(h), len(fleet.audit(h))) for h in HOSTS}
    done = fleet.inv("deploy", "--target", "fleet")
    assert done.returncode == 1
    assert "failed on here (exit 4): the gate is closed; nothing was deployed" in done.stderr
    assert "  | the gate is closed" in done.stderr and "[1/7]" not in done.stderr
    assert {h: (fleet.current(h), len(fleet.audit(h))) for h in HOSTS} == before


def test_wait_waits_for_a_held_lock(fleet):
    fleet.ensure_good()
    lock = fleet.path("127.0.0.3") / "deploy.lock"
    holder = {"id": "w1", "user": "ops", "host": "build-7", "pid": 4242, "since": "2026-01-01 00:00:00 UTC",
              "command": "inv deploy --target fleet", "release": "R"}
    lock.write_text(json.dumps(holder))
    shutil.chown(lock, USER, USER)
    refused = fleet.inv("deploy", "--target", "fleet", "--limit", "127.0.0.3", "--force")
    assert refused.returncode == 1 and "being deployed by ops@build-7 pid 4242" in refused.stderr
    started = time.monotonic()
    waiting = subprocess.Popen([str(VENV_BIN / "inv"), "deploy", "--target", "fleet", "--limit", "127.0.0.3",
                                "--force", "--wait", "120", "--port", str(fleet.port)], cwd=fleet.src, env=fleet.env(),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)
        assert waiting.poll() is None
        lock.unlink()  # the other deploy ends
        out, err = waiting.communicate(timeout=600)
    finally:
        if waiting.poll() is None:
            waiting.send_signal(signal.SIGINT)
            waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err[-4000:]
    assert "s for the deploy lock (--wait): held by ops@build-7 pid 4242" in err and "waiting up to 1" in err
    assert time.monotonic() - started > 4
    assert fleet.audit("127.0.0.3")[-1]["result"] == "ok"


def test_sigterm_during_a_batch_rolls_back_the_canary_too(fleet):
    """A deploy killed (SIGTERM) while batch 2 deploys: the workers stop at their next step and clean up, and the
    canary, already switched and healthy, is rolled back: the fleet is on the release it had."""
    fleet.ensure_good()
    good = {h: fleet.current(h) for h in HOSTS}
    fleet.commit("a change to interrupt", {"README.md": "interrupted\n"})
    deploy = subprocess.Popen([str(VENV_BIN / "inv"), "deploy", "--target", "fleet", "--port", str(fleet.port)],
                              cwd=fleet.src, env=fleet.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in deploy.stderr:
            seen.append(line)
            if "127.0.0.3: [2/7] sync" in line:  # batch 2 is under way
                deploy.send_signal(signal.SIGTERM)
                break
        seen.append(deploy.communicate(timeout=600)[1] or "")
    finally:
        if deploy.poll() is None:
            deploy.kill()
            deploy.wait()
    err = "".join(seen)
    assert deploy.returncode == 130, err[-4000:]
    assert "interrupted: stopping 2 running hosts at their next step" in err
    assert "rolling back 1 host this rollout switched" in err and "rolled back: 127.0.0.2" in err
    for host in HOSTS:
        assert fleet.current(host) == good[host], err[-4000:]
        lock = fleet.path(host) / "deploy.lock"
        # a lock left by a host interrupted inside its first round trip names this deploy, which is gone: the next
        # deploy takes it over as stale
        assert not lock.exists() or json.loads(lock.read_text())["pid"] == deploy.pid, err[-4000:]
    assert fleet.audit("127.0.0.3")[-1]["result"] == "interrupted"
    assert fleet.hooks()[-1] == "after interrupted"
