"""Fleets without a network: hosts and roles of config/deploy.toml, --limit, hooks, the rollout order, and the
runner that deploys several hosts at once (real threads, a real interrupt, real local hook processes)."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from ops import ROOT
from ops.core.errors import BadInput, ConfigError, WorkFailed
from ops.core.threads import pause
from ops.deploy.fleet import describe_rollout, rollout_order, run_hook, run_many
from ops.deploy.targets import Hook, Where, resolve_fleet, resolve_targets
from ops.deploy.transport import SshOptions

FLEET = '''
[defaults]
user = "chops"
path = "/srv/chops"
environment = "prod"

[targets.prod]
hosts = ["etl1.example", { host = "etl2.example", port = 2222, path = "/srv/other" }]
parallel = 2
canary = 1
before = [{ local = "scripts/notify 'deploy starts'" }, { remote = ["inv", "proc.check"], roles = ["workers"] }]
after = [{ local = ["scripts/notify", "done"], timeout = 30 }]

[targets.prod.roles.scheduler]
hosts = ["etl1.example"]
cron = true

[targets.prod.roles.workers]
hosts = ["w1.example", "w2.example", "w3.example"]
cron = false

[targets.staging]
host = "s.example"
rollback_on_failure = false
canary = 0
'''


@pytest.fixture
def fleet_project(project):
    (project / "config" / "deploy.toml").write_text(FLEET)
    return project


def write(project, text):
    (project / "config" / "deploy.toml").write_text(text)
    return project


# --- hosts, roles, rollout settings and hooks of config/deploy.toml -----------------------------------------------------

def test_a_fleet_target_lists_its_hosts_and_roles_in_order(fleet_project):
    [prod] = resolve_fleet(target_names="prod", root=fleet_project).groups
    assert [(t.host, t.port, t.path, t.cron, t.roles) for t in prod.targets] == [
        ("etl1.example", 22, "/srv/chops", True, ("scheduler",)),  # listed twice: one host, its roles merged
        ("etl2.example", 2222, "/srv/other", True, ()),
        ("w1.example", 22, "/srv/chops", False, ("workers",)),
        ("w2.example", 22, "/srv/chops", False, ("workers",)),
        ("w3.example", 22, "/srv/chops", False, ("workers",))]
    assert (prod.name, prod.parallel, prod.canary, prod.rollback_on_failure) == ("prod", 2, 1, True)
    assert prod.before == (Hook(Where.LOCAL, ("scripts/notify", "deploy starts")),
                           Hook(Where.REMOTE, ("inv", "proc.check"), roles=("workers",)))
    assert prod.after == (Hook(Where.LOCAL, ("scripts/notify", "done"), timeout=30.0),)
    assert prod.before[0].label() == "local: scripts/notify 'deploy starts'"


def test_defaults_give_one_canary_one_host_at_a_time_and_rollback(fleet_project):
    [staging] = resolve_fleet(target_names="staging", root=fleet_project).groups
    assert (staging.parallel, staging.canary, staging.rollback_on_failure, staging.before) == (1, 0, False, ())
    [hosts] = resolve_fleet(hosts="a,b", root=fleet_project).groups
    assert (hosts.name, [t.host for t in hosts.targets], hosts.parallel, hosts.canary) == ("", ["a", "b"], 1, 1)


def test_flags_win_over_every_host_of_the_file(fleet_project):
    found = resolve_targets(target_names="prod", port="2200", root=fleet_project)
    assert {t.port for t in found} == {2200}


def test_limit_keeps_the_named_hosts_and_roles(fleet_project):
    fleet = resolve_fleet(target_names="prod,staging", limit=["workers", "s.example"], root=fleet_project)
    assert [(g.name, [t.host for t in g.targets]) for g in fleet.groups] == [
        ("prod", ["w1.example", "w2.example", "w3.example"]), ("staging", ["s.example"])]
    assert [t.host for t in resolve_fleet(target_names="prod", limit="etl2.example,w3.example",
                                          root=fleet_project).targets] == ["etl2.example", "w3.example"]


def test_limit_naming_nothing_known_is_bad_input(fleet_project):
    with pytest.raises(BadInput, match="--limit w9.example: not a host or a role") as err:
        resolve_fleet(target_names="prod", limit="w9.example", root=fleet_project)
    assert "roles: scheduler, workers" in err.value.line()


@pytest.mark.parametrize("text,message", [
    ('[targets.x]\nhosts = [{ port = 22 }]\n', "a host table of x has no host key"),
    ('[targets.x]\nhosts = [{ host = "a", prot = 22 }]\n', "unknown key 'prot' in a host of x"),
    ('[targets.x]\n[targets.x.roles.web]\ncron = false\n', "role web of x names no host"),
    ('[targets.x]\n[targets.x.roles.web]\nhosts = ["a"]\nparallel = 2\n', "unknown key 'parallel' in role web of x"),
    ('[targets.x]\nhost = "a"\nparallel = 0\n', "parallel of x must be a whole number, at least 1"),
    ('[targets.x]\nhost = "a"\ncanary = "one"\n', "canary of x must be a whole number, at least 0"),
    ('[targets.x]\nhost = "a"\nrollback_on_failure = "yes"\n', "rollback_on_failure of x must be true or false"),
    ('[targets.x]\nhost = "a"\nbefore = "make"\n', "before of x must be a list of hooks"),
    ('[targets.x]\nhost = "a"\nbefore = [{ shell = "make" }]\n', "each hook is"),
    ('[targets.x]\nhost = "a"\nbefore = [{ local = "a", remote = "b" }]\n', "each hook is"),
    ('[targets.x]\nhost = "a"\nafter = [{ local = "" }]\n', "must be non-empty"),
    ('[targets.x]\nhost = "a"\nafter = [{ local = "echo \'unclosed" }]\n', "cannot read the command"),
    ('[targets.x]\nhost = "a"\nafter = [{ local = ["a", "b\\nc"] }]\n', "without newlines"),
    ('[targets.x]\nhost = "a"\nafter = [{ local = "a", roles = ["web"] }]\n', "only for a remote hook"),
    ('[targets.x]\nhost = "a"\nafter = [{ remote = "a", timeout = 0 }]\n', "timeout must be a positive number"),
    ('[defaults]\nroles = {}\n[targets.x]\nhost = "a"\n', "unknown key 'roles' in defaults"),
], ids=["host-table-no-host", "host-table-key", "role-no-host", "role-key", "parallel", "canary", "rollback",
        "hooks-not-list", "hook-kind", "hook-both", "hook-empty", "hook-quote", "hook-newline", "hook-local-roles",
        "hook-timeout", "defaults-roles"])
def test_fleet_mistakes_in_deploy_toml_name_the_file_and_key(project, text, message):
    write(project, text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as err:
        resolve_fleet(target_names="x", root=project)
    assert "config/deploy.toml" in err.value.line()


def test_the_commented_fleet_example_of_the_shipped_deploy_toml_is_valid(project):
    """config/deploy.toml shows a fleet in comments: uncommented, it must resolve."""
    shipped = (ROOT / "config" / "deploy.toml").read_text()
    example = shipped.split("# A fleet:")[1].splitlines()[1:]
    text = shipped.split("# A fleet:")[0] + "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#")
                                                      for line in example)
    write(project, text)
    [fleet] = resolve_fleet(target_names="fleet", root=project).groups
    assert len(fleet.targets) == 4 and fleet.parallel == 2 and fleet.before and fleet.after
    assert [t.roles for t in fleet.targets] == [("scheduler",), ("workers",), ("workers",), ("workers",)]


def test_a_bad_host_in_a_role_is_refused_like_any_host(project):
    write(project, '[defaults]\npath = "/srv/c"\n[targets.x.roles.web]\nhosts = ["a;rm -rf /"]\n')
    with pytest.raises(BadInput, match="is not a host name"):
        resolve_fleet(target_names="x", root=project)


# --- the rollout order ----------------------------------------------------------------------------------------------------

def test_the_rollout_is_a_canary_then_batches_of_parallel_hosts(fleet_project):
    fleet = resolve_fleet(target_names="prod,staging", root=fleet_project)
    order = rollout_order(fleet)
    assert [(b.number, b.group, [t.host for t in b.targets], b.canary) for b in order] == [
        (1, "prod", ["etl1.example"], True),
        (2, "prod", ["etl2.example", "w1.example"], False),
        (3, "prod", ["w2.example", "w3.example"], False),
        (4, "staging", ["s.example"], False)]
    lines = describe_rollout(fleet, order)
    assert lines[0] == "rollout: 6 hosts in 4 batches; stops at the first failure"
    assert "  batch 1 (canary): etl1.example" in lines and "  batch 2: etl2.example, w1.example, 2 at once" in lines
    assert "  staging: leaves the hosts it switched (rollback_on_failure = false)" in lines
    assert "    before: remote: inv proc.check (roles workers)" in lines


def test_flags_change_the_order_and_a_lone_host_needs_no_canary(fleet_project):
    fleet = resolve_fleet(target_names="prod", root=fleet_project)
    assert [len(b.targets) for b in rollout_order(fleet, parallel=3, canary=2)] == [2, 3]
    assert [len(b.targets) for b in rollout_order(fleet, parallel=1, canary=0)] == [1, 1, 1, 1, 1]
    [only] = rollout_order(resolve_fleet(hosts="a", root=fleet_project))
    assert (only.canary, [t.host for t in only.targets]) == (False, ["a"])


# --- the runner -------------------------------------------------------------------------------------------------------------

def _jobs(fleet_project, bodies):
    targets = resolve_targets(hosts=",".join(f"h{i}" for i in range(len(bodies))), root=fleet_project)
    return list(zip(targets, bodies))


def test_hosts_run_at_once_up_to_parallel_and_results_keep_their_order(fleet_project):
    running, most = set(), []

    def body(i):
        def job():
            running.add(i)
            most.append(len(running))
            time.sleep(0.3)
            running.discard(i)
            return i
        return job

    started = time.monotonic()
    results, interrupted = run_many(_jobs(fleet_project, [body(i) for i in range(4)]), 2, print)
    assert [r for _, r in results] == [0, 1, 2, 3] and not interrupted
    assert max(most) == 2 and 0.55 < time.monotonic() - started < 1.5


def test_no_host_starts_after_a_failure(fleet_project):
    started = []

    def body(i, fails=False):
        def job():
            started.append(i)
            time.sleep(0.1)
            if fails:
                raise WorkFailed(f"h{i} is unhealthy")
            return i
        return job

    results, _ = run_many(_jobs(fleet_project, [body(0, fails=True), body(1), body(2), body(3)]), 2, print)
    assert sorted(started) == [0, 1]  # h1 was already running beside h0; h2 and h3 never start
    assert isinstance(results[0][1], WorkFailed) and results[1][1] == 1 and len(results) == 2
    results, _ = run_many(_jobs(fleet_project, [body(0, fails=True), body(1)]), 1, print)
    assert len(results) == 1


def test_an_interrupt_reaches_every_running_host(fleet_project):
    """Ctrl-C reaches the main thread only; each host running in a thread is interrupted at its next stop point (a
    wait here), cleans up, and the runner returns once all stopped."""
    cleaned = []

    def body(i):
        def job():
            try:
                for _ in range(200):
                    pause(0.05)
                return i
            except KeyboardInterrupt:
                cleaned.append(i)
                raise
        return job

    threading.Timer(0.3, lambda: signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)).start()
    started = time.monotonic()
    results, interrupted = run_many(_jobs(fleet_project, [body(0), body(1), body(2)]), 3, lambda line: None)
    assert interrupted and sorted(cleaned) == [0, 1, 2] and time.monotonic() - started < 5
    assert all(isinstance(r, KeyboardInterrupt) for _, r in results)


# --- hooks ------------------------------------------------------------------------------------------------------------------

def test_a_local_hook_runs_without_a_shell_in_the_project_and_shows_its_output(tmp_path, fleet_project):
    [group] = resolve_fleet(target_names="staging", root=fleet_project).groups
    said = []
    hook = Hook(Where.LOCAL, ("sh", "-c", 'echo "in $(pwd) for $CHOPS_DEPLOY_TARGET"; echo "$1"', "-", "a b; $(x)"))
    run_hook(hook, group, {"CHOPS_DEPLOY_STAGE": "before", "CHOPS_DEPLOY_TARGET": "staging"}, tmp_path,
             SshOptions(), said.append, False)
    assert said == ["hook before: local: sh -c 'echo \"in $(pwd) for $CHOPS_DEPLOY_TARGET\"; echo \"$1\"' - "
                    "'a b; $(x)'", f"  | in {tmp_path} for staging", "  | a b; $(x)"]


def test_a_failing_or_slow_local_hook_is_one_line_naming_it(tmp_path, fleet_project):
    [group] = resolve_fleet(target_names="staging", root=fleet_project).groups
    env = {"CHOPS_DEPLOY_STAGE": "before"}
    with pytest.raises(WorkFailed, match=r"the hook local: sh -c 'echo no; exit 3' failed on here \(exit 3\): no"):
        run_hook(Hook(Where.LOCAL, ("sh", "-c", "echo no; exit 3")), group, env, tmp_path, SshOptions(),
                 lambda line: None, False)
    started = time.monotonic()
    with pytest.raises(WorkFailed, match="did not finish within 0.5s"):
        run_hook(Hook(Where.LOCAL, ("sleep", "30"), timeout=0.5), group, env, tmp_path, SshOptions(),
                 lambda line: None, False)
    assert time.monotonic() - started < 5
    with pytest.raises(WorkFailed, match="cannot run ./no-such-program"):
        run_hook(Hook(Where.LOCAL, ("./no-such-program",)), group, env, tmp_path, SshOptions(), lambda line: None,
                 False)
