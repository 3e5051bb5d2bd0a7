"""Reprocessing for real (issue 14, findings 2, 5 and 9): the ledger records the upstream runs each run read, so a
downstream day built before its upstream was rebuilt is stale, shown by backfill.counts and pipeline.list, separated
in a backfill's summary, and rebuilt by --reprocess stale; selection, out-of-range days and empty plans through
the real `inv`.
"""

import json
import shutil
import textwrap
from datetime import date, timedelta

import pytest

from tests.conftest import clean_environ, inv, pipeline_project, query, require

YESTERDAY = date.today() - timedelta(days=1)
DAYS = [YESTERDAY - timedelta(days=i) for i in range(2, -1, -1)]  # the last 3 days, oldest first

PIPELINES = '''
import os
from ops.pipelines.definition import checks, pipeline

@pipeline(name="numbers", target="numbers_t", checks=[checks.not_empty()])
def numbers(run):
    rows = int(os.environ.get("TEST_ROWS", "100"))
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number FROM numbers({rows})", run.params())

@pipeline(name="doubled", target="doubled_t", depends_on=["numbers"])
def doubled(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT day, n * 2 FROM numbers_t WHERE day = {{day:Date}}",
                   run.params())

@pipeline(name="summed", target="summed_t", depends_on=["doubled"])
def summed(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT day, sum(n) FROM doubled_t WHERE day = {{day:Date}} GROUP BY day",
                   run.params())

@pipeline(name="by_hand", target="numbers_t", depends_on=["numbers"], backfillable=False)
def by_hand(run):
    pass
'''


@pytest.fixture
def env(tmp_path):
    return pipeline_project(tmp_path, PIPELINES, tuple(
        f"CREATE TABLE {t} (day Date, n UInt64) ENGINE = MergeTree PARTITION BY day ORDER BY n"
        for t in ("numbers_t", "doubled_t", "summed_t")))


q = query


def ok(*args, env):
    result = inv(*args, env=env)
    assert result.returncode == 0, f"inv {' '.join(args)}: {result.stderr}"
    return result


def sums(env, table):
    return {r["day"]: r["s"] for r in q(env, f"SELECT toString(day) AS day, sum(n) AS s FROM {table} GROUP BY day")}


@pytest.mark.slow
def test_a_rebuilt_upstream_day_makes_its_downstream_stale_until_reprocess_stale(env):
    ok("backfill", "--days", "3", env=env)
    bumped = str(DAYS[1])
    # the ledger keeps the upstream run each run read
    [row] = q(env, f"SELECT toString(upstream['numbers']) AS read FROM run_ledger FINAL WHERE pipeline = 'doubled' "
                   f"AND partition = '{bumped}'")
    [numbers_run] = q(env, f"SELECT toString(run_id) AS id FROM run_ledger FINAL WHERE pipeline = 'numbers' "
                           f"AND partition = '{bumped}'")
    assert row["read"] == numbers_run["id"]

    # finding 5: rebuilding the upstream day with other data neither rebuilt nor flagged what was built from it
    ok("pipeline.run", "numbers", "--date", bumped, "--force", env={**env, "TEST_ROWS": "200"})
    counts = json.loads(ok("backfill.counts", "--days", "3", "--json", env=env).stdout)
    grid = {g["pipeline"]: g["days"] for g in counts["coverage"]}
    assert grid["doubled"][bumped] == "stale" and grid["numbers"][bumped] == "succeeded"
    assert grid["summed"][bumped] == "succeeded"  # it read doubled's run, which is still doubled's newest
    assert [(s["pipeline"], str(s["day"])) for s in counts["stale"]] == [("doubled", bumped)]
    assert "built from numbers run" in counts["stale"][0]["why"]
    table = ok("backfill.counts", "--days", "3", env=env)
    assert "1 stale" in table.stderr and "--reprocess stale" in table.stderr and "~" in table.stdout
    listing = {p["name"]: p for p in json.loads(ok("pipeline.list", "--json", env=env).stdout)["pipelines"]}
    assert listing["doubled"]["stale_days"] == [bumped] and listing["numbers"]["stale_days"] == []

    # a plain backfill has nothing to do, and its summary says what is stale
    plain = ok("backfill", "--days", "3", "--json", env=env)
    summary = {r["pipeline"]: r for r in json.loads(plain.stdout)["summary"]}
    assert (summary["doubled"]["stale"], summary["doubled"]["skipped"]) == (1, 2)
    assert "1 partition stale" in plain.stderr and "--reprocess stale" in plain.stderr

    fixed = ok("backfill", "--days", "3", "--reprocess", "stale", "--json", env=env)
    assert "2 partitions to run" in fixed.stderr  # doubled for the day, and summed, built from the doubled rebuilt
    summary = {r["pipeline"]: r for r in json.loads(fixed.stdout)["summary"]}
    assert (summary["doubled"]["done"], summary["summed"]["done"], summary["numbers"]["skipped"]) == (1, 1, 3)
    assert sums(env, "doubled_t")[bumped] == 2 * sum(range(200))
    assert sums(env, "summed_t")[bumped] == 2 * sum(range(200))
    assert json.loads(ok("backfill.counts", "--days", "3", "--json", env=env).stdout)["stale"] == []


