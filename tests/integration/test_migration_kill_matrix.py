"""``kill -9`` of a real ``inv db.migrate`` / ``inv db.rollback`` at every statement boundary, and SIGKILL, SIGTERM
and Ctrl-C in the middle of a slow statement (issue 13: the kill matrix).

The corpus is a realistic set of 22 migrations (multi-statement files, materialized views with and without TO,
AggregatingMergeTree, codecs, TTL, skip indexes, a projection, RENAME COLUMN, EXCHANGE TABLES, backfills, a
mutation, a goose-style migration whose rollback runs nothing, forward- and reverse-order rollback files).

**An exact boundary.** On the embedded engine a run appends each journal event to its write-ahead file, flushed,
before the next statement starts. The killed processes run the real ``inv`` entry point with one test-side hook
(``KILLABLE``, in this file, never in the product): after the N-th write to the write-ahead file, the process
sends itself SIGKILL. So "after write N" is exactly "statement N-1 recorded, statement N not started". Each run of
the chain is killed after its second write (its ``begin``, then its first statement): every run advances by
exactly one statement, and the chain visits every boundary of the set, recovering each time with the command a
person would run (``--resume``; plain ``db.migrate`` is refused while a migration is dirty; ``db.rollback --count
2`` at some boundaries, then apply again). Rolling back to zero is a chain too: ``db.rollback --count N`` (N: all
that is not pending) killed after every rollback statement and every ``done``, its ``--dry-run`` checked against
what the next run begins. Mid-statement kills watch the write-ahead file from this process instead and signal
the process while the slow statement runs.

The end state must equal an uninterrupted run's: ``create_table_query`` of every table (chops' own and the inner
tables of materialized views excluded) and the row counts of the plain MergeTree tables; rolling back to zero must
leave no table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, VENV_BIN, clean_environ

pytestmark = pytest.mark.slow

SLOW = "SELECT count() FROM numbers({n}) WHERE sleepEachRow(1) = 0 SETTINGS max_block_size = 1"

# (id, up statements, rollback statements or None for a rollback file that runs nothing)
CORPUS: list[tuple[str, list[str], list[str] | None]] = [
    ("0001_events", [
        "CREATE TABLE events (\n    event_date Date,\n    event_time DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),\n"
        "    user_id UInt64,\n    event_type LowCardinality(String),\n    payload String CODEC(ZSTD(3))\n)\n"
        "ENGINE = MergeTree\nPARTITION BY toYYYYMM(event_date)\nORDER BY (event_type, user_id, event_time)\n"
        "TTL event_date + INTERVAL 1 YEAR\nSETTINGS index_granularity = 8192",
    ], ["DROP TABLE IF EXISTS events SYNC"]),
    ("0002_users", [
        "CREATE TABLE users (id UInt64, name String, email String DEFAULT '', updated_at DateTime64(3, 'UTC'))\n"
        "ENGINE = ReplacingMergeTree(updated_at) ORDER BY id",
        "INSERT INTO users (id, name, updated_at)\nSELECT number, concat('user', toString(number)), "
        "toDateTime64('2026-01-01 00:00:00', 3, 'UTC') FROM numbers(1000)",
    ], ["DROP TABLE IF EXISTS users SYNC"]),
    ("0003_events_backfill", [
        "INSERT INTO events (event_date, event_time, user_id, event_type, payload)\n"
        "SELECT toDate('2026-01-01') + intDiv(number, 4000), toDateTime64('2026-01-01 00:00:00', 3, 'UTC') "
        "+ number * 20, number % 1000, ['view', 'click', 'buy'][number % 3 + 1], '{\"source\": \"backfill\"}'\n"
        "FROM numbers(200000)",
    ], ["TRUNCATE TABLE IF EXISTS events"]),
    ("0004_daily_totals", [
        "CREATE TABLE daily_totals (\n    event_date Date,\n    event_type LowCardinality(String),\n"
        "    events SimpleAggregateFunction(sum, UInt64),\n    users AggregateFunction(uniq, UInt64)\n)\n"
        "ENGINE = AggregatingMergeTree ORDER BY (event_date, event_type)",
        "CREATE MATERIALIZED VIEW daily_totals_mv TO daily_totals AS\nSELECT event_date, event_type, "
        "count() AS events, uniqState(user_id) AS users FROM events GROUP BY event_date, event_type",
        "INSERT INTO daily_totals SELECT event_date, event_type, count(), uniqState(user_id)\n"
        "FROM events GROUP BY event_date, event_type",
    ], ["DROP VIEW IF EXISTS daily_totals_mv SYNC", "DROP TABLE IF EXISTS daily_totals SYNC"]),
    ("0005_events_env_columns", [
        "ALTER TABLE events ADD COLUMN IF NOT EXISTS env LowCardinality(String) DEFAULT 'prod'",
        "ALTER TABLE events ADD COLUMN IF NOT EXISTS region LowCardinality(String) DEFAULT ''",
        "ALTER TABLE events ADD COLUMN IF NOT EXISTS app_version String DEFAULT ''",
    ], [  # forward order, as most real rollback files are written
        "ALTER TABLE events DROP COLUMN IF EXISTS env",
        "ALTER TABLE events DROP COLUMN IF EXISTS region",
        "ALTER TABLE events DROP COLUMN IF EXISTS app_version",
    ]),
    ("0006_events_indexes", [
        "ALTER TABLE events ADD INDEX IF NOT EXISTS idx_payload payload TYPE tokenbf_v1(4096, 3, 0) GRANULARITY 4",
        "ALTER TABLE events ADD INDEX IF NOT EXISTS idx_user user_id TYPE minmax GRANULARITY 1",
        "ALTER TABLE events MATERIALIZE INDEX idx_user",
    ], ["ALTER TABLE events DROP INDEX IF EXISTS idx_user", "ALTER TABLE events DROP INDEX IF EXISTS idx_payload"]),
    ("0007_sessions", [
        "CREATE TABLE sessions (\n    session_id UUID,\n    user_id UInt64,\n    started_at DateTime('UTC'),\n"
        "    ended_at DateTime('UTC'),\n    duration UInt32 MATERIALIZED dateDiff('second', started_at, ended_at)\n)\n"
        "ENGINE = MergeTree PARTITION BY toYYYYMM(started_at) ORDER BY (user_id, started_at)\n"
        "TTL started_at + INTERVAL 90 DAY DELETE",
    ], ["DROP TABLE IF EXISTS sessions SYNC"]),
    ("0008_user_profile", [
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS country LowCardinality(String) DEFAULT ''",
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS signup_date Date DEFAULT toDate(updated_at)",
    ], ["ALTER TABLE users DROP COLUMN IF EXISTS signup_date", "ALTER TABLE users DROP COLUMN IF EXISTS country"]),
    ("0009_user_daily", [
        "CREATE TABLE user_daily (day Date, user_id UInt64, events UInt64) ENGINE = SummingMergeTree "
        "ORDER BY (day, user_id)",
        SLOW.format(n=3),  # stands in for a slow backfill; the mid-statement kills land here
        "INSERT INTO user_daily SELECT event_date, user_id, count() FROM events GROUP BY event_date, user_id",
    ], ["DROP TABLE IF EXISTS user_daily SYNC"]),
    ("0010_event_types", [
        "CREATE TABLE event_types (name LowCardinality(String), description String) "
        "ENGINE = ReplacingMergeTree ORDER BY name",
        "INSERT INTO event_types VALUES ('view', 'page view'), ('click', 'a click'), ('buy', 'a purchase')",
    ], ["DROP TABLE IF EXISTS event_types SYNC"]),
    ("0011_events_projection", [
        "ALTER TABLE events ADD PROJECTION IF NOT EXISTS by_user (SELECT user_id, event_time, event_type "
        "ORDER BY user_id, event_time)",
        "ALTER TABLE events MATERIALIZE PROJECTION by_user",
    ], ["ALTER TABLE events DROP PROJECTION IF EXISTS by_user"]),
    ("0012_rename_email", [
        "ALTER TABLE users RENAME COLUMN IF EXISTS email TO contact_email",
    ], ["ALTER TABLE users RENAME COLUMN IF EXISTS contact_email TO email"]),
    ("0013_funnel", [
        "CREATE VIEW IF NOT EXISTS events_last_day AS SELECT * FROM events WHERE event_date >= today() - 1",
        "CREATE TABLE funnel_steps (funnel LowCardinality(String), step UInt8, event_type LowCardinality(String))\n"
        "ENGINE = MergeTree ORDER BY (funnel, step)",
    ], ["DROP VIEW IF EXISTS events_last_day SYNC", "DROP TABLE IF EXISTS funnel_steps SYNC"]),
    ("0014_longer_ttl", [
        "ALTER TABLE events MODIFY TTL event_date + INTERVAL 2 YEAR",
    ], ["ALTER TABLE events MODIFY TTL event_date + INTERVAL 1 YEAR"]),
    ("0015_merge_setting", [
        "ALTER TABLE events MODIFY SETTING merge_with_ttl_timeout = 3600",
    ], ["ALTER TABLE events RESET SETTING merge_with_ttl_timeout"]),
    ("0016_sessions_backfill", [
        "INSERT INTO sessions (session_id, user_id, started_at, ended_at)\n"
        "SELECT toUUID(concat('00000000-0000-0000-0000-', leftPad(toString(user_id), 12, '0'))), user_id, "
        "toDateTime(min(event_time), 'UTC'), toDateTime(max(event_time), 'UTC') FROM events GROUP BY user_id",
        SLOW.format(n=2),  # waits like a backfill; Ctrl-C lands here
        "OPTIMIZE TABLE sessions FINAL",
    ], ["TRUNCATE TABLE IF EXISTS sessions"]),
    ("0017_numbers", [
        "CREATE TABLE numbers_big (n UInt64, s String) ENGINE = MergeTree ORDER BY n",
        "INSERT INTO numbers_big SELECT number, toString(number) FROM numbers(2000000)",
    ], ["DROP TABLE IF EXISTS numbers_big SYNC"]),
    ("0018_users_swap", [  # goose without a Down section: its rollback runs nothing
        "CREATE TABLE users_v2 AS users",
        "INSERT INTO users_v2 SELECT * FROM users",
        "EXCHANGE TABLES users AND users_v2",
        "DROP TABLE users_v2 SYNC",
    ], None),
    ("0019_country_totals", [
        "CREATE TABLE country_totals (country LowCardinality(String), events UInt64) ENGINE = SummingMergeTree "
        "ORDER BY country",
        "CREATE MATERIALIZED VIEW country_totals_mv TO country_totals AS\nSELECT u.country AS country, "
        "count() AS events FROM events AS e INNER JOIN users AS u ON u.id = e.user_id GROUP BY country",
    ], ["DROP VIEW IF EXISTS country_totals_mv SYNC", "DROP TABLE IF EXISTS country_totals SYNC"]),
    ("0020_hourly", [
        "CREATE MATERIALIZED VIEW IF NOT EXISTS hourly_mv ENGINE = SummingMergeTree ORDER BY (hour, event_type) "
        "POPULATE AS\nSELECT toStartOfHour(event_time) AS hour, event_type, count() AS n FROM events "
        "GROUP BY hour, event_type",
    ], ["DROP VIEW IF EXISTS hourly_mv SYNC"]),
    ("0021_user_flags", [
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS is_active UInt8 DEFAULT 1",
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS flags Array(LowCardinality(String)) DEFAULT []",
        "ALTER TABLE users UPDATE is_active = 0 WHERE id % 10 = 0",
    ], ["ALTER TABLE users DROP COLUMN IF EXISTS is_active", "ALTER TABLE users DROP COLUMN IF EXISTS flags"]),
    ("0022_audit_log", [
        "CREATE TABLE audit_log (\n    at DateTime64(6, 'UTC') DEFAULT now64(6),\n    actor String,\n"
        "    action LowCardinality(String),\n    details String CODEC(ZSTD(5))\n)\n"
        "ENGINE = MergeTree ORDER BY at TTL toDateTime(at) + INTERVAL 30 DAY",
        "INSERT INTO audit_log (actor, action, details) VALUES ('migrations', 'created', 'the audit log')",
    ], ["DROP TABLE IF EXISTS audit_log SYNC"]),
]
IDS = [mid for mid, _, _ in CORPUS]
STATEMENTS = [(mid, i) for mid, ups, _ in CORPUS for i in range(len(ups))]  # every statement, in order
COUNTED = ["audit_log", "events", "numbers_big", "sessions"]  # plain MergeTree: counts do not depend on merges

# The real `inv`, plus the test's hook: SIGKILL itself right after the N-th write to the write-ahead file.
KILLABLE = """
import os, signal, sys
from ops.migrations import journal
after, writes, original = int(sys.argv[1]), [0], journal.PendingEvents.write
def write(self, rows):
    original(self, rows)
    if rows and self._file is not None:
        writes[0] += 1
        if writes[0] == after:
            os.kill(os.getpid(), signal.SIGKILL)
