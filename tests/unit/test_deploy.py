"""ops.deploy without a network: validation, targets, exact ssh/rsync command lines, plans, lock staleness, ssh
errors, and the target-side helper (ops.deploy.helper) run on a temporary directory."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ops import ROOT
from ops.pipelines import cron
from ops.core.errors import BadInput, ConfigError, WorkFailed
from ops.core.process import create_time, user_name
from ops.deploy import helper as remote
from ops.deploy.facts import Facts, check_target
from ops.deploy.lock import describe_holder, lock_state
from ops.deploy.plan import (choose_rollback, cron_plan, env_report, example_keys_local, file_changes, make_plan,
                             pending_migrations)
from ops.deploy.report import Outcome
from ops.deploy.source import Source, read_source, release_name, venv_key
from ops.deploy.targets import (Target, project_id, read_targets, resolve_targets, validate_host, validate_path,
                                validate_port, validate_user)
from ops.deploy.transport import (Remote, SshOptions, helper_program, in_dir, json_answer, rsync_argv, ssh_base,
                                  ssh_failure)
from tests.conftest import inv

T = Target(host="etl1.example.internal", user="chops", port=2222, path="/srv/chops", environment="prod")
OPTIONS = SshOptions(connect_timeout=7, known_hosts="/k/known_hosts", identity_file="/k/id", control_dir="/c",
                     control_persist=60)


# --- validation ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["etl1", "etl-1.example.com", "127.0.0.1", "::1", "a" * 63 + ".io", "host."],
                         ids=["short", "dotted", "ipv4", "ipv6", "long-label", "trailing-dot"])
def test_valid_hosts(host):
    assert validate_host(host) == host


@pytest.mark.parametrize("host", ["", "a b", "a;rm -rf /", "$(id)", "`id`", "-oProxyCommand=x", "host|x", "a/b",
                                  "user@host", "a" * 64, "h'q", "h\nx", "etl1\n"],
                         ids=["empty", "space", "semicolon", "subshell", "backticks", "option", "pipe", "slash",
                              "at", "label-too-long", "quote", "newline", "trailing-newline"])
def test_hosts_with_metacharacters_are_refused(host):
    with pytest.raises(BadInput):
        validate_host(host)


@pytest.mark.parametrize("user", ["", "a b", "Root", "1abc", "a;b", "-l", "a" * 33, "x$", "chops\n"])
def test_bad_users_are_refused(user):
    with pytest.raises(BadInput):
        validate_user(user)


def test_good_users_pass():
    assert validate_user("chops") == "chops"
    assert validate_user("_deploy-1") == "_deploy-1"


@pytest.mark.parametrize("path,message", [("srv/chops", "absolute"), ("/", "'/' is refused"), ("//", "'/' is refused"),
                                          ("/srv/../etc", "'..'"), ("/srv/./x", "'.'"), ("/srv/a b", "only letters"),
                                          ("/srv/$(id)", "only letters"), ("", "absolute"),
                                          ("/srv/chops\n", "only letters")])
def test_bad_paths_are_refused(path, message):
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        validate_path(path)


def test_paths_lose_a_trailing_slash():
    assert validate_path("/srv/chops/") == "/srv/chops"


@pytest.mark.parametrize("port", ["0", "65536", "x", "-1", "", "22\n", " 22"])
def test_bad_ports_are_refused(port):
    with pytest.raises(BadInput):
        validate_port(port)


# --- targets ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def targets_project(project):
    (project / "config" / "deploy.toml").write_text(
        '[defaults]\nuser = "chops"\npath = "/srv/chops"\nenvironment = "prod"\n\n'
        '[targets.prod]\nhosts = ["a.example", "b.example"]\n\n'
        '[targets.staging]\nhost = "s.example"\nport = 2222\nenvironment = "dev"\ncron = false\n')
    return project


def test_named_targets_expand_to_their_hosts_in_order(targets_project):
    found = resolve_targets(target_names=["prod", "staging"], root=targets_project)
    assert [(t.host, t.port, t.environment, t.cron, t.name) for t in found] == [
        ("a.example", 22, "prod", True, "prod"), ("b.example", 22, "prod", True, "prod"),
        ("s.example", 2222, "dev", False, "staging")]


def test_a_host_uses_the_defaults_and_flags_win(targets_project):
    [t] = resolve_targets(hosts="x.example", user="ops", port="2200", root=targets_project)
    assert (t.host, t.user, t.port, t.path, t.environment, t.name) == ("x.example", "ops", 2200, "/srv/chops", "prod", "")


def test_comma_lists_and_repeats_are_several_hosts(targets_project):
    found = resolve_targets(hosts=["a.example,b.example", "a.example"], root=targets_project)
    assert [t.host for t in found] == ["a.example", "b.example"]


def test_unknown_target_is_bad_input_with_a_suggestion(targets_project):
    with pytest.raises(BadInput, match="unknown deploy target 'prd'") as err:
        resolve_targets(target_names="prd", root=targets_project)
    assert "prod" in err.value.line()


def test_no_host_and_no_target_is_bad_input(targets_project):
    with pytest.raises(BadInput, match="name a host or a target"):
        resolve_targets(root=targets_project)


def test_unknown_environment_is_bad_input(targets_project):
    with pytest.raises(BadInput, match="unknown environment 'nope'"):
        resolve_targets(hosts="x", environment="nope", root=targets_project)


def test_a_typo_in_deploy_toml_names_the_key(targets_project):
    (targets_project / "config" / "deploy.toml").write_text('[targets.x]\nhost = "a"\nprot = 22\n')
    with pytest.raises(ConfigError, match="unknown key 'prot' in x"):
        resolve_targets(target_names="x", root=targets_project)


def test_the_shipped_deploy_toml_is_valid():
    from ops import ROOT

    config = read_targets(ROOT)
    assert config["targets"], "config/deploy.toml should show example targets"
    for name in config["targets"]:
        assert resolve_targets(target_names=name, root=ROOT)


# --- exact command lines ---------------------------------------------------------------------------------------------------

def test_ssh_command_line():
    assert Remote(T, OPTIONS).argv("true") == [
        "ssh", "-o", "BatchMode=yes", "-o", "ControlMaster=auto", "-o", "ControlPath=/c/%C",
        "-o", "ControlPersist=60", "-o", "ConnectTimeout=7", "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=4", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=/k/known_hosts",
        "-i", "/k/id", "-o", "IdentitiesOnly=yes", "-p", "2222", "chops@etl1.example.internal", "--", "true"]


def test_accepting_a_new_host_key_is_explicit():
    argv = ssh_base(T, dataclasses.replace(OPTIONS, accept_new_host_key=True, known_hosts="", identity_file=""))
    assert "StrictHostKeyChecking=accept-new" in argv
    assert not any(a.startswith("UserKnownHostsFile") for a in argv) and "-i" not in argv


def test_rsync_command_line_links_unchanged_files_from_current():
    argv = rsync_argv(T, OPTIONS, "/srv/chops/releases/R", "/srv/chops/releases/C/")
    assert argv[:11] == ["rsync", "--recursive", "--links", "--perms", "--times", "--chmod=go-w", "--from0",
                         "--files-from=-", "--itemize-changes", "--timeout=120", "-e"]
    assert shlex.split(argv[11]) == ssh_base(T, OPTIONS)
    assert argv[12:] == ["--link-dest=/srv/chops/releases/C/", "./", "chops@etl1.example.internal:/srv/chops/releases/R/"]


def test_rsync_to_an_ipv6_host_brackets_it():
    t = dataclasses.replace(T, host="::1")
    assert rsync_argv(t, OPTIONS, "/p/releases/R", None)[-1] == "chops@[::1]:/p/releases/R/"


def test_every_remote_argument_is_quoted():
    hostile = "x'; rm -rf / #"
    line = in_dir("/srv/chops/current", ["./.venv/bin/inv", "pipeline.run", hostile], {"CHOPS_ENV": "a b"})
    assert line == ("cd /srv/chops/current && env 'CHOPS_ENV=a b' ./.venv/bin/inv pipeline.run "
                    + shlex.quote(hostile))
    assert shlex.split(line.split(" && ", 1)[1]) == ["env", "CHOPS_ENV=a b", "./.venv/bin/inv", "pipeline.run", hostile]


def test_the_helper_travels_with_its_arguments_on_stdin(tmp_path):
    program = helper_program("facts", {"path": str(tmp_path / "none"), "tag": None}).encode()
    assert program.decode().rstrip().endswith(
        "sys.exit(main(['facts', '{\"path\": \"%s\", \"tag\": null}'], watch=True))" % (tmp_path / "none"))
    done = _boot(program, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["exists"] is False


def _boot(program: bytes, cwd: Path) -> subprocess.CompletedProcess:
    """The helper started as a deploy starts it on a target: its stdin held open until it ends."""
    read, write = os.pipe()
    os.write(write, program)
    try:
        return subprocess.run([sys.executable, "-c", remote.BOOT, str(len(program))], stdin=read, cwd=cwd,
                              capture_output=True, text=True, timeout=60, start_new_session=True)
    finally:
        os.close(read)
        os.close(write)


def test_remote_work_ends_when_its_stdin_closes(tmp_path):
    """What a deploy killed with kill -9 leaves on the target: its connection closes, so the helper's stdin does, and
    the work it started (here a sleep standing for pip or an inv task) is ended with its process group."""
    pid_file = tmp_path / "child.pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    program = helper_program("exec", {"cwd": str(tmp_path), "argv": [sys.executable, "-c", script], "env": {}}).encode()
    read, write = os.pipe()
    os.write(write, program)
    helper = subprocess.Popen([sys.executable, "-c", remote.BOOT, str(len(program))], stdin=read,
                              start_new_session=True)
    os.close(read)
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and helper.poll() is None
            time.sleep(0.05)
        child = int(pid_file.read_text())
        assert helper.poll() is None
        os.close(write)  # the connection is gone
        assert helper.wait(timeout=30) != 0
        deadline = time.monotonic() + 15
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{child}").exists()
    finally:
        if helper.poll() is None:
            os.killpg(helper.pid, signal.SIGKILL)


def test_an_exec_passes_output_and_exit_code_through(tmp_path):
    program = helper_program("exec", {"cwd": str(tmp_path), "argv": ["sh", "-c", "echo out; echo err >&2; exit 3"],
                                      "env": {"X": "1"}}).encode()
    done = _boot(program, tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


# --- names, keys, ids --------------------------------------------------------------------------------------------------------

def source(dirty=(), requirements=b"invoke==3\n", commit="a" * 40) -> Source:
    return Source(root=Path("/nowhere"), commit=commit, revision=commit[:12] + ("-dirty-1" if dirty else ""),
                  dirty=tuple(dirty), files=("a.py",), requirements=requirements)


def test_release_names_are_utc_time_and_sha_and_unique():
    now = datetime(2026, 11, 26, 21, 30, 5, tzinfo=timezone.utc)
    assert release_name(source(), [], now) == "20261126T213005Z-aaaaaaaaaaaa"
    assert release_name(source(), ["20261126T213005Z-aaaaaaaaaaaa"], now) == "20261126T213005Z-aaaaaaaaaaaa-2"
    assert release_name(source(dirty=["x"]), [], now) == "20261126T213005Z-aaaaaaaaaaaa-dirty"


def test_the_venv_key_follows_python_and_requirements_only():
    py = {"implementation": "cpython", "version": "3.11.2", "machine": "x86_64", "executable": "/usr/bin/python3.11"}
    key = venv_key(py, b"invoke==3\n")
    assert key == venv_key(dict(py), b"invoke==3\n") and len(key) == 16
    assert key != venv_key(py, b"invoke==4\n")
    assert key != venv_key({**py, "version": "3.12.1"}, b"invoke==3\n")


def test_the_deploy_project_id_is_the_one_cron_computes_in_a_release(tmp_path):
    from ops.core.settings import load_settings

    path = tmp_path / "app"
    release = path / "releases" / "20261126T000000Z-abc1234"
    release.mkdir(parents=True)
    (path / "current").symlink_to("releases/20261126T000000Z-abc1234")
    base = load_settings(environ={"CHOPS_ENV_FILE": str(tmp_path / "none.env")})
    there = dataclasses.replace(base, root=release.resolve(), env_file=release.resolve() / ".env")
    assert cron.deployed_root(there.root) == path.resolve() / "current"
    assert cron.project_id(there) == project_id(str(path.resolve()))


def test_release_layout_detection(tmp_path):
    release = tmp_path / "releases" / "r1"
    release.mkdir(parents=True)
    assert cron.deployed_root(release) is None  # no current link: a checkout that happens to sit in releases/
    (tmp_path / "current").mkdir()
    assert cron.deployed_root(release) is None  # current must be a symlink
    (tmp_path / "current").rmdir()
    (tmp_path / "current").symlink_to("releases/r1")
    assert cron.deployed_root(release) == tmp_path / "current"
    assert cron.deployed_root(tmp_path / "elsewhere" / "r1") is None


def test_cron_entries_of_a_release_point_at_current(tmp_path):
    from ops.core.settings import load_settings

    release = tmp_path / "releases" / "r2"
    release.mkdir(parents=True)
    (tmp_path / "current").symlink_to("releases/r2")
    base = load_settings(environ={"CHOPS_ENV_FILE": str(tmp_path / "none.env")})
    there = dataclasses.replace(base, root=release, env_file=release / ".env")
    fake = type("P", (), {"name": "p", "schedule": "0 2 * * *", "cron_date": "yesterday"})()
    [entry] = cron.render(there, [fake], bin_dir=tmp_path / "current" / ".venv" / "bin")
    current = str(tmp_path / "current")
    assert entry.command.startswith(f"cd {current} && mkdir -p {current}/var/log/cron && ")
    assert f">> {current}/var/log/cron/p.log" in entry.command and "releases" not in entry.command
    other = dataclasses.replace(there, root=tmp_path / "releases" / "r1")
    (tmp_path / "releases" / "r1").mkdir()
    assert cron.project_id(other) == cron.project_id(there)  # one id across releases


# --- the lock --------------------------------------------------------------------------------------------------------------

HERE = socket.gethostname()


def holder(**kw):
    return {"id": "h1", "user": "u", "host": HERE, "pid": 4242, "create_time": 1.0, "since": "2026-11-26 21:00:00 UTC",
            "command": "inv deploy", "release": "R", "age": 5.0, **kw}


def test_lock_states():
    assert lock_state(None, 3600)[0] == "free"
    assert lock_state(holder(), 3600, HERE, lambda pid, ct: True) == ("held", describe_holder(holder()))
    state, reason = lock_state(holder(), 3600, HERE, lambda pid, ct: False)
    assert state == "stale" and "pid 4242" in reason and "gone" in reason
    assert lock_state(holder(host="elsewhere"), 3600, HERE, lambda pid, ct: False)[0] == "held"
    state, reason = lock_state(holder(host="elsewhere", age=7300.0), 3600, HERE, lambda pid, ct: True)
    assert state == "stale" and "old" in reason


def test_a_holder_pid_reused_by_another_process_is_gone():
    mine = holder(pid=os.getpid(), create_time=12.0)  # our pid, but another start time
    assert lock_state(mine, 3600, HERE)[0] == "stale"
    assert lock_state(holder(pid=os.getpid(), create_time=create_time(os.getpid())), 3600, HERE)[0] == "held"


def test_the_holder_is_named_in_full():
    text = describe_holder(holder())
    assert text == "u@" + HERE + " pid 4242 (deploy of R) since 2026-11-26 21:00:00 UTC: inv deploy"


# --- plans -----------------------------------------------------------------------------------------------------------------

PY = {"implementation": "cpython", "version": "3.11.2", "machine": "x86_64", "executable": "/usr/bin/python3"}


def facts(current=None, revision=None, healthy=True, lock=None, venvs=(), env_keys=None):
    releases = []
    if current:
        releases.append({"name": current, "revision": revision, "complete": True, "bad": None,
                         "healthy": "yes" if healthy else None, "venv": "v1"})
    return Facts({"current": current, "releases": releases, "python": PY, "lock": lock,
                  "venvs": [{"key": k, "complete": True} for k in venvs], "env": {"keys": env_keys}})


def test_the_same_healthy_revision_is_a_no_op():
    p = make_plan(T, source(), facts("R1", "aaaaaaaaaaaa"), 3600)
    assert (p.action, p.release, p.current) == ("no-op", None, "R1")


def test_the_same_revision_not_known_healthy_is_verified_again():
    assert make_plan(T, source(), facts("R1", "aaaaaaaaaaaa", healthy=False), 3600).action == "reverify"


def test_a_stale_lock_turns_a_no_op_into_a_reverification():
    dead = holder(pid=2 ** 22 + 17)
    plan = make_plan(T, source(), facts("R1", "aaaaaaaaaaaa", lock=dead), 3600, alive=lambda p, c: False)
    assert plan.action == "reverify" and plan.lock["state"] == "stale"


def test_a_new_commit_is_a_new_release_and_force_redeploys():
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    p = make_plan(T, source(commit="b" * 40), facts("R1", "aaaaaaaaaaaa"), 3600, now=now)
    assert (p.action, p.release) == ("deploy", "20260102T030405Z-bbbbbbbbbbbb")
    assert make_plan(T, source(), facts("R1", "aaaaaaaaaaaa"), 3600, force=True).action == "deploy"


def test_dependencies_change_only_with_requirements():
    key = venv_key(PY, b"invoke==3\n")
    f = facts("R1", "x", venvs=[key])
    f.raw["releases"][0]["venv"] = key
    same = make_plan(T, source(commit="c" * 40), f, 3600)
    assert not same.dependencies_change and same.venv_ready
    other = make_plan(T, source(commit="c" * 40, requirements=b"invoke==4\n"), f, 3600)
    assert other.dependencies_change and not other.venv_ready


def test_env_report_names_keys_never_values():
    report = env_report(["CLICKHOUSE_URL", "MY_SECRET"], {"CLICKHOUSE_URL": False, "API_TOKEN": True,
                                                          "CHOPS_NEW": False},
                        {"CLICKHOUSE_URL": False, "API_TOKEN": True})
    assert report == {"exists": True, "set": 2, "missing": ["API_TOKEN"], "added": ["CHOPS_NEW"], "extra": ["MY_SECRET"]}
    assert env_report(None, {"A": True}, None) == {"exists": False, "set": 0, "missing": ["A"], "added": [],
                                                   "extra": []}


def test_example_keys_are_read_from_comments_too(tmp_path):
    (tmp_path / "x").write_text("# CHOPS_ENV=dev\nREQUIRED_ONE=\n#   CLICKHOUSE_URL=https://a\n# prose = no\n")
    assert remote.example_keys(str(tmp_path / "x")) == {"CHOPS_ENV": False, "REQUIRED_ONE": True,
                                                         "CLICKHOUSE_URL": False}


def test_the_project_env_example_requires_nothing():
    from ops import ROOT

    keys = example_keys_local(ROOT)
    assert "CLICKHOUSE_URL" in keys and "CHOPS_DEPLOY__KEEP_RELEASES" in keys and not any(keys.values())


def test_file_changes_and_pending_migrations():
    assert file_changes({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "9", "d": "4"}) == {
        "added": ["c"], "changed": ["b"], "removed": ["d"]}
    rows = [{"id": "0001_a", "state": "applied"}, {"id": "0002_b", "state": "dirty"}]
    assert pending_migrations(["0001_a", "0002_b", "0003_c"], rows) == {"pending": ["0002_b", "0003_c"],
                                                                       "dirty": ["0002_b"]}


def rel(name, complete=True, bad=None, healthy=None):
    return {"name": name, "complete": complete, "bad": bad, "healthy": healthy, "venv": "v", "revision": name}


def test_pruning_keeps_current_the_last_healthy_and_the_newest():
    found = [rel("r1", healthy="yes"), rel("r2", healthy="yes"), rel("r3", bad="x"), rel("r4", complete=False),
             rel("r5", bad="y"), rel("r6"), rel("r7", bad="z")]
    # keep 2: r6, r7 are newest; r2 is the last healthy; r6 current; r4 is incomplete: always removed
    assert remote.prune_plan(found, "r6", 2) == ["r1", "r3", "r4", "r5"]  # r7: the newest BAD one, to look at
    assert remote.prune_plan(found, "r1", 1) == ["r3", "r4", "r5"]  # current r1, last healthy r2, newest good r6


def test_bad_releases_never_take_a_place_among_those_kept():
    """Three failed deploys in a row still leave keep_releases good ones to roll back to."""
    found = [rel("g1", healthy="yes"), rel("g2", healthy="yes"), rel("g3", healthy="yes"), rel("b1", bad="x"),
             rel("b2", bad="y"), rel("b3", bad="z")]
    assert remote.prune_plan(found, "g3", 3) == ["b1", "b2"]


def test_rollback_picks_the_newest_healthy_earlier_release():
    f = Facts({"current": "r4", "releases": [rel("r1", healthy="yes"), rel("r2", healthy="yes"),
                                             rel("r3", bad="x"), rel("r4", healthy="yes"), rel("r5", bad="y")]})
    assert choose_rollback(f, None)["name"] == "r2"
    assert choose_rollback(f, "r1")["name"] == "r1"
    with pytest.raises(BadInput, match="already current"):
        choose_rollback(f, "r4")
    with pytest.raises(BadInput, match="no release 'r9'"):
        choose_rollback(f, "r9")
    with pytest.raises(BadInput, match="no earlier release"):
        choose_rollback(Facts({"current": "r1", "releases": [rel("r1")]}), None)


# --- ssh errors --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stderr,expected", [
    ("No ED25519 host key is known for [h]:22 and you have requested strict checking.\r\nHost key verification failed.",
     "is not in /k/known_hosts"),
    ("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@", "has CHANGED"),
    ("ssh: connect to host h port 22: Connection timed out", "did not answer within 7s"),
    ("Connection timed out during banner exchange", "did not answer within 7s"),
    ("ssh: connect to host h port 22: Connection refused", "refused the connection"),
    ("ssh: Could not resolve hostname nosuch: Name or service not known", "cannot resolve"),
    ("chops@h: Permission denied (publickey).", "refused our ssh key"),
    ("Connection to 127.0.0.1 closed by remote host.", "was lost"),
    ("client_loop: send disconnect: Broken pipe", "was lost"),
    ("", "was lost (ssh exit 255: no message)"),
    ("kex_exchange_identification: read: reset", "connection refused or lost, authentication or host key"),
], ids=["unknown-key", "changed-key", "timeout", "banner-timeout", "refused", "dns", "denied", "closed", "broken-pipe",
        "silent", "other"])
def test_ssh_failures_are_one_line_naming_the_fix(stderr, expected):
    err = ssh_failure(T, OPTIONS, stderr)
    assert isinstance(err, BadInput) and expected in err.line() and "\n" not in err.line()
    assert isinstance(ssh_failure(T, OPTIONS, stderr, preflight=False), WorkFailed)


# --- the target-side helper, on a temporary directory ------------------------------------------------------------------------

def test_lock_is_exclusive_names_its_holder_and_can_be_taken_over(tmp_path):
    path = str(tmp_path / "app")
    first = remote.cmd_lock({"path": path, "holder": {"id": "A", "pid": 1}})
    assert first == {"acquired": True, "took_over": None}
    second = remote.cmd_lock({"path": path, "holder": {"id": "B"}})
    assert second["acquired"] is False and second["holder"]["id"] == "A"
    assert remote.cmd_lock({"path": path, "holder": {"id": "B"}, "takeover": "other"})["acquired"] is False
    took = remote.cmd_lock({"path": path, "holder": {"id": "B"}, "takeover": "A"})
    assert took["acquired"] and took["took_over"]["id"] == "A"
    assert remote.cmd_unlock({"path": path, "id": "A"})["released"] is False  # not A's any more
    assert remote.cmd_unlock({"path": path, "id": "B"})["released"] is True
    assert remote.read_lock(path) is None
    for d in ("releases", "venvs", "shared/var"):
        assert (tmp_path / "app" / d).is_dir()


def make_release(path: Path, name: str, files=("a.txt",)) -> Path:
    d = path / "releases" / name
    d.mkdir(parents=True)
    (d / "config").mkdir()
    (d / "config" / ".env.example").write_text("# CLICKHOUSE_URL=\nNEEDED=\n")
    for f in files:
        (d / f).write_text(f)
    return d


def test_prepare_links_shared_and_never_overwrites_env(tmp_path):
    path = tmp_path / "app"
    remote.cmd_lock({"path": str(path), "holder": {"id": "A"}})
    make_release(path, "r1")
    out = remote.cmd_prepare({"path": str(path), "release": "r1", "revision": "abc", "venv": "v1", "files": ["a.txt"]})
    env = path / "shared" / ".env"
    assert out["env_created"] and oct(env.stat().st_mode & 0o777) == "0o600"
    assert out["example"] == {"CLICKHOUSE_URL": False, "NEEDED": True} and out["env_keys"] == []
    assert os.readlink(path / "releases" / "r1" / ".venv") == "../../venvs/v1"
    assert os.readlink(path / "releases" / "r1" / "var") == "../../shared/var"
    assert (path / "releases" / "r1" / "REVISION").read_text() == "abc\n"
    env.write_text("NEEDED=s3cret-value\n")
    env.chmod(0o644)
    make_release(path, "r2")
    again = remote.cmd_prepare({"path": str(path), "release": "r2", "revision": "def", "venv": "v1"})
    assert env.read_text() == "NEEDED=s3cret-value\n"  # never overwritten
    assert again["env_mode_fixed"] == "0o644" and oct(env.stat().st_mode & 0o777) == "0o600"
    assert again["env_keys"] == ["NEEDED"] and "s3cret" not in json.dumps(again)


def test_switch_is_a_rename_and_finish_prunes_and_audits(tmp_path):
    path = tmp_path / "app"
    remote.cmd_lock({"path": str(path), "holder": {"id": "A"}})
    for name in ("r1", "r2", "r3"):
        make_release(path, name)
        remote.cmd_prepare({"path": str(path), "release": name, "revision": name, "venv": f"v-{name}"})
        (path / "venvs" / f"v-{name}").mkdir()
    make_release(path, "r4")  # a sync that died: no REVISION
    assert remote.cmd_switch({"path": str(path), "release": "r4"})["switched"] is False
    assert remote.cmd_switch({"path": str(path), "release": "r2"}) == {"switched": True, "from": None, "to": "r2"}
    assert os.readlink(path / "current") == "releases/r2"
    remote.cmd_mark({"path": str(path), "release": "r1", "status": "healthy"})
    out = remote.cmd_finish({"path": str(path), "id": "A", "keep": 1,
                             "marks": [{"release": "r3", "status": "bad", "reason": "unhealthy: disk"}],
                             "audit": {"action": "deploy", "result": "rolled back"}})
    assert out["pruned"] == {"releases": ["r4"], "venvs": []}
    assert sorted(os.listdir(path / "releases")) == ["r1", "r2", "r3"]  # r1 last healthy, r2 current, r3 newest
    assert (path / "releases" / "r3" / "BAD").read_text().strip().endswith("unhealthy: disk")
    assert out["unlocked"] is True
    assert json.loads((path / "audit.log").read_text().splitlines()[-1])["result"] == "rolled back"
    assert remote.cmd_switch({"path": str(path), "release": None})["to"] is None
    assert not os.path.lexists(path / "current")


def test_facts_report_layout_and_key_names_only(tmp_path):
    path = tmp_path / "app"
    remote.cmd_lock({"path": str(path), "holder": {"id": "A", "host": "h"}})
    make_release(path, "r1", files=("a.txt", "b.txt"))
    remote.cmd_prepare({"path": str(path), "release": "r1", "revision": "abc", "venv": "v1", "files": ["a.txt"]})
    (path / "shared" / ".env").write_text("SECRET_KEY=do-not-leak\n")
    remote.cmd_switch({"path": str(path), "release": "r1"})
    out = remote.cmd_facts({"path": str(path), "python": sys.executable, "tag": None, "audit": 5, "manifest": True})
    assert out["current"] == "r1" and out["releases"][0]["revision"] == "abc" and out["releases"][0]["venv"] == "v1"
    assert out["env"]["keys"] == ["SECRET_KEY"] and "do-not-leak" not in json.dumps(out)
    assert out["lock"]["id"] == "A" and out["lock"]["age"] >= 0
    assert list(out["manifest"]) == ["a.txt"]  # what the release was shipped with, not b.txt or the markers
    assert out["python"]["version"] and out["env_example_current"] == {"CLICKHOUSE_URL": False, "NEEDED": True}


# --- the work tree -----------------------------------------------------------------------------------------------------------

def git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


def test_a_dirty_tree_is_refused_unless_allowed(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "requirements.txt").write_text("invoke\n")
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    (repo / "untracked.txt").write_text("not shipped\n")
    clean = read_source(repo)
    assert clean.files == ("a.py", "requirements.txt") and clean.revision == clean.commit[:12] and not clean.dirty
    (repo / "a.py").write_text("x = 2\n")
    with pytest.raises(BadInput, match=r"uncommitted changes \(a.py\)") as err:
        read_source(repo)
    assert "--allow-dirty" in err.value.line()
    dirty = read_source(repo, allow_dirty=True)
    assert dirty.revision.startswith(clean.commit[:12] + "-dirty-") and dirty.dirty == ("a.py",)
    (repo / "a.py").write_text("x = 3\n")
    assert read_source(repo, allow_dirty=True).revision != dirty.revision  # other changes, other revision


def test_not_a_git_checkout_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="not a git checkout"):
        read_source(tmp_path)


def test_the_helper_answers_in_json_and_reports_errors_in_one(tmp_path, capsys):
    assert remote.main(["nonsense", "{}"]) == 2 and "usage" in capsys.readouterr().out
    code = remote.main(["prepare", json.dumps({"path": str(tmp_path / "none"), "release": "r", "revision": "x",
                                               "venv": "v"})])
    assert code == 1 and "error" in json.loads(capsys.readouterr().out)
    assert remote.main(["unlock", json.dumps({"path": str(tmp_path / "none"), "id": "x"})]) == 0
    assert json.loads(capsys.readouterr().out) == {"released": False, "holder": None}


def test_unreadable_lock_and_audit_lines_are_shown_not_fatal(tmp_path):
    (tmp_path / remote.LOCK).write_text("{not json")
    held = remote.read_lock(str(tmp_path))
    assert held["id"] == "?" and "not json" in held["unreadable"]
    assert lock_state(held, 3600)[0] == "held" and describe_holder(held) == "an unreadable lock file"
    (tmp_path / remote.AUDIT).write_text('{"result": "ok"}\ngarbage\n')
    assert remote.audit_tail(str(tmp_path), 5) == [{"result": "ok"}, {"unreadable": "garbage"}]
    assert remote.audit_tail(str(tmp_path), 0) == []


def test_crontab_lines_only_ever_carry_the_tag(tmp_path):
    found = remote.crontab_lines("0000000000")
    assert found["lines"] == [] and set(found) == {"available", "lines"}


def test_a_release_without_a_file_list_lists_its_regular_files(tmp_path):
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "m.py").write_text("x")
    (tmp_path / "pkg" / "__pycache__" / "m.pyc").write_text("x")
    (tmp_path / "REVISION").write_text("abc\n")
    (tmp_path / "link").symlink_to("pkg/m.py")
    assert sorted(remote.shipped(str(tmp_path))) == ["link", "pkg/m.py"]
    assert list(remote.blob_hashes(str(tmp_path))) == ["pkg/m.py"]


# --- the refusals and edges of the plan ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,message", [
    ("[targets.x\n", "invalid TOML"),
    ("[elsewhere]\n", "unknown section [elsewhere]"),
    ("targets = 1\n", "must be a table"),
    ('[targets.x]\nhost = "a"\nhosts = ["b"]\n', "has both host and hosts"),
    ('[targets.x]\nuser = "a"\n', "names no host"),
], ids=["toml", "section", "not-a-table", "host-and-hosts", "no-host"])
def test_deploy_toml_mistakes_name_the_file(project, text, message):
    (project / "config" / "deploy.toml").write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        resolve_targets(target_names="x", root=project)


def test_without_deploy_toml_a_host_needs_a_path(project):
    (project / "config" / "deploy.toml").unlink()
    assert read_targets(project) == {"defaults": {}, "targets": {}}
    with pytest.raises(BadInput, match="no deploy path for h"):
        resolve_targets(hosts="h", root=project)
    [t] = resolve_targets(hosts="h", path="/srv/x", root=project)
    assert (t.port, t.environment, t.cron) == (22, "prod", True)


GOOD_FACTS = {"exists": True, "parent_exists": True, "writable": True, "rsync": True,
              "python": {"version": "3.11.2", "venv": True}, "crontab": {"available": True}}


@pytest.mark.parametrize("change,message", [
    ({"exists": False, "parent_exists": False}, "the parent directory /srv does not exist"),
    ({"writable": False}, "/srv/chops is not writable by chops"),
    ({"exists": False, "writable": False}, "/srv is not writable by chops"),
    ({"rsync": False}, "rsync is not installed on etl1"),
    ({"python": {"error": "cannot run python3: No such file"}}, "cannot run python3"),
    ({"python": {"version": "3.11.2", "venv": False}}, "cannot create virtualenvs"),
    ({"crontab": {"available": False}}, "crontab command is not installed"),
], ids=["no-parent", "not-writable", "parent-not-writable", "rsync", "python", "venv", "crontab"])
def test_a_target_that_cannot_take_a_deploy_is_refused(change, message):
    with pytest.raises(BadInput, match=message):
        check_target(Facts({**GOOD_FACTS, **change}), T, OPTIONS)


def test_a_target_without_cron_needs_no_crontab():
    check_target(Facts({**GOOD_FACTS, "crontab": {"available": False}}),
                 dataclasses.replace(T, cron=False), OPTIONS)


def test_a_tasks_json_answer_is_its_whole_stdout():
    done = subprocess.CompletedProcess([], 0, stdout='{"a": 1}\n', stderr="")
    assert json_answer(done, "db.migrate", "h") == {"a": 1}
    done.stdout = 'warning: x\n{"a": 1}\nnoise {"b": [2]} tail'  # never searched for something that looks like JSON
    with pytest.raises(WorkFailed, match="db.migrate on h did not answer with one JSON document on stdout") as err:
        json_answer(done, "db.migrate", "h")
    assert "\n" not in err.value.line() and "db.migrate --json must print its JSON and nothing else" in err.value.line()
    done.stdout, done.stderr = "", "Traceback ...\nImportError: no module named x\n"
    with pytest.raises(WorkFailed, match="stdout: nothing; stderr: ImportError: no module named x"):
        json_answer(done, "db.migrate", "h")


def test_other_ssh_failures_and_odd_lock_records():
    assert "cannot be reached" in ssh_failure(T, OPTIONS, "connect: No route to host").line()
    assert ssh_failure(T, OPTIONS, "kex_exchange_identification: read: reset").line().endswith(
        "kex_exchange_identification: read: reset")
    assert describe_holder({}) == "nobody"
    assert lock_state({"host": HERE, "pid": "x", "age": 1.0}, 3600, HERE)[0] == "stale"


def test_root_is_refused_unless_allowed():
    root = dataclasses.replace(T, user="root")
    with pytest.raises(BadInput, match="as root is refused"):
        Remote(root, OPTIONS)
    assert Remote(root, dataclasses.replace(OPTIONS, allow_root=True)).target.user == "root"


def test_ssh_config_user_and_port_apply_unless_given(targets_project, tmp_path):
    """Precedence: the command line > the target's own entry > ssh's config (ssh -G) > [defaults] of deploy.toml.
    What ssh decides is left off its command line (ssh applies its config itself: IdentityFile, ProxyJump too)."""
    from ops.deploy.report import hint_flags
    from ops.deploy.targets import refuse_root, ssh_settings

    config = tmp_path / "ssh_config"
    config.write_text("Host web1\n  User deploy\n  Port 2201\n  IdentityFile /k/web1\n  ProxyJump jump.example\n"
                      "Host s.example\n  User sam\n  Port 2299\nHost r1\n  User root\n")
    options = dataclasses.replace(OPTIONS, ssh_config=str(config), identity_file="")
    [web] = resolve_targets(hosts="web1", root=targets_project, ssh_config=str(config))
    assert (web.user, web.port, web.implicit, web.destination) == ("deploy", 2201, ("user", "port"), "web1")
    argv = ssh_base(web, options)
    assert argv[1:3] == ["-F", str(config)] and "-p" not in argv
    assert rsync_argv(web, options, "/srv/chops/releases/R", None)[-1] == "web1:/srv/chops/releases/R/"
    assert hint_flags(web, targets_project) == "--host web1"  # copied, it reaches the same user and port again
    said = ssh_settings("web1", str(config))
    assert said["proxyjump"] == "jump.example" and said["identityfile"] == "/k/web1"
    [given] = resolve_targets(hosts="web1", user="ops", port="22", root=targets_project, ssh_config=str(config))
    assert (given.destination, given.implicit) == ("ops@web1", ())
    assert ssh_base(given, options)[-2:] == ["-p", "22"]  # given: it wins over ssh's config
    [staging] = resolve_targets(target_names="staging", root=targets_project, ssh_config=str(config))
    assert (staging.user, staging.port, staging.implicit) == ("sam", 2222, ("user",))  # its own port wins
    [plain] = resolve_targets(hosts="x.example", root=targets_project, ssh_config=str(config))
    assert (plain.user, plain.port, plain.destination) == ("chops", 22, "chops@x.example")  # [defaults]
    [root] = resolve_targets(hosts="r1", root=targets_project, ssh_config=str(config))
    if user_name() != "root":  # ssh's config naming this machine's own user cannot be told from naming none
        assert root.user == "root" and root.implicit == ("user", "port")
    root = dataclasses.replace(root, user="root", implicit=("user", "port"))
    with pytest.raises(BadInput, match=r"as root \(from ~/.ssh/config"):
        refuse_root([root], allow_root=False)
    refuse_root([root], allow_root=True)


def test_root_from_the_command_line_is_refused_before_the_work_tree_is_read(tmp_path):
    """--user root is bad input before anything else is looked at (here: --source names no directory)."""
    done = inv("deploy", "--host", "h.example", "--user", "root", "--path", "/srv/x", "--source", "/nonexistent",
               env={"CHOPS_ENV_FILE": str(tmp_path / "no.env")})
    assert done.returncode == 2 and "as root is refused" in done.stderr and "--source" not in done.stderr


def test_deploy_has_a_no_rollback_flag():
    done = inv("--help", "deploy")
    assert done.returncode == 0
    assert "--no-rollback" in done.stdout and "-n, --dry-run" in done.stdout


def test_a_call_that_never_read_its_input_never_feeds_the_next_one():
    """A command that exits without reading its stdin (ssh cut by an interrupt) leaves a feeder writing; the next
    call's pipe may get the same descriptor numbers, and must receive its own bytes only. Local commands stand in
    for ssh here: the pipes and threads are the real ones."""
    remote = Remote(T, OPTIONS)
    remote.argv = lambda command: ["sh", "-c", command]
    for _ in range(20):
        remote.run("exit 0", input=b"x" * 1_000_000)
        done = remote.run("head -c 65536 | tr -d y | wc -c", input=b"y" * 65536, timeout=20)
        assert done.stdout.strip() == "0", "bytes of an earlier call reached this one"


def test_logs_of_deploys_at_once_in_one_process_are_distinct(tmp_path):
    """A fleet runs a Deployer per host in threads: one host name on two ports, the same second, the same pid."""
    import threading

    from ops.core.settings import load_settings
    from ops.deploy.history import DeployLog, read_index

    s = load_settings(environ={"CHOPS_PATHS__VAR": str(tmp_path / "var"), "CHOPS_ENV_FILE": str(tmp_path / "no.env")})
    hosts = [dataclasses.replace(T, host="127.0.0.1", port=2200 + i % 4) for i in range(16)]
    logs: list = [None] * len(hosts)

    def one(i: int) -> None:
        log = logs[i] = DeployLog(s, "deploy", hosts[i])
        log.write(f"line of {i} " + "x" * 20000)
        log.record("ok", f"R{i}", None, error="e" * 10000)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(hosts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({log.path for log in logs}) == len(hosts)
    for i, log in enumerate(logs):
        assert f"line of {i} " in log.path.read_text() and f"-{hosts[i].port}-deploy-" in log.path.name
    index = read_index(s)
    assert sorted(e["release"] for e in index) == sorted(f"R{i}" for i in range(len(hosts)))
    assert len({e["log"] for e in index}) == len(hosts) and {e["port"] for e in index} == {2200, 2201, 2202, 2203}


def test_options_come_from_settings(tmp_path):
    from ops.core.settings import load_settings

    s = load_settings(environ={"CHOPS_ENV_FILE": str(tmp_path / "none.env"), "CHOPS_DEPLOY__IDENTITY_FILE": "keys/id",
                               "CHOPS_DEPLOY__BWLIMIT": "100"})
    options = SshOptions.from_settings(s, accept_new_host_key=True)
    assert options.identity_file == str(s.root / "keys" / "id") and options.known_hosts == ""
    assert options.accept_new_host_key and options.bwlimit == 100
    assert "--bwlimit=100" in rsync_argv(T, options, "/r", None, dry_run=True)
    assert "--dry-run" in rsync_argv(T, options, "/r", None, dry_run=True)
    with pytest.raises(ConfigError, match="deploy.python"):
        SshOptions.from_settings(s.with_overrides(deploy__python="python3; id"))


def test_cron_plan_of_a_target_without_cron_removes_its_entries():
    from ops import ROOT

    tag = project_id(T.path)
    installed = f"0 2 * * * cd {T.path}/current && true # chops:{tag}:events_ingest\n"
    off = cron_plan(ROOT, dataclasses.replace(T, cron=False), installed)
    assert off.summary() == "0 added, 0 changed, 1 removed, 0 unchanged" and off.after == ""
    on = cron_plan(ROOT, T, "")
    assert on.of("add") and all(f"cd {T.path}/current && " in c.command for c in on.of("add"))


def test_outcomes_and_plans_are_plain_data():
    p = make_plan(T, source(), facts("R1", "aaaaaaaaaaaa"), 3600)
    assert json.loads(json.dumps(p.as_dict()))["target"]["host"] == T.host
    o = Outcome(T, "deploy", "no-op", "R1", "R1", [], 1.0)
    assert o.as_dict()["target"]["path"] == "/srv/chops"


def test_rollback_refuses_incomplete_releases_and_a_target_without_current():
    f = Facts({"current": "r2", "releases": [rel("r1", complete=False), rel("r2")]})
    with pytest.raises(BadInput, match="incomplete"):
        choose_rollback(f, "r1")
    with pytest.raises(BadInput, match="no current release"):
        choose_rollback(Facts({"current": None, "releases": [rel("r1")]}), None)


# --- truthful verdicts, the database, hints, the audit and the local history -------------------------------------------

def test_a_check_that_could_not_run_fails_a_deploy_and_warnings_are_named(monkeypatch):
    from ops.deploy import report

    verdict = {"healthy": True, "passed": 6, "warnings": 2, "failed": 0, "checks": [
        {"name": "cron", "status": "warn", "reason": "no cron daemon is running"},
        {"name": "freshness", "status": "warn", "reason": "not checked: the database is in use"},
        {"name": "disk", "status": "pass", "reason": "ok"}]}
    done = subprocess.CompletedProcess([], 0, json.dumps(verdict), "")

    class Answering:
        target = T

        def inv_json(self, *args, **kwargs):
            return done, verdict

    strict = report.health(Answering(), T)
    assert not strict["healthy"] and strict["failed"] == ["freshness: not checked: the database is in use"]
    assert strict["warnings"] == ["cron: no cron daemon is running"]
    assert strict["summary"] == "UNHEALTHY: 6 passed, 1 warning, 1 failed (1 could not run)"
    shown = report.health(Answering(), T, strict=False)
    assert shown["healthy"] and len(shown["warnings"]) == 2 and shown["summary"].endswith("2 warnings, 0 failed")


def test_hints_carry_every_flag_that_is_not_the_default(targets_project):
    from ops.deploy.report import hint_flags

    [staging] = resolve_targets(target_names="staging", root=targets_project)
    assert hint_flags(staging, targets_project) == "--target staging"
    [moved] = resolve_targets(target_names="staging", port="2200", root=targets_project)
    assert hint_flags(moved, targets_project) == "--target staging --port 2200"
    [one] = resolve_targets(hosts="h.example", port="2222", path="/home/d/app", root=targets_project)
    assert hint_flags(one, targets_project) == "--host h.example --port 2222 --path /home/d/app"
    a, _ = resolve_targets(target_names="prod", root=targets_project)  # one host of several: named by itself
    # no port in deploy.toml: ssh decides it (~/.ssh/config, else 22), so the hint leaves it to ssh again
    assert hint_flags(a, targets_project).startswith("--host a.example --user chops --path /srv/chops")


def test_migration_failures_say_the_database_state_and_the_repair():
    from ops.deploy import database

    clean = database.migration_failure({
        "error": "migrations/0008_x.sql statement 2 of 2 (line 3) failed: Code: 62. Syntax error; undid what ran "
                 "(statement 1, with 1 rollback statement): 0008_x is not applied and nothing is dirty (fix "
                 "migrations/0008_x.sql and run: inv db.migrate)",
        "exit_code": 1, "migration": "0008_x", "statement": 2, "undone": True, "state": "clean",
        "repair": "inv db.migrate"}, T, "--host h")
    assert clean.message.startswith("migration 0008_x statement 2 failed on etl1.example.internal: migrations/")
    assert clean.message.endswith("nothing is dirty; the database is clean as before")  # the remote hint dropped
    assert clean.hint == "fix the migration and deploy again"
    dirty = database.migration_failure({
        "error": "statement 2 failed: boom; it could not be undone: no rollback file", "migration": "0008_x",
        "statement": 2, "undone": False, "state": "dirty", "repair": "inv db.migrate --resume",
        "ways_out": "fix the file and run: inv db.migrate --resume; or, if its effect is already there: inv db.mark "
                    "0008_x"}, T, "--host h --port 2222")
    assert "it could not be undone: the database is DIRTY (0008_x)" in dirty.message
    assert dirty.hint == ("fix the file and run: inv deploy.exec --host h --port 2222 -- db.migrate --resume; or, if "
                          "its effect is already there: inv deploy.exec --host h --port 2222 -- db.mark 0008_x")
    no_ways = database.migration_failure({"error": "boom", "migration": "0008_x", "state": "dirty"}, T, "--host h")
    assert "inv deploy.exec --host h -- db.rollback" in no_ways.hint
    row = {"id": "0008_x", "state": "dirty", "repair": "inv db.migrate --resume"}
    assert database.dirty_repair(row, "--target prod") == ("repair: inv deploy.exec --target prod -- db.migrate "
                                                           "--resume; see it: inv deploy.exec --target prod -- "
                                                           "db.status; then deploy again")
    rows = [{"id": "0001", "state": "applied"}, {"id": "0008", "state": "ahead"},
            {"id": "0009", "state": "drifted", "note": "file missing"}, {"id": "0010", "state": "drifted",
                                                                         "note": "file changed after it was applied"}]
    assert database.ahead_of(rows) == ["0008", "0009"]


def test_a_paused_cron_turns_a_no_op_into_a_reverification():
    f = facts(current="r1", revision=source().revision)
    assert make_plan(T, source(), f, 3600).action == "no-op"
    f.raw["cron_paused"] = {"by": "a deploy", "since": "2026-11-26 21:00:00 UTC"}
    assert make_plan(T, source(), f, 3600).action == "reverify"
    assert make_plan(dataclasses.replace(T, cron=False), source(), f, 3600).action == "no-op"


def test_repeated_no_ops_collapse_and_a_killed_deploy_is_recorded_by_the_next(tmp_path):
    path = tmp_path / "app"
    path.mkdir()
    for _ in range(3):
        remote.cmd_audit({"path": str(path), "audit": {"at": "t", "result": "no-op", "to": "r1"}})
    remote.cmd_audit({"path": str(path), "audit": {"at": "t2", "result": "no-op", "to": "r2"}})
    lines = [json.loads(line) for line in (path / "audit.log").read_text().splitlines()]
    assert [(x["to"], x.get("repeats")) for x in lines] == [("r1", 3), ("r2", None)]
    dead = {"id": "old", "user": "ops", "host": "build-7", "pid": 4242, "since": "2026-01-01 00:00:00 UTC",
            "action": "deploy", "release": "r3"}
    remote.cmd_lock({"path": str(path), "holder": dead})
    taken = remote.cmd_lock({"path": str(path), "holder": {"id": "new", "user": "me", "host": "h", "pid": 1},
                             "takeover": "old"})
    assert taken["acquired"]
    last = json.loads((path / "audit.log").read_text().splitlines()[-1])
    assert (last["result"], last["to"], last["who"]) == ("killed", "r3", "ops@build-7")
    assert "pid 4242 died holding the deploy lock" in last["error"]


def test_every_deploy_keeps_its_log_and_a_line_in_the_local_index(tmp_path):
    from ops.core.settings import load_settings
    from ops.deploy import history

    settings = load_settings(ROOT, environ={"CHOPS_PATHS__VAR": str(tmp_path / "var"),
                                            "CHOPS_ENV_FILE": str(tmp_path / "no.env")})
    log = history.DeployLog(settings, "deploy", T)
    said = []
    log.tee(said.append)("[1/7] preflight and lock: ok")
    log.record("failed", "r2", "r1", "migration 0008 failed")
    log.killed({"pid": 77, "host": "build-7", "release": "r3", "action": "deploy", "since": "x"})
    [one, killed] = history.read_index(settings)
    assert said == ["[1/7] preflight and lock: ok"]
    assert {k: one[k] for k in ("action", "target", "host", "release", "from_release", "outcome", "error")} == {
        "action": "deploy", "target": T.host, "host": T.host, "release": "r2", "from_release": "r1",
        "outcome": "failed", "error": "migration 0008 failed"}
    text = Path(one["log"]).read_text()
    assert "[1/7] preflight and lock: ok" in text and "error: migration 0008 failed" in text
    assert killed["outcome"] == "killed" and killed["release"] == "r3" and "pid 77" in killed["error"]


def test_make_deploy_passes_path_and_host_key_acceptance():
    done = subprocess.run(["make", "-s", "-o", "setup", "deploy", "INV=printf '<%s>\\n'", "HOST=h",
                           "DEPLOY_PATH=/srv/a b", "ACCEPT_NEW_HOST_KEY=1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["<deploy>", "<--host>", "<h>", "<--path>", "</srv/a b>",
                                        "<--accept-new-host-key>"]