@pytest.mark.slow
def test_a_backfill_that_rebuilds_an_upstream_day_rebuilds_its_downstream_too(env):
    ok("backfill", "--days", "3", env=env)
    gone = str(DAYS[0])
    ok("db.query", f"ALTER TABLE numbers_t DROP PARTITION ID '{DAYS[0]:%Y%m%d}'", env=env)
    result = ok("backfill", "--days", "3", "--dry-run", "--json", env=env)
    actions = {(p["pipeline"], str(p["day"])): p["action"] for p in json.loads(result.stdout)["partitions"]}
    assert actions[("numbers", gone)] == "run"  # its rows are gone: missing
    assert actions[("doubled", gone)] == "rebuild" and actions[("summed", gone)] == "rebuild"
    assert actions[("doubled", str(DAYS[1]))] == "skip (already succeeded)"
    ok("backfill", "--days", "3", env=env)
    assert json.loads(ok("backfill.counts", "--days", "3", "--json", env=env).stdout)["stale"] == []


@pytest.mark.parametrize("args, fragment", [
    (["backfill", "--days", "2", "--select", "numbrs"],
     "--select: unknown pipeline 'numbrs' (did you mean numbers? known: by_hand, doubled, numbers, summed)"),
    (["backfill", "--days", "2", "--jobs", ","], "--select ',' names no pipeline"),
    (["backfill", "--days", "2", "--select", "numbers", "--exclude", "nope"], "--exclude: unknown pipeline 'nope'"),
    (["backfill", "--days", "2", "--select", "by_hand"], "pipeline by_hand is not backfillable"),
    (["backfill", "--days", "2", "--reprocess", "some"], "--reprocess must be one of missing, failed, stale, all"),
    (["backfill", "--days", "2", "--reprocess", "stale", "--force"], "disagree"),
    (["backfill.counts", "--days", "2", "--select", "x+"], "unknown pipeline 'x'"),
    (["backfill.verify", "--days", "2", "--exclude", "numbers+"], "nothing selected"),
    (["backfill", "--start", "1969-12-30", "--end", "1970-01-02"], "--start 1969-12-30 is outside ClickHouse's Date"),
    (["backfill", "--days", "30000", "--max-days", "30000"], "goes back before"),
    (["pipeline.run", "numbers", "--date", "1969-12-31"], "1969-12-31 is outside ClickHouse's Date range"),
    (["pipeline.run", "numbers", "--date", "2149-06-07", "--allow-future"], "outside ClickHouse's Date range"),
    (["pipeline.history", "--date", "1900-01-01"], "outside ClickHouse's Date range"),
    (["proc.logs", "--name", "numbers", "--date", "2150-01-01"], "outside ClickHouse's Date range"),
], ids=["unknown", "empty-jobs", "unknown-exclude", "not-backfillable", "bad-mode", "mode-and-alias", "counts",
        "verify-nothing", "backfill-1969", "days-before-1970", "run-1969", "run-2149", "history", "logs"])