journal.PendingEvents.write = write
from invoke.main import program
program.run(["inv"] + sys.argv[2:])
"""


def write_corpus(directory: Path) -> None:
    directory.mkdir(parents=True)
    for mid, ups, downs in CORPUS:
        (directory / f"{mid}.sql").write_text(f"-- {mid}\n" + "".join(f"{s};\n\n" for s in ups))
        (directory / f"{mid}.rollback.sql").write_text(
            f"-- rollback of {mid}\n" + ("".join(f"{s};\n" for s in downs) if downs is not None else
                                         "-- no Down section: rolling back runs nothing, as goose did\n"
                                         "-- chops: nothing to undo\n"))  # what db.import writes for it


class Project:
    """A data directory of its own and the same migrations directory: one engine per ``inv`` process."""

    def __init__(self, root: Path, migrations: Path):
        self.var = root / "var"
        self.env = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(self.var),
                                 CHOPS_ENV_FILE=str(root / "none.env"), CHOPS_MIGRATIONS__DIR=str(migrations))

    def inv(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / "inv"), *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def ok(self, *args: str) -> subprocess.CompletedProcess:
        result = self.inv(*args)
        assert result.returncode == 0, (args, result.stderr)
        return result

    def json(self, *args: str):
        return json.loads(self.ok(*args, "--json").stdout)

    def killed_after(self, writes: int, *args: str) -> tuple[int, list[dict]]:
        """Run ``inv ARGS`` until its ``writes``-th write-ahead write, then SIGKILL: (exit code, its events)."""
        result = subprocess.run([sys.executable, "-c", KILLABLE, str(writes), *args], cwd=ROOT, env=self.env,
                                capture_output=True, text=True, timeout=120)
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, self.wal()

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([str(VENV_BIN / "inv"), *args], cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def wal(self, pid: int | None = None) -> list[dict]:
        """The events in the write-ahead file of a run (as a reader merges them; with ``pid``, only when that
        process wrote the file), [] when there is none."""
        files = list((self.var / "clickhouse" / "chops").glob("migration-journal.*.wal"))
        lines = files[0].read_text().split("\n") if files else [""]
        try:
            if pid is not None and json.loads(lines[0])["pid"] != pid:
                return []  # a killed run's file, not yet replayed by this one
        except ValueError:
            return []
        events = []
        for line in lines[1:]:
            try:
                events.append(json.loads(line))
            except ValueError:
                break
        return events

    def wait_for(self, proc: subprocess.Popen, migration: str, event: str, statement: int = 0,
                 timeout: float = 60) -> None:
        """Until the running ``proc`` has written that event to its own write-ahead file."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e["migration_id"] == migration and e["event"] == event and e["statement"] == statement
                   for e in self.wal(proc.pid)):
                return
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        raise AssertionError(f"no {event} {statement} of {migration} within {timeout}s")

    def states(self) -> dict[str, str]:
        return {r["id"]: r["state"] for r in self.json("db.status")}

    def schema(self) -> dict[str, str]:
        rows = self.json("db.query", "SELECT name, create_table_query FROM system.tables WHERE database = "
                         "currentDatabase() AND name NOT LIKE '\\_chops%' AND name NOT LIKE '.inner%' ORDER BY name")
        return {r["name"]: r["create_table_query"] for r in rows}

    def counts(self) -> dict[str, int]:
        return {t: self.json("db.query", f"SELECT count() AS n FROM {t}")[0]["n"] for t in COUNTED}

    def tables(self) -> list[str]:
        return [r["name"] for r in self.json("db.query", "SELECT name FROM system.tables WHERE database = "
                                             "currentDatabase() AND name NOT LIKE '\\_chops%' ORDER BY name")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("kill-matrix") / "migrations"
    write_corpus(directory)
    return directory


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus) -> dict:
    """An uninterrupted run of the corpus: its schema and counts."""
    p = Project(tmp_path_factory.mktemp("reference"), corpus)
    p.ok("db.setup")
    assert p.json("db.migrate")["applied"] == IDS
    return {"schema": p.schema(), "counts": p.counts()}


