"""ops.pipelines.cron without cron: rendered command lines, plans over in-memory crontabs, idempotence, others' lines kept."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
from crontab import CronTab

from ops.pipelines import cron, cron_doctor
from ops.core.errors import BadInput, WorkFailed

ROOT = Path("/srv/chops")
BIN = ROOT / ".venv" / "bin"


@dataclasses.dataclass
class Fake:
    """The part of ops.pipelines.Pipeline that scheduling reads."""

    name: str
    schedule: str | None = None
    description: str = ""
    cron_date: str = "yesterday"


def make_settings(root: Path = ROOT, env: str = "dev", **values):
    """Dev settings of a project at ``root`` (nothing read from the machine's .env or environment)."""
    from ops import ROOT as REAL_ROOT
    from ops.core.settings import load_settings

    base = load_settings(REAL_ROOT, environ={"CHOPS_ENV_FILE": str(REAL_ROOT / "tests" / "no-such.env")})
    merged = dict(base.values)
    merged.update({k.replace("__", "."): v for k, v in values.items()})
    return dataclasses.replace(base, env=env, root=root, env_file=root / ".env", values=merged)


SETTINGS = make_settings()
TAG = cron.tag(SETTINGS, "")  # "chops:<id>:"
PIPELINES = [Fake("events_ingest", "0 2 * * *"), Fake("daily_rollup", "30 3 * * *"), Fake("by_hand")]


def line(name: str, schedule: str, settings=SETTINGS) -> str:
    [entry] = cron.render(settings, [Fake(name, schedule)], bin_dir=BIN)
    return entry.line()


# Lines of other tools that python-crontab would re-render (whitespace, 7 -> 0, H/5 disabled, comments moved):
FOREIGN = (
    "# m h  dom mon dow   command\n"
    'MAILTO=""\n'
    "SHELL=/bin/bash\n"
    "\n"
    "*/5  *  *  *  *   /usr/bin/backup --quiet   # nightly-ish\n"
    "  # indented comment\n"
    "0 3 * * 7 /usr/bin/weekly\n"
    "@daily   /usr/bin/daily\n"
    "0 4 * * * date +\\%F > /tmp/d\n"
    "# 0 5 * * * a disabled job\n"
    "H/5 * * * * jenkins-style\n"
    "0 1 * * * echo '#notacomment'\n"
)


# --- render ---------------------------------------------------------------------------------------------------------

RUN = "pipeline.run events_ingest --date yesterday --trigger cron"


@pytest.mark.parametrize("settings, kwargs, pipeline, expected", [
    pytest.param(SETTINGS, {}, Fake("events_ingest", "0 2 * * *"),
                 "cd /srv/chops && mkdir -p /srv/chops/var/log/cron && /srv/chops/.venv/bin/inv " + RUN
                 + " >> /srv/chops/var/log/cron/events_ingest.log 2>&1", id="dev"),
    pytest.param(make_settings(env="prod"), {}, Fake("events_ingest", "0 2 * * *"),
                 "cd /srv/chops && mkdir -p /srv/chops/var/log/cron && CHOPS_ENV=prod /srv/chops/.venv/bin/inv "
                 + RUN + " >> /srv/chops/var/log/cron/events_ingest.log 2>&1", id="prod-sets-CHOPS_ENV"),
    pytest.param(make_settings(Path("/srv/my chops's")), {"bin_dir": Path("/srv/my chops's/.venv/bin")},
                 Fake("events_ingest", "0 2 * * *"),
                 "cd '/srv/my chops'\"'\"'s' && mkdir -p '/srv/my chops'\"'\"'s/var/log/cron' && "
                 "'/srv/my chops'\"'\"'s/.venv/bin/inv' " + RUN
                 + " >> '/srv/my chops'\"'\"'s/var/log/cron/events_ingest.log' 2>&1", id="root-with-space-and-quote"),
    pytest.param(SETTINGS, {"environment": {"CHOPS_PATHS__VAR": "/tmp/a b", "X": "it's"}},
                 Fake("events_ingest", "0 2 * * *"),
                 "cd /srv/chops && mkdir -p /srv/chops/var/log/cron && CHOPS_PATHS__VAR='/tmp/a b' X='it'\"'\"'s' "
                 "/srv/chops/.venv/bin/inv " + RUN + " >> /srv/chops/var/log/cron/events_ingest.log 2>&1",
                 id="environment-mapping"),
    pytest.param(make_settings(paths__logs="/var/log/chops"), {}, Fake("events_ingest", "0 2 * * *"),
                 "cd /srv/chops && mkdir -p /var/log/chops/cron && /srv/chops/.venv/bin/inv " + RUN
                 + " >> /var/log/chops/cron/events_ingest.log 2>&1", id="absolute-logs"),
    pytest.param(SETTINGS, {}, Fake("events_ingest", "0 2 * * *", cron_date="today"),
                 "cd /srv/chops && mkdir -p /srv/chops/var/log/cron && /srv/chops/.venv/bin/inv pipeline.run "
                 "events_ingest --date today --trigger cron >> /srv/chops/var/log/cron/events_ingest.log 2>&1",
                 id="cron-date-today"),
    pytest.param(dataclasses.replace(SETTINGS, env_file=Path("/etc/chops.env")), {}, Fake("events_ingest", "0 2 * * *"),
                 "cd /srv/chops && mkdir -p /srv/chops/var/log/cron && CHOPS_ENV_FILE=/etc/chops.env "
                 "/srv/chops/.venv/bin/inv " + RUN + " >> /srv/chops/var/log/cron/events_ingest.log 2>&1",
                 id="non-default-env-file"),
])
def test_render_exact_command(settings, kwargs, pipeline, expected):
    [entry] = cron.render(settings, [pipeline], **{"bin_dir": BIN, **kwargs})
    assert entry.command == expected
    assert entry.schedule == "0 2 * * *"
    assert entry.comment == f"chops:{cron.project_id(settings)}:events_ingest"
    assert entry.line() == f"0 2 * * * {expected} # {entry.comment}"


def test_render_only_scheduled_pipelines_by_name_from_any_collection():
    names = ["daily_rollup", "events_ingest"]
    assert [e.pipeline for e in cron.render(SETTINGS, PIPELINES, bin_dir=BIN)] == names
    as_dict = {p.name: p for p in PIPELINES}
    assert [e.pipeline for e in cron.render(SETTINGS, as_dict, bin_dir=BIN)] == names

    class Registry:
        pipelines = as_dict

    assert [e.pipeline for e in cron.render(SETTINGS, Registry(), bin_dir=BIN)] == names


def test_render_defaults_to_the_running_venv_and_normalises_the_schedule():
    [entry] = cron.render(SETTINGS, [Fake("p", " */15  *  * * 1-5 ")])
    assert entry.schedule == "*/15 * * * 1-5"
    assert f"{cron.bin_dir_default()}/inv pipeline.run p " in entry.command
    assert entry.command.startswith("cd /srv/chops && ")  # nothing relies on cron's cwd ($HOME) or PATH


def test_percent_is_escaped_in_the_crontab_line():
    [entry] = cron.render(make_settings(Path("/srv/100%")), [Fake("p", "@daily")], bin_dir=BIN)
    assert "%" in entry.command and "\\%" not in entry.command
    assert entry.line().startswith("@daily cd /srv/100\\% && ")
    assert cron.installed(make_settings(Path("/srv/100%")), entry.line() + "\n")[0].command == entry.command


def test_project_id_differs_between_checkouts():
    assert cron.project_id(SETTINGS) == cron.project_id(make_settings(Path("/srv/chops")))
    assert cron.project_id(SETTINGS) != cron.project_id(make_settings(Path("/srv/chops2")))
    assert TAG == f"chops:{cron.project_id(SETTINGS)}:"


@pytest.mark.parametrize("call, message", [
    pytest.param(lambda: cron.render(SETTINGS, PIPELINES, environment={"BAD-NAME": "x"}), "not valid in a shell",
                 id="bad-variable-name"),
    pytest.param(lambda: cron.render(SETTINGS, PIPELINES, environment={"X": "a\nb"}), "line break", id="newline-value"),
    pytest.param(lambda: cron.render(make_settings(Path("/srv/a\nb")), PIPELINES), "line break", id="newline-root"),
    pytest.param(lambda: cron.render(SETTINGS, [Fake("p", "* * * *")]), "invalid cron schedule", id="four-fields"),
    pytest.param(lambda: cron.render(SETTINGS, [Fake("p", "* * * * * # x")]), "invalid cron schedule",
                 id="hash-in-schedule"),
    pytest.param(lambda: cron.render(SETTINGS, [Fake("p q", "* * * * *")]), "cron tag", id="bad-pipeline-name"),
    pytest.param(lambda: cron.plan(SETTINGS, PIPELINES, crontab=CronTab(tab="")), "name pipelines or use --all",
                 id="neither-names-nor-all"),
    pytest.param(lambda: cron.plan(SETTINGS, PIPELINES, names=["events_ingest"], all=True, crontab=CronTab(tab="")),
                 "not both", id="names-and-all"),
    pytest.param(lambda: cron.plan(SETTINGS, PIPELINES, names=["events_ingst"], crontab=CronTab(tab="")),
                 "unknown pipeline 'events_ingst' (did you mean events_ingest?)", id="unknown-name"),
    pytest.param(lambda: cron.plan(SETTINGS, PIPELINES, names="by_hand", crontab=CronTab(tab="")), "has no schedule",
                 id="unscheduled-name"),
    pytest.param(lambda: cron.unschedule(SETTINGS, PIPELINES, names=["nope"], crontab=CronTab(tab="")),
                 "unknown pipeline 'nope'", id="unschedule-unknown"),
    pytest.param(lambda: cron_doctor.doctor(SETTINGS, PIPELINES, names=["by_hand"]), "has no schedule", id="doctor-unscheduled"),
])
def test_bad_input(call, message):
    with pytest.raises(BadInput) as err:
        call()
    assert message in err.value.line() and "\n" not in err.value.line()


# --- plan and apply -------------------------------------------------------------------------------------------------

def schedule_all(text: str, pipelines=PIPELINES, settings=SETTINGS, **kwargs):
    tab = CronTab(tab=text)
    plan = cron.plan(settings, pipelines, all=True, crontab=tab, bin_dir=BIN, **kwargs)
    cron.apply(plan, tab)
    return plan, tab.intab


def test_first_schedule_appends_entries_after_others_lines_kept_byte_for_byte():
    plan, after = schedule_all(FOREIGN)
    assert [(c.action, c.pipeline) for c in plan.changes] == [("add", "daily_rollup"), ("add", "events_ingest")]
    assert after == FOREIGN + line("daily_rollup", "30 3 * * *") + "\n" + line("events_ingest", "0 2 * * *") + "\n"
    assert plan.summary() == "2 added, 0 changed, 0 removed, 0 unchanged"


def test_schedule_twice_gives_the_same_text_and_reports_unchanged():
    first, after_one = schedule_all(FOREIGN)
    second, after_two = schedule_all(after_one)
    assert after_two == after_one
    assert not second.changed and second.diff() == []
    assert [c.action for c in second.changes] == ["unchanged", "unchanged"]


@pytest.mark.parametrize("foreign", [
    pytest.param(FOREIGN, id="typical"),
    pytest.param("", id="empty"),
    pytest.param("0 1 * * * /usr/bin/no-final-newline", id="no-final-newline"),
    pytest.param("0 1 * * * /usr/bin/crlf\r\n# comment\r\n", id="crlf"),
    pytest.param("\n\n# only comments\n\n", id="blank-lines"),
])
def test_schedule_then_unschedule_restores_the_text_exactly(foreign):
    _, scheduled = schedule_all(foreign)
    assert foreign.rstrip("\n") in scheduled
    tab = CronTab(tab=scheduled)
    removal = cron.unschedule(SETTINGS, PIPELINES, all=True, crontab=tab)
    cron.apply(removal, tab)
    expected = foreign if foreign.endswith("\n") or not foreign else foreign + "\n"
    assert tab.intab == expected
    assert [c.action for c in removal.changes] == ["remove", "remove"]


def test_change_replaces_the_line_in_place():
    old = line("events_ingest", "0 1 * * *")
    text = "# before\n" + old + "\n# after\n"
    plan, after = schedule_all(text, [Fake("events_ingest", "0 2 * * *")])
    [change] = plan.changes
    assert (change.action, change.old, change.new) == ("change", old, line("events_ingest", "0 2 * * *"))
    assert after == "# before\n" + line("events_ingest", "0 2 * * *") + "\n# after\n"


def test_change_when_the_command_differs():
    text = line("events_ingest", "0 2 * * *") + "\n"
    plan, after = schedule_all(text, [Fake("events_ingest", "0 2 * * *")], environment={"CHOPS_PATHS__VAR": "/v"})
    assert [c.action for c in plan.changes] == ["change"]
    assert "CHOPS_PATHS__VAR=/v " in after and after.count("\n") == 1


def test_all_removes_entries_of_removed_and_unscheduled_pipelines_and_duplicates():
    text = (FOREIGN + line("gone", "0 0 * * *") + "\n" + line("by_hand", "0 0 * * *") + "\n"
            + line("events_ingest", "0 2 * * *") + "\n" + line("events_ingest", "0 2 * * *") + "\n")
    plan, after = schedule_all(text)
    assert sorted((c.action, c.pipeline) for c in plan.changes) == [
        ("add", "daily_rollup"), ("remove", "by_hand"), ("remove", "events_ingest"), ("remove", "gone"),
        ("unchanged", "events_ingest")]
    assert after == FOREIGN + line("events_ingest", "0 2 * * *") + "\n" + line("daily_rollup", "30 3 * * *") + "\n"


def test_names_touch_only_the_named_pipelines():
    text = line("gone", "0 0 * * *") + "\n" + line("events_ingest", "0 1 * * *") + "\n"
    tab = CronTab(tab=text)
    plan = cron.plan(SETTINGS, PIPELINES, names=["daily_rollup"], crontab=tab, bin_dir=BIN)
    assert [(c.action, c.pipeline) for c in plan.changes] == [("add", "daily_rollup")]
    assert plan.after == text + line("daily_rollup", "30 3 * * *") + "\n"
    # a pipeline that is gone can still be named, to remove its entry; "a,b" works like two names
    gone = cron.plan(SETTINGS, PIPELINES, names=["gone,events_ingest"], crontab=tab, bin_dir=BIN)
    assert [(c.action, c.pipeline) for c in gone.changes] == [("change", "events_ingest"), ("remove", "gone")]


def test_other_checkouts_and_commented_out_entries_are_not_ours():
    other = make_settings(Path("/srv/other-chops"))
    theirs = line("events_ingest", "0 2 * * *", settings=other)
    disabled = "# " + line("events_ingest", "0 2 * * *")
    text = theirs + "\n" + disabled + "\n"
    plan, after = schedule_all(text)
    assert after == text + line("daily_rollup", "30 3 * * *") + "\n" + line("events_ingest", "0 2 * * *") + "\n"
    tab = CronTab(tab=after)
    cron.apply(cron.unschedule(SETTINGS, [], all=True, crontab=tab), tab)
    assert tab.intab == text


def test_unschedule_by_name_keeps_the_others():
    _, text = schedule_all(FOREIGN)
    tab = CronTab(tab=text)
    plan = cron.unschedule(SETTINGS, PIPELINES, names=["events_ingest"], crontab=tab)
    cron.apply(plan, tab)
    assert tab.intab == FOREIGN + line("daily_rollup", "30 3 * * *") + "\n"
    nothing = cron.unschedule(SETTINGS, PIPELINES, names=["events_ingest"], crontab=tab)
    assert nothing.changes == () and not nothing.changed


def test_dry_run_diff_shows_plus_and_minus_lines():
    text = "# mine\n" + line("events_ingest", "0 1 * * *") + "\n"
    plan = cron.plan(SETTINGS, PIPELINES, all=True, crontab=CronTab(tab=text), bin_dir=BIN)
    diff = plan.diff()
    assert "-" + line("events_ingest", "0 1 * * *") in diff
    assert "+" + line("events_ingest", "0 2 * * *") in diff
    assert "+" + line("daily_rollup", "30 3 * * *") in diff
    assert not any(d.startswith(("-#", "+#")) for d in diff)
    assert plan.as_dict()["summary"] == "1 added, 1 changed, 0 removed, 0 unchanged"


def test_apply_refuses_when_the_crontab_changed_since_the_plan():
    tab = CronTab(tab=FOREIGN)
    plan = cron.plan(SETTINGS, PIPELINES, all=True, crontab=tab, bin_dir=BIN)
    tab.intab = FOREIGN + "0 0 * * * /usr/bin/someone-else\n"
    with pytest.raises(WorkFailed, match="changed since it was read"):
        cron.apply(plan, tab)
    assert tab.intab == FOREIGN + "0 0 * * * /usr/bin/someone-else\n"


def test_apply_refreshes_the_crontab_object():
    tab = CronTab(tab=FOREIGN)
    cron.apply(cron.plan(SETTINGS, PIPELINES, all=True, crontab=tab, bin_dir=BIN), tab)
    found = tab.find_comment(re.compile("^" + re.escape(TAG)))
    assert sorted(job.comment for job in found) == [TAG + "daily_rollup", TAG + "events_ingest"]


# --- installed vs expected ------------------------------------------------------------------------------------------

def test_installed_vs_expected_states():
    pipelines = PIPELINES + [Fake("new_one", "0 5 * * *")]
    text = (FOREIGN + line("events_ingest", "0 2 * * *") + "\n" + line("daily_rollup", "0 0 * * *") + "\n"
            + line("gone", "0 0 * * *") + "\n" + line("events_ingest", "0 2 * * *") + "\n")
    rows = cron.installed_vs_expected(SETTINGS, pipelines, CronTab(tab=text), bin_dir=BIN)
    assert [(r["pipeline"], r["state"], r["expected"], r["installed"]) for r in rows] == [
        ("by_hand", "not scheduled", "", ""),
        ("daily_rollup", "differs", "30 3 * * *", "0 0 * * *"),
        ("events_ingest", "ok", "0 2 * * *", "0 2 * * *"),
        ("events_ingest", "duplicate", "0 2 * * *", "0 2 * * *"),
        ("gone", "stale", "", "0 0 * * *"),
        ("new_one", "missing", "0 5 * * *", ""),
    ]


# --- the task layer -------------------------------------------------------------------------------------------------

def test_tasks_have_help_for_every_flag_and_a_docstring():
    from ops.cli.pipeline_schedule import TASKS

    assert [t.name for t in TASKS] == ["schedule", "unschedule", "crontab", "doctor", "alert-test"]
    for t in TASKS:
        assert (t.__doc__ or "").strip(), t.name
        params = list(inspect.signature(t.body).parameters)[1:]
        assert [p for p in params if p not in t.help] == [], t.name


@pytest.mark.parametrize("which", ["schedule", "unschedule"])
def test_schedule_without_names_or_all_exits_2(which):
    from invoke import Context, Exit

    from ops.cli import pipeline_schedule

    with pytest.raises(Exit) as err:
        getattr(pipeline_schedule, which)(Context())
    assert err.value.code == 2 and "name pipelines or use --all" in str(err.value.message)


def test_missing_crontab_command_names_the_package(monkeypatch):
    import crontab as python_crontab

    monkeypatch.setattr(python_crontab, "CRON_COMMAND", "/nonexistent/crontab")
    with pytest.raises(WorkFailed) as err:
        cron.user_crontab()
    assert "apt-get install cron" in err.value.line()


def test_settings_from_the_shell_that_cron_would_not_see_are_named():
    from ops import ROOT as REAL_ROOT
    from ops.core.settings import load_settings

    settings = load_settings(REAL_ROOT, environ={"CHOPS_ENV": "test", "CHOPS_PATHS__VAR": "/tmp/v",
                                                 "CLICKHOUSE_URL": "", "CHOPS_ENV_FILE": "/nonexistent.env"})
    assert cron.shell_only_variables(settings) == ["CHOPS_PATHS__VAR", "CLICKHOUSE_URL"]
    assert cron.shell_only_variables(settings, {"CHOPS_PATHS__VAR": "/tmp/v"}) == ["CLICKHOUSE_URL"]
    assert cron.shell_only_variables(SETTINGS) == []


def test_all_refuses_while_a_pipeline_module_is_broken():
    class Registry:
        pipelines = {p.name: p for p in PIPELINES}
        errors = {"pipelines.daily_rollup": "daily_rollup.py (line 3): SyntaxError: invalid syntax"}

    text = line("daily_rollup", "30 3 * * *") + "\n"
    with pytest.raises(WorkFailed) as err:
        cron.plan(SETTINGS, Registry(), all=True, crontab=CronTab(tab=text), bin_dir=BIN)
    assert "did not load" in err.value.line() and "SyntaxError" in err.value.line()
    named = cron.plan(SETTINGS, Registry(), names=["events_ingest"], crontab=CronTab(tab=text), bin_dir=BIN)
    assert [(c.action, c.pipeline) for c in named.changes] == [("add", "events_ingest")]


# --- [alerts] mailto and [report] schedule -----------------------------------------------------------------------------

MAILED = make_settings(alerts__mailto="ops@example.com,oncall@example.com")


def test_mailto_puts_this_projects_entries_in_a_block_of_their_own_at_the_end():
    mine = line("events_ingest", "0 2 * * *")
    text = line("daily_rollup", "30 3 * * *") + "\n" + FOREIGN  # an entry of ours above others' lines
    plan = cron.plan(MAILED, PIPELINES, all=True, crontab=CronTab(tab=text), bin_dir=BIN)
    marker = f"# {TAG}mailto - cron mails the output of this project's entries below to MAILTO ([alerts] mailto); " \
             "add your own lines above it"
    assert plan.after == (FOREIGN + marker + "\nMAILTO=ops@example.com,oncall@example.com\n"
                          + line("daily_rollup", "30 3 * * *") + "\n" + mine + "\n")
    # what cron (and python-crontab) read: our entries have our MAILTO, the others keep theirs
    effective, jobs = {}, {}
    for job in CronTab(tab=plan.after):  # python-crontab gives each job the variables set just before it
        effective.update(job.env)
        jobs[job.comment] = effective.get("MAILTO")
    assert jobs[f"{TAG}events_ingest"] == jobs[f"{TAG}daily_rollup"] == "ops@example.com,oncall@example.com"
    assert jobs["nightly-ish"] != jobs[f"{TAG}daily_rollup"]
    again = cron.plan(MAILED, PIPELINES, all=True, crontab=CronTab(tab=plan.after), bin_dir=BIN)
    assert not again.changed and [c.action for c in again.changes] == ["unchanged", "unchanged"]
    # no mailto any more: the marker and its MAILTO line go, the entries stay, others' lines are as they were
    off = cron.plan(SETTINGS, PIPELINES, all=True, crontab=CronTab(tab=plan.after), bin_dir=BIN)
    assert off.after == FOREIGN + line("daily_rollup", "30 3 * * *") + "\n" + mine + "\n"
    assert off.summary().endswith("2 unchanged; the MAILTO block changed")
    # removing every entry removes the block
    gone = cron.unschedule(MAILED, PIPELINES, all=True, crontab=CronTab(tab=plan.after))
    assert gone.after == FOREIGN


@pytest.mark.parametrize("bad", ["ops@example.com\nSHELL=/bin/evil", "a b", "\"ops\"", "-f", "x#y"])
def test_a_mailto_cron_cannot_hold_is_a_config_error(bad):
    from ops.core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        cron.plan(make_settings(alerts__mailto=bad), PIPELINES, all=True, crontab=CronTab(tab=""), bin_dir=BIN)
    assert "alerts.mailto" in err.value.line() and err.value.exit_code == 2


def test_report_schedule_adds_one_tagged_entry_that_runs_inv_report():
    reported = make_settings(report__schedule="15  6 * * *")
    plan = cron.plan(reported, PIPELINES, all=True, crontab=CronTab(tab=FOREIGN), bin_dir=BIN)
    [entry] = [c for c in plan.changes if c.pipeline == cron.REPORT]
    assert entry.action == "add" and entry.schedule == "15 6 * * *"
    assert entry.new == ("15 6 * * * cd /srv/chops && mkdir -p /srv/chops/var/log/cron && /srv/chops/.venv/bin/inv "
                         f"report >> /srv/chops/var/log/cron/_report.log 2>&1 # {TAG}_report")
    found = cron.installed_vs_expected(reported, PIPELINES, crontab=CronTab(tab=plan.after), bin_dir=BIN)
    rows = {r["pipeline"]: r["state"] for r in found}
    assert rows[cron.REPORT] == "ok"
    # naming pipelines leaves the report's entry alone; --all with no schedule removes it, like a pipeline's
    named = cron.plan(SETTINGS, PIPELINES, names=["events_ingest"], crontab=CronTab(tab=plan.after), bin_dir=BIN)
    assert cron.REPORT not in {c.pipeline for c in named.changes}
    off = cron.plan(SETTINGS, PIPELINES, all=True, crontab=CronTab(tab=plan.after), bin_dir=BIN)
    assert [(c.action, c.pipeline) for c in off.changes if c.pipeline == cron.REPORT] == [("remove", cron.REPORT)]
    from ops.core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        cron.plan(make_settings(report__schedule="every day"), PIPELINES, all=True, crontab=CronTab(tab=""),
                  bin_dir=BIN)
    assert "report.schedule" in err.value.line()