@pytest.mark.slow
def test_bad_selections_modes_and_days_are_one_line_exit_2_nothing_stored(env, args, fragment):
    result = inv(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert q(env, "SELECT count() AS n FROM backfill_plans") == [{"n": 0}]
    assert q(env, "SELECT count() AS n FROM run_ledger") == [{"n": 0}]


@pytest.mark.slow
def test_select_with_plus_and_exclude_picks_the_plan(env):
    def jobs(*args):
        result = ok("backfill", "--days", "1", "--dry-run", "--json", *args, env=env)
        return json.loads(result.stdout)["plan"]["jobs"]

    assert jobs() == ["numbers", "doubled", "summed"]
    assert jobs("--select", "doubled+") == ["doubled", "summed"]
    assert jobs("--select", "+doubled") == ["numbers", "doubled"]
    assert jobs("--select", "numbers+", "--exclude", "summed") == ["numbers", "doubled"]
    assert jobs("--jobs", "summed,numbers") == ["numbers", "summed"]
    left = ok("backfill", "--days", "1", "--dry-run", "--select", "numbers+", env=env)
    assert "note: by_hand left out: it is not backfillable" in left.stderr
    verify = inv("backfill.verify", "--days", "1", "--select", "+doubled", "--exclude", "doubled", "--json", env=env)
    assert {r["pipeline"] for r in json.loads(verify.stdout)} == {"numbers"}  # (its check fails: no data yet)


SCHEDULED = '''
from ops.pipelines.definition import pipeline

@pipeline(name="alpha", target="t", schedule="0 1 * * *")
def alpha(run):
    pass

@pipeline(name="beta", target="t", schedule="0 2 * * *", depends_on=["alpha"])
def beta(run):
    pass

@pipeline(name="gamma", target="t", schedule="0 3 * * *", depends_on=["beta"])
def gamma(run):
    pass

@pipeline(name="by_hand", target="t", depends_on=["alpha"])
def by_hand(run):
    pass
'''


def test_schedule_selects_the_same_way(tmp_path):
    require(shutil.which("crontab") is not None, "cron is not installed (apt-get install cron)")
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "scheduled.py").write_text(textwrap.dedent(SCHEDULED))
    env = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"),
                        CHOPS_ENV_FILE=str(tmp_path / "none"), CHOPS_PIPELINES__DIR=str(tmp_path / "pipelines"))

    def planned(*args):  # a dry run reads the crontab and changes nothing
        result = inv("pipeline.schedule", "--dry-run", "--json", *args, env=env)
        assert result.returncode == 0, result.stderr
        return sorted(c["pipeline"] for c in json.loads(result.stdout)["changes"])

    assert planned("--select", "alpha+") == ["alpha", "beta", "gamma"]  # by_hand has no schedule: left out
    assert planned("--select", "alpha+", "--exclude", "gamma") == ["alpha", "beta"]
    assert planned("--name", "beta") == ["beta"] and planned("--select", "+beta") == ["alpha", "beta"]
    assert planned("--all", "--exclude", "beta+") == ["alpha"]
    for args, fragment in ((["--select", "alpah"], "unknown pipeline 'alpah' (did you mean alpha? known: alpha, "
                                                  "beta, by_hand, gamma)"),
                           (["--select", "by_hand"], "pipeline by_hand has no schedule"),
                           (["--select", "alpha", "--all"], "not both")):
        result = inv("pipeline.schedule", "--dry-run", *args, env=env)
        assert result.returncode == 2 and fragment in result.stderr, result.stderr