def test_reference_run_is_the_realistic_set(reference):
    assert len(CORPUS) >= 20 and len(STATEMENTS) >= 40
    assert {"events", "daily_totals_mv", "hourly_mv", "users", "audit_log"} <= set(reference["schema"])
    assert "users_v2" not in reference["schema"] and reference["counts"]["events"] == 200000


def recorded(events: list[dict]) -> list[tuple[str, int]]:
    return [(e["migration_id"], e["statement"]) for e in events if e["event"] == "statement"]


def check_rollback_plan(p: Project, states: dict[str, str]) -> list[str]:
    """``db.rollback --count N --dry-run`` for every migration not pending: dirty first, then newest first, each
    once (issue 18: a dirty rollback was planned twice)."""
    live = [i for i in IDS if states[i] != "pending"]
    expected = [i for i in live if states[i] == "dirty"] + [i for i in reversed(live) if states[i] != "dirty"]
    plan = [x["id"] for x in p.json("db.rollback", "--count", str(len(live)), "--dry-run")["plan"]]
    assert plan == expected, (plan, states)
    return plan


def test_kill_9_at_every_statement_boundary_of_migrate(tmp_path, corpus, reference):
    """Each run (the first plain, then ``--resume``) is killed after its second write: one more statement."""
    p = Project(tmp_path, corpus)
    p.ok("db.setup")
    # The first write is the first begin: killed there, nothing ran and the first migration is dirty.
    code, events = p.killed_after(1, "db.migrate")
    assert code == -signal.SIGKILL and recorded(events) == []
    assert p.states()[IDS[0]] == "dirty"

    done, command, rollback_at, refuse_at = 0, ("db.migrate", "--resume"), {9, 24, 37}, {5, 17, 30}
    while done < len(STATEMENTS):
        code, events = p.killed_after(2, *command)
        assert code == -signal.SIGKILL, events
        assert recorded(events) == [STATEMENTS[done]], (done, events)  # exactly the next statement, once
        done += 1
        command = ("db.migrate", "--resume") if done < len(STATEMENTS) else ("db.migrate",)
        if done % 4 and done not in refuse_at | rollback_at:
            continue
        states = p.states()  # status reads the killed run's write-ahead file
        applied = {mid for mid, _ in STATEMENTS[:done]} - {STATEMENTS[done][0] if done < len(STATEMENTS) else ""}
        assert {i for i, s in states.items() if s == "applied"} == applied, (done, states)
        if done in refuse_at:  # plain migrate is refused while dirty, and the hint names every way out
            refuse_at.remove(done)
            refused = p.inv("db.migrate")
            assert refused.returncode == 1 and "--resume" in refused.stderr and "inv db.mark" in refused.stderr
        if done in rollback_at:  # roll back the dirty one and the one before it, then apply again
            rollback_at.remove(done)
            plan = check_rollback_plan(p, states)[:2]
            result = p.json("db.rollback", "--count", "2")
            assert result["rolled_back"] == plan and states[plan[0]] == "dirty", (result, states)
            done -= sum(1 for mid, _ in STATEMENTS[:done] if mid in plan)
            assert STATEMENTS[done] == (plan[1], 0)
            command = ("db.migrate",)
    assert not rollback_at and not refuse_at
    assert set(p.states().values()) == {"applied"}
    assert p.json("db.migrate")["applied"] == []
    assert p.schema() == reference["schema"]
    assert p.counts() == reference["counts"]  # every INSERT ran exactly once


