"""ops.pipelines.cron against this user's real crontab (the real `crontab` command), and doctor under cron's environment.

The machine's crontab is saved first and restored afterwards, whatever happens. Tests that touch it are not
parallel-safe with each other, so they share one lock file.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import require
from tests.unit.test_cron import Fake  # the part of a Pipeline that scheduling reads


# Schedules that never fire (February 30/31), should a cron daemon be running while these entries exist.
PIPELINES = [Fake("alpha", "0 2 30 2 *"), Fake("beta", "*/10 * 31 2 *"), Fake("by_hand")]
FOREIGN = (
    "# written by another tool; chops must not touch a byte of it\n"
    'MAILTO=""\n'
    "*/5  *  *  *  *   /usr/bin/true --other-tool   # theirs\n"
    "0 3 * * 7 /usr/bin/true weekly\n"
    "  # an indented comment\n"
)


def crontab_l() -> tuple[int, str]:
    done = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    return done.returncode, done.stdout


def install(text: str) -> None:
    subprocess.run(["crontab", "-"], input=text, text=True, check=True, capture_output=True)


@pytest.fixture
def saved_crontab():
    """This user's crontab, saved and restored exactly (or removed again if there was none)."""
    require(shutil.which("crontab") is not None, "cron is not installed (apt-get install cron)")
    with open(Path(tempfile.gettempdir()) / "chops-crontab-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        code, text = crontab_l()
        had = code == 0
        try:
            yield text if had else None
        finally:
            if had:
                install(text)
            else:
                subprocess.run(["crontab", "-r"], capture_output=True)
            code_after, text_after = crontab_l()
            assert (code_after == 0, text_after) == (had, text), "the crontab was not restored"


def test_schedule_unschedule_round_trip_keeps_others_lines_exactly(saved_crontab, settings):
    from ops.pipelines import cron

    before = (saved_crontab or "") + FOREIGN
    install(before)
    assert crontab_l() == (0, before)

    plan = cron.plan(settings, PIPELINES, all=True)
    assert [(c.action, c.pipeline) for c in plan.changes] == [("add", "alpha"), ("add", "beta")]
    cron.apply(plan)
    code, scheduled = crontab_l()
    assert scheduled == before + "".join(e.line() + "\n" for e in cron.render(settings, PIPELINES))

    again = cron.plan(settings, PIPELINES, all=True)
    assert not again.changed and [c.action for c in again.changes] == ["unchanged", "unchanged"]
    cron.apply(again)
    assert crontab_l() == (0, scheduled)

    rows = cron.installed_vs_expected(settings, PIPELINES)
    assert {r["pipeline"]: r["state"] for r in rows} == {"alpha": "ok", "beta": "ok", "by_hand": "not scheduled"}

    cron.apply(cron.unschedule(settings, PIPELINES, all=True))
    assert crontab_l() == (0, before)


def test_round_trip_from_no_crontab_leaves_no_crontab(saved_crontab, settings):
    from ops.pipelines import cron

    subprocess.run(["crontab", "-r"], capture_output=True)
    cron.apply(cron.plan(settings, PIPELINES, names=["alpha"]))
    assert crontab_l()[1].count("\n") == 1
    cron.apply(cron.unschedule(settings, PIPELINES, names=["alpha"]))
    code, text = crontab_l()
    assert (code, text) == (1, "")  # "no crontab for <user>", as before


def test_removed_pipeline_entry_is_removed_by_all(saved_crontab, settings):
    from ops.pipelines import cron

    install(FOREIGN)
    cron.apply(cron.plan(settings, PIPELINES, all=True))
    cron.apply(cron.plan(settings, PIPELINES[1:], all=True))  # alpha was deleted from pipelines/
    assert crontab_l()[1] == FOREIGN + cron.render(settings, PIPELINES[1:])[0].line() + "\n"
    cron.apply(cron.unschedule(settings, [], all=True))
    assert crontab_l()[1] == FOREIGN


def test_a_deploys_pause_stands_until_the_entries_are_installed_again(saved_crontab, settings):
    """A deploy killed between pausing cron and scheduling again leaves no entries: health fails (a fresh install
    would only warn) until `pipeline.schedule --all` ends the pause."""
    from ops.pipelines import cron
    from ops.runtime import health
    from ops.deploy.on_target import pause

    install(FOREIGN)
    cron.apply(cron.plan(settings, PIPELINES, all=True))
    assert health.cron_result(cron.installed_vs_expected(settings, PIPELINES), paused=cron.paused(settings))[
        "status"] in ("pass", "warn")  # warn: no cron daemon in this container
    answer = pause(settings, timeout=0, unschedule=True)  # what the deploy runs on the target; then it is killed
    assert answer["unscheduled"] == 2 and crontab_l()[1] == FOREIGN
    assert cron.paused(settings)["by"] == "a deploy"
    verdict = health.cron_result(cron.installed_vs_expected(settings, PIPELINES), paused=cron.paused(settings))
    assert verdict["status"] == "fail" and "not installed again" in verdict["reason"]
    cron.apply(cron.plan(settings, PIPELINES, all=True))
    assert cron.end_pause(settings) is True and cron.paused(settings) is None
    assert cron.end_pause(settings) is False
    cron.apply(cron.unschedule(settings, [], all=True))
    assert crontab_l()[1] == FOREIGN


def test_schedule_all_from_the_command_line_ends_a_pause(saved_crontab, run_inv, cli_var):
    install(FOREIGN)
    pause_file = Path(cli_var) / "run" / "cron.paused"
    pause_file.parent.mkdir(parents=True, exist_ok=True)
    pause_file.write_text('{"by": "a deploy", "since": "2026-11-27 00:30:00 UTC"}')
    check = run_inv("proc.check", "--json")
    cron_check = next(c for c in json.loads(check.stdout)["checks"] if c["name"] == "cron")
    assert cron_check["status"] == "fail" and "removed by a deploy" in cron_check["reason"]
    dry = run_inv("pipeline.schedule", "--all", "--dry-run")
    assert dry.returncode == 0 and pause_file.exists()  # a dry run changes nothing
    done = run_inv("pipeline.schedule", "--all")
    assert done.returncode == 0, done.stderr
    assert not pause_file.exists()
    run_inv("pipeline.unschedule", "--all")
    assert crontab_l()[1] == FOREIGN


# --- doctor: cron's bare environment --------------------------------------------------------------------------------

STAND_IN = """#!/bin/sh
# a stand-in for the venv's inv: records how cron's command called it
{{ echo "cwd=$(pwd)"; echo "args=$*"; env | sort; }} > "{record}"
echo "first line"
echo "{last}"
exit {code}
"""


def stand_in(bin_dir: Path, record: Path, code: int = 0, last: str = "dry run ok") -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "inv"
    script.write_text(STAND_IN.format(record=record, code=code, last=last))
    script.chmod(0o755)


def test_doctor_runs_the_cron_command_in_cron_environment_with_dry_run(settings, tmp_path, monkeypatch):
    from ops.pipelines import cron_doctor

    settings = settings.with_overrides(paths__logs=str(tmp_path / "log"))
    monkeypatch.setenv("CHOPS_SOMETHING_FROM_MY_SHELL", "must not leak")
    bin_dir, record = tmp_path / "venv bin", tmp_path / "record.txt"
    stand_in(bin_dir, record)
    [row] = cron_doctor.doctor(settings, PIPELINES, names=["alpha"], bin_dir=bin_dir,
                               environment={"CHOPS_PATHS__VAR": str(tmp_path / "var")})
    assert (row["pipeline"], row["status"], row["exit_code"], row["last_line"]) == ("alpha", "ok", 0, "dry run ok")
    seen = record.read_text().splitlines()
    home = os.path.expanduser("~")
    assert f"cwd={settings.root}" in seen  # the command cd's itself: cron starts it in $HOME
    assert "args=pipeline.run alpha --date yesterday --trigger cron --dry-run" in seen
    env = dict(line.split("=", 1) for line in seen if "=" in line and not line.startswith(("cwd=", "args=")))
    assert env["PATH"] == "/usr/bin:/bin" and env["HOME"] == home and env["SHELL"] == "/bin/sh"
    assert env["CHOPS_ENV"] == "test" and env["CHOPS_PATHS__VAR"] == str(tmp_path / "var")
    assert "CHOPS_SOMETHING_FROM_MY_SHELL" not in env and "VIRTUAL_ENV" not in env
    assert (tmp_path / "log" / "cron").is_dir() and not (tmp_path / "log" / "cron" / "alpha.log").exists()
    assert row["command"].endswith("--trigger cron --dry-run 2>&1") and ">>" not in row["command"]


def test_doctor_reports_a_failing_command_with_its_last_line(settings, tmp_path):
    from ops.pipelines import cron_doctor

    settings = settings.with_overrides(paths__logs=str(tmp_path / "log"))
    stand_in(tmp_path / "bin", tmp_path / "record.txt", code=2, last="error: unknown pipeline 'alpha'")
    rows = cron_doctor.doctor(settings, PIPELINES, bin_dir=tmp_path / "bin")
    assert [(r["pipeline"], r["status"], r["exit_code"], r["last_line"]) for r in rows] == [
        ("alpha", "failed", 2, "error: unknown pipeline 'alpha'"),
        ("beta", "failed", 2, "error: unknown pipeline 'alpha'"),
    ]
    missing = cron_doctor.doctor(settings, PIPELINES, names=["alpha"], bin_dir=tmp_path / "no-venv" / "bin")
    assert missing[0]["status"] == "failed" and missing[0]["exit_code"] == 127
    assert "not found" in missing[0]["last_line"]


# --- the tasks, through the real inv ---------------------------------------------------------------------------------

def test_tasks_from_the_command_line(saved_crontab, run_inv):
    install(FOREIGN)
    neither = run_inv("pipeline.schedule")
    assert neither.returncode == 2 and neither.stderr.strip() == (
        "error: name pipelines or use --all (e.g. --name events_ingest, or --all)")
    unknown = run_inv("pipeline.schedule", "--name", "no_such_pipeline")
    assert unknown.returncode == 2 and "unknown pipeline 'no_such_pipeline'" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    dry = run_inv("pipeline.schedule", "--all", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert crontab_l() == (0, FOREIGN)
    added = [line[1:] for line in dry.stdout.splitlines() if line.startswith("+") and not line.startswith("+++")]

    done = run_inv("pipeline.schedule", "--all", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert [c["new"] for c in plan["changes"] if c["action"] == "add"] == added
    assert crontab_l() == (0, FOREIGN + "".join(line + "\n" for line in added))

    again = run_inv("pipeline.schedule", "--all")
    assert again.returncode == 0 and "the crontab was not changed" in again.stderr, again.stderr
    assert "CHOPS_PATHS__VAR set in this shell will not reach cron jobs" in again.stderr

    shown = run_inv("pipeline.crontab", "--json")
    assert shown.returncode == 0, shown.stderr
    states = {r["state"] for r in json.loads(shown.stdout)["entries"]}
    assert states <= {"ok", "not scheduled"}, states
    table = run_inv("pipeline.crontab")
    assert table.returncode == 0 and "missing" not in table.stderr, table.stderr

    undo_dry = run_inv("pipeline.unschedule", "--all", "--dry-run")
    assert undo_dry.returncode == 0 and [line[1:] for line in undo_dry.stdout.splitlines()
                                         if line.startswith("-") and not line.startswith("---")] == added
    assert crontab_l() == (0, FOREIGN + "".join(line + "\n" for line in added))
    undo = run_inv("pipeline.unschedule", "--all")
    assert undo.returncode == 0, undo.stderr
    assert crontab_l() == (0, FOREIGN)


def test_mailto_and_the_report_entry_in_the_real_crontab(saved_crontab, settings):
    """[alerts] mailto and [report] schedule through the real `crontab` command: the MAILTO line governs this
    project's entries only (the others keep their own MAILTO=""), and everything goes again on unschedule."""
    from crontab import CronTab

    from ops.pipelines import cron

    configured = settings.with_overrides(alerts__mailto="ops@example.com", report__schedule="0 7 30 2 *")
    before = (saved_crontab or "") + FOREIGN
    install(before)
    cron.apply(cron.plan(configured, PIPELINES, all=True))
    code, text = crontab_l()
    entries = cron.render(configured, PIPELINES)
    assert [e.pipeline for e in entries] == ["alpha", "beta", cron.REPORT]
    assert "inv report >> " in entries[-1].command.replace("'", "")
    mark = f"# {cron.tag(configured, 'mailto')} - "
    assert text.startswith(before) and text[len(before):].startswith(mark)
    in_order = sorted(entries, key=lambda e: e.pipeline)  # as added: by name
    assert text.endswith("\nMAILTO=ops@example.com\n" + "".join(e.line() + "\n" for e in in_order))
    mailto, seen = None, {}
    for job in CronTab(user=True):  # as cron reads it: each job under the MAILTO last set above it
        mailto = dict(job.env).get("MAILTO", mailto)
        seen[job.comment] = mailto
    assert {seen[e.comment] for e in entries} == {"ops@example.com"}
    assert seen["theirs"] != "ops@example.com"
    assert {r["pipeline"]: r["state"] for r in cron.installed_vs_expected(configured, PIPELINES)} == {
        "alpha": "ok", "beta": "ok", "by_hand": "not scheduled", cron.REPORT: "ok"}
    cron.apply(cron.unschedule(configured, PIPELINES, all=True))
    assert crontab_l() == (0, before)
