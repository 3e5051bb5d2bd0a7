"""ops.runtime.health's verdicts, one pure function per check: each passes, warns or fails with the right reason."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta, timezone

import pytest

from ops.runtime import health

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)  # a Thursday


def test_verdict_is_healthy_only_without_failures():
    ok = health.result("a", "pass", "")
    warn = health.result("b", "warn", "")
    fail = health.result("c", "fail", "")
    assert health.verdict([ok, warn]) == {"healthy": True, "passed": 1, "warnings": 1, "failed": 0}
    assert health.verdict([ok, warn, fail])["healthy"] is False


# --- migrations -------------------------------------------------------------------------------------------------------

def row(mid, state, note=""):
    return {"id": mid, "state": state, "note": note}


def test_migrations_all_applied_pass():
    r = health.migrations_result([row("0001_a", "applied"), row("0002_b", "applied")])
    assert (r["status"], r["reason"]) == ("pass", "all 2 applied, none dirty or drifted")


@pytest.mark.parametrize("state, note, fragments", [
    ("pending", "", ["not applied: 0002_b", "inv db.migrate"]),
    ("dirty", "apply stopped after 1 of 2 statements", ["dirty: 0002_b (apply stopped after 1 of 2", "--resume"]),
    ("drifted", "file changed after it was applied", ["drifted: 0002_b (file changed after it was applied)"]),
], ids=["pending", "dirty", "drifted"])
def test_migrations_not_applied_dirty_or_drifted_fail(state, note, fragments):
    r = health.migrations_result([row("0001_a", "applied"), row("0002_b", state, note)])
    assert r["status"] == "fail"
    for fragment in fragments:
        assert fragment in r["reason"]


def test_migrations_validation_errors_fail_but_warnings_do_not():
    findings = [{"level": "warning", "check": "rollback", "migration": "0001_a", "message": "no rollback file"},
                {"level": "error", "check": "duplicate", "migration": "0001_a", "message": "number 0001 is used twice"}]
    r = health.migrations_result([row("0001_a", "applied")], findings)
    assert r["status"] == "fail" and r["reason"] == "number 0001 is used twice"
    assert health.migrations_result([row("0001_a", "applied")], findings[:1])["status"] == "pass"


def test_pipelines_that_do_not_load_fail():
    assert health.pipelines_result(["a", "b"], {})["status"] == "pass"
    r = health.pipelines_result(["a"], {"p.broken": "broken.py: SyntaxError: invalid syntax"})
    assert r["status"] == "fail" and "broken.py: SyntaxError" in r["reason"]


# --- cron -------------------------------------------------------------------------------------------------------------

def cron_row(pipeline, state, installed=""):
    return {"pipeline": pipeline, "state": state, "installed": installed}


def test_cron_nothing_installed_warns_so_a_fresh_install_is_healthy():
    r = health.cron_result([cron_row("a", "missing"), cron_row("b", "missing"), cron_row("c", "not scheduled")])
    assert r["status"] == "warn"
    assert "no cron entries" in r["reason"] and "inv pipeline.schedule --all" in r["reason"]


def test_cron_no_schedules_at_all_passes():
    assert health.cron_result([cron_row("a", "not scheduled")])["status"] == "pass"


@pytest.mark.parametrize("state", ["missing", "differs", "stale", "duplicate"])
def test_cron_entries_not_as_expected_fail(state):
    rows = [cron_row("a", "ok", "30 1 * * *"), cron_row("b", state, "" if state == "missing" else "0 2 * * *")]
    r = health.cron_result(rows)
    assert r["status"] == "fail" and f"b {state}" in r["reason"]


def test_cron_entry_of_a_broken_module_is_not_stale():
    rows = [cron_row("a", "ok", "30 1 * * *"), cron_row("broken", "stale", "0 2 * * *")]
    assert health.cron_result(rows, broken={"broken"})["status"] == "pass"


def test_cron_left_paused_by_a_deploy_fails_where_a_fresh_install_only_warns():
    rows = [cron_row("a", "missing"), cron_row("b", "missing")]
    pause = {"by": "a deploy", "since": "2026-11-27 00:30:00 UTC"}
    r = health.cron_result(rows, paused=pause)
    assert r["status"] == "fail"
    assert "removed by a deploy at 2026-11-27 00:30:00 UTC" in r["reason"] and "pipeline.schedule --all" in r["reason"]
    assert health.cron_result(rows)["status"] == "warn"
    # entries back as expected: a pause file left behind no longer matters
    assert health.cron_result([cron_row("a", "ok", "30 1 * * *")], paused=pause)["status"] == "pass"


def test_cron_as_expected_without_a_daemon_warns():
    rows = [cron_row("a", "ok", "30 1 * * *")]
    assert health.cron_result(rows, daemon_running=True)["status"] == "pass"
    r = health.cron_result(rows, daemon_running=False)
    assert r["status"] == "warn" and "no cron daemon" in r["reason"]


# --- freshness --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule, expected", [
    ("30 1 * * *", timedelta(days=1)),
    ("*/15 * * * *", timedelta(minutes=15)),
    ("0 * * * *", timedelta(hours=1)),
    ("0 9 * * 1-5", timedelta(days=3)),  # Friday to Monday
    ("@weekly", timedelta(days=7)),
])
def test_interval_is_the_longest_gap_between_firings(schedule, expected):
    assert health.interval(schedule, NOW) == expected


def runs(last_success=None, attempts=1, last_status="succeeded"):
    return {"attempts": attempts, "last_success": last_success, "last_status": last_status}


def test_fresh_when_the_last_success_is_younger_than_twice_the_interval():
    # the demo: a daily pipeline whose backfill of yesterday finished an hour ago
    r = health.freshness_result({"daily": "30 1 * * *"}, {"daily": runs(NOW - timedelta(hours=1))}, NOW)
    assert r["status"] == "pass" and "daily, 1h 0m ago" in r["reason"]
    r = health.freshness_result({"daily": "30 1 * * *"}, {"daily": runs(NOW - timedelta(hours=47))}, NOW)
    assert r["status"] == "pass"


def test_stale_when_the_last_success_is_older_than_twice_the_interval():
    r = health.freshness_result({"daily": "30 1 * * *", "hourly": "0 * * * *"},
                                {"daily": runs(NOW - timedelta(hours=49)), "hourly": runs(NOW - timedelta(minutes=30))},
                                NOW)
    assert r["status"] == "fail"
    assert "daily last succeeded 2d 1h ago, more than twice its 24h interval" in r["reason"]
    assert "hourly" not in r["reason"]


def test_weekday_schedule_is_not_stale_over_the_weekend():
    monday = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
    friday_run = datetime(2026, 11, 27, 9, 5, tzinfo=timezone.utc)
    r = health.freshness_result({"weekdays": "0 9 * * 1-5"}, {"weekdays": runs(friday_run)}, monday)
    assert r["status"] == "pass"


def test_never_run_warns_but_never_succeeded_fails():
    r = health.freshness_result({"new": "30 1 * * *"}, {}, NOW)
    assert r["status"] == "warn" and "never run: new" in r["reason"]
    r = health.freshness_result({"bad": "30 1 * * *"}, {"bad": runs(None, attempts=3, last_status="failed")}, NOW)
    assert r["status"] == "fail" and "bad has never succeeded (3 attempts, the last failed)" in r["reason"]


def test_freshness_without_schedules_passes():
    assert health.freshness_result({}, {}, NOW)["status"] == "pass"


def test_naive_timestamps_from_clickhouse_are_utc():
    naive = (NOW - timedelta(hours=1)).replace(tzinfo=None)
    assert health.freshness_result({"d": "30 1 * * *"}, {"d": runs(naive)}, NOW)["status"] == "pass"


# --- failed runs ------------------------------------------------------------------------------------------------------

DAY = date(2026, 11, 25)


def attempt(status, hours_ago, pipeline="events", day=DAY, error=""):
    return {"pipeline": pipeline, "partition": day, "status": status, "started_at": NOW - timedelta(hours=hours_ago),
            "error": error}


def test_no_failures_pass():
    r = health.failed_runs_result([attempt("succeeded", 2)], NOW)
    assert (r["status"], r["reason"]) == ("pass", "no failed runs in the last day")


def test_failure_retried_successfully_passes():
    r = health.failed_runs_result([attempt("failed", 3), attempt("succeeded", 2)], NOW)
    assert r["status"] == "pass" and "each retried successfully" in r["reason"]


@pytest.mark.parametrize("status", ["failed", "died"])
def test_failure_not_retried_fails(status):
    r = health.failed_runs_result([attempt("succeeded", 5), attempt(status, 3, error="check not_empty failed")], NOW)
    assert r["status"] == "fail"
    assert f"events 2026-11-25 {status} at 2026-11-26 09:00 UTC (check not_empty failed)" in r["reason"]
    assert "inv pipeline.run" in r["reason"]


def test_failure_of_another_day_is_not_retried_by_a_success_elsewhere():
    r = health.failed_runs_result([attempt("failed", 3), attempt("succeeded", 1, day=date(2026, 11, 24))], NOW)
    assert r["status"] == "fail"


def test_failure_older_than_a_day_is_not_counted():
    assert health.failed_runs_result([attempt("failed", 25)], NOW)["status"] == "pass"


def test_killed_and_being_retried_warn():
    r = health.failed_runs_result([attempt("killed", 3)], NOW)
    assert r["status"] == "warn" and "killed and not rerun" in r["reason"]
    r = health.failed_runs_result([attempt("failed", 3), attempt("running", 0.1)], NOW)
    assert r["status"] == "warn" and "being retried" in r["reason"]


# --- disk, locks, pid files -------------------------------------------------------------------------------------------

def test_disk_fails_below_the_threshold():
    usages = [{"what": "var", "free": 30 * 2 ** 30, "total": 100 * 2 ** 30}]
    r = health.disk_result(usages, 5)
    assert r["status"] == "pass" and r["reason"] == "var has 30.0% free (30.0 GiB of 100.0 GiB)"
    r = health.disk_result(usages, 100)
    assert r["status"] == "fail" and "below proc.min_free_disk_percent = 100" in r["reason"]


def test_stale_locks_fail_and_name_the_fix():
    assert health.locks_result([], None)["status"] == "pass"
    r = health.locks_result([{"what": "var/locks/x.lock", "reason": "left by pid 42 (inv x), which is gone"}], None)
    assert r["status"] == "fail" and "var/locks/x.lock left by pid 42" in r["reason"] and "inv proc.clean" in r["reason"]
    r = health.locks_result([], {"reason": "held by pid 42 (inv db.migrate) on h since s, which is gone"})
    assert r["status"] == "fail" and "the migration lock is held by pid 42" in r["reason"]
    r = health.locks_result([], None, not_checked="the database is busy")
    assert (r["status"], r["reason"]) == ("warn", "no stale lock files; the migration lock was not checked: "
                                                  "the database is busy")


def test_stale_pid_files_fail():
    assert health.pid_files_result([], 2)["reason"] == "2 chops processes running, no stale pid files"
    r = health.pid_files_result([{"what": "var/run/42.json", "reason": "pid 42 (pipeline.run a 2026-11-25) is gone"}], 0)
    assert r["status"] == "fail" and "var/run/42.json: pid 42" in r["reason"]


# --- JUnit XML --------------------------------------------------------------------------------------------------------

def test_junit_has_one_case_per_check_failures_as_failures_warnings_as_notes():
    results = [{**health.result("database", "pass", "reachable"), "seconds": 0.5},
               {**health.result("cron", "warn", "no cron entries"), "seconds": 0.0},
               {**health.result("disk", "fail", "var has 1.0% free"), "seconds": 0.01}]
    root = ET.fromstring(health.junit_xml(results, NOW).encode())
    suite = root.find("testsuite")
    assert suite.get("name") == "chops health"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "0")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["database", "cron", "disk"]
    assert cases["disk"].find("failure").get("message") == "var has 1.0% free"
    assert cases["cron"].find("failure") is None and cases["cron"].find("system-out").text == "warn: no cron entries"
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert properties == {"verdict": "unhealthy", "warnings": "cron"}


# --- issue 14: a day's state is its newest attempt; acknowledged and deleted pipelines' failures --------------------

def run(status, hours_ago, pipeline="events", day=DAY, run_id=None, attempt_no=1):
    return {**attempt(status, hours_ago, pipeline, day), "run_id": run_id or f"{status[:4]}{hours_ago:04}-run",
            "attempt": attempt_no}


def test_a_day_is_its_newest_attempt():
    newest = health.newest_attempts([run("failed", 3, attempt_no=1), run("succeeded", 2, attempt_no=2),
                                     run("failed", 5, day=date(2026, 11, 24))])
    assert {k: v["status"] for k, v in newest.items()} == {("events", DAY): "succeeded",
                                                         ("events", date(2026, 11, 24)): "failed"}


def test_several_failures_superseded_by_one_success_pass_and_count_each():
    r = health.failed_runs_result([run("failed", 5), run("died", 4), run("killed", 3), run("succeeded", 2)], NOW)
    assert (r["status"], r["reason"]) == ("pass", "3 failed runs in the last day, each retried successfully")


def test_a_failed_day_is_one_failure_however_many_attempts_failed():
    r = health.failed_runs_result([run("failed", 5, run_id="aaaaaaaa-1"), run("failed", 3, run_id="bbbbbbbb-2")], NOW)
    assert r["status"] == "fail" and r["reason"].startswith("1 day whose newest run failed in the last day: ")
    assert "run bbbbbbbb" in r["reason"] and "run aaaaaaaa" not in r["reason"]  # the newest names the day
    assert "inv proc.ack --run-id RUN" in r["reason"]


def test_an_acknowledged_failure_passes_until_the_day_fails_again():
    failed = run("failed", 3, run_id="aaaaaaaa-1")
    r = health.failed_runs_result([failed], NOW, acked={"aaaaaaaa-1"})
    assert (r["status"], r["reason"]) == ("pass", "1 failure acknowledged (inv pipeline.history shows by whom)")
    again = health.failed_runs_result([failed, run("failed", 1, run_id="bbbbbbbb-2")], NOW, acked={"aaaaaaaa-1"})
    assert again["status"] == "fail" and "run bbbbbbbb" in again["reason"]
    killed = health.failed_runs_result([run("killed", 3, run_id="k")], NOW, acked={"k"})
    assert killed["status"] == "pass"


def test_failures_of_a_pipeline_that_no_longer_exists_warn_naming_it():
    attempts = [run("failed", 3, pipeline="old_rollup"), run("died", 2, pipeline="old_rollup", day=date(2026, 11, 24)),
                run("succeeded", 2, pipeline="events")]
    r = health.failed_runs_result(attempts, NOW, known={"events"})
    assert r["status"] == "warn"
    assert r["reason"] == ("failed runs of pipelines that no longer exist: old_rollup (2 days) "
                           "(acknowledge them: inv proc.ack --pipeline old_rollup)")
    # without knowing which pipelines exist (the folder did not load) they are failures like any other
    assert health.failed_runs_result(attempts, NOW)["status"] == "fail"
    # a pipeline that exists still fails beside one that does not
    both = health.failed_runs_result(attempts + [run("failed", 1, pipeline="events", day=date(2026, 11, 23))], NOW,
                                     known={"events"})
    assert both["status"] == "fail" and "old_rollup" not in both["reason"]


def test_every_broken_module_is_named_with_its_error():
    r = health.pipelines_result(["a"], {"p.x": "x.py: calls sys.exit(3) when imported",
                                        "p.y": "y.py (line 2): ZeroDivisionError: division by zero"})
    assert r["status"] == "fail"
    assert r["reason"] == ("2 pipeline modules did not load: x.py: calls sys.exit(3) when imported; y.py (line 2): "
                           "ZeroDivisionError: division by zero (1 other pipeline loads and runs)")


def test_stale_files_whose_work_succeeded_since_pass_with_a_note():
    lock = {"what": "var/locks/pipeline-a-2026-11-25.lock", "reason": "left by pid 42 (inv x), which is gone",
            "superseded": "a 2026-11-25 has succeeded since"}
    r = health.locks_result([lock], None)
    assert r["status"] == "pass"
    assert r["reason"] == ("no stale locks; 1 lock file left by a process that died, whose work has succeeded since "
                           "(var/locks/pipeline-a-2026-11-25.lock: a 2026-11-25 has succeeded since; inv proc.clean "
                           "removes them)")
    pid = {"what": "var/run/42.json", "reason": "pid 42 (backfill plan p1) is gone",
           "superseded": "every partition of plan p1 has succeeded since"}
    assert health.pid_files_result([pid], 0)["status"] == "pass"
    assert health.pid_files_result([pid, {**pid, "what": "var/run/43.json", "superseded": None}], 0)["status"] == "fail"


def test_orphaned_staging_tables_warn():
    assert health.staging_result([]) == health.result("staging tables", "pass", "no orphaned staging tables")
    r = health.staging_result([{"what": "_chops_staging_a_20261125_deadbeef", "reason": "its run deadbeef died"}])
    assert r["status"] == "warn" and "_chops_staging_a_20261125_deadbeef (its run deadbeef died)" in r["reason"]
    assert "inv proc.clean" in r["reason"]