def test_kill_9_at_every_statement_boundary_of_rollback(tmp_path, corpus, reference):
    """Roll back to zero: each ``db.rollback --count N`` (N: every migration not pending) killed after its second
    write, so after one rollback statement (or after a migration's ``done``)."""
    p = Project(tmp_path, corpus)
    p.ok("db.setup")
    assert p.json("db.migrate")["applied"] == IDS
    live, dirty = list(IDS), None  # not pending, in order; the one dirty from a killed rollback
    for n in range(200):
        if not live:
            break
        plan = ([dirty] if dirty else []) + [m for m in reversed(live) if m != dirty]
        if n % 3 == 0:  # the dry run plans what runs: dirty first, then newest first, each once
            dry = p.json("db.rollback", "--count", str(len(live)), "--dry-run")
            assert [x["id"] for x in dry["plan"]] == plan, (n, dry["plan"])
        code, events = p.killed_after(2, "db.rollback", "--count", str(len(live)))
        assert code == -signal.SIGKILL
        assert [e["migration_id"] for e in events if e["event"] == "begin"] == plan[:1]
        if any(e["event"] == "done" for e in events):
            live.remove(plan[0])
            dirty = None
        else:
            dirty = plan[0]
    # every boundary once: after each rollback statement, and after each migration's done
    assert n == sum(len(downs or []) + 1 for _, _, downs in CORPUS)
    assert set(p.states().values()) == {"pending"}
    assert p.tables() == []  # no table left (chops' own journal and a stale lock aside)


def test_sigkill_sigterm_and_ctrl_c_in_the_middle_of_a_slow_statement(tmp_path, corpus, reference):
    p = Project(tmp_path, corpus)
    p.ok("db.setup")
    slow, later = "0009_user_daily", "0016_sessions_backfill"

    # kill -9 while statement 2 of 0009 (3 s of sleepEachRow) runs: nothing of it is recorded.
    proc = p.start("db.migrate")
    p.wait_for(proc, slow, "statement", 0)
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    assert recorded(p.wal())[-1] == (slow, 0)
    assert p.states()[slow] == "dirty"

    # SIGTERM while the same statement runs again: it finishes, is recorded, and the run stops before the next.
    proc = p.start("db.migrate", "--resume")
    p.wait_for(proc, slow, "begin")
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert f"error: stopped by SIGTERM after statement 2 of {slow}; {slow} is dirty" in err
    assert "inv db.migrate --resume" in err and f"inv db.mark {slow}" in err
    [row] = [r for r in p.json("db.status") if r["id"] == slow]
    assert row["state"] == "dirty" and row["note"].startswith("apply stopped after 2 of 3 statements")
    assert "migration-journal" not in str(list((p.var / "clickhouse" / "chops").glob("*")))  # flushed, not left

    # Ctrl-C (SIGINT) while 0016's wait runs: the same, exit 130.
    proc = p.start("db.migrate", "--resume")
    p.wait_for(proc, later, "statement", 0)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert f"error: stopped by SIGINT after statement 2 of {later}; {later} is dirty" in err
    assert p.states()[later] == "dirty" and p.states()[slow] == "applied"

    assert p.json("db.migrate", "--resume")["applied"] == IDS[IDS.index(later):]
    assert set(p.states().values()) == {"applied"}
    assert p.schema() == reference["schema"]
    assert p.counts() == reference["counts"]
