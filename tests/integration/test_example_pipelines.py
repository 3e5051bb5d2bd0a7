"""The example pipelines for real: sample files → events_ingest → daily_rollup and user_sessions, through `inv`.

Each test has its own data directory; the numbers the pipelines build are checked against the events table and
against the same figures computed here, in Python, from the inbox files.
"""

import csv
import json
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal

import pytest

from ops.pipelines.sample_data import write_sample_data
from ops.core.settings import load_settings
from tests.conftest import clean_environ

DAY = date(2026, 3, 2)
ROWS = 3000


@pytest.fixture
def chops(run_inv, cli_var, tmp_path):
    """``chops("pipeline.run", ...)``: run_inv with logs kept in this test's directory; asserts success unless
    ``ok=False``."""

    def run(*args, ok=True, timeout=180):
        out = run_inv(*args, extra_env={"CHOPS_PATHS__LOGS": str(tmp_path / "log")}, timeout=timeout)
        if ok:
            assert out.returncode == 0, f"inv {' '.join(args)}: {out.stderr}{out.stdout}"
        return out

    return run


@pytest.fixture
def ready(chops, cli_var, tmp_path):
    """A migrated database and two days of sample files (the second is DAY)."""
    settings = load_settings(environ=clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(cli_var),
                                                  CHOPS_ENV_FILE=str(tmp_path / "test.env")))
    written = write_sample_data(settings, 2, end=DAY, rows_per_day=ROWS)
    assert [r["action"] for r in written] == ["write", "write"]
    chops("db.setup")
    chops("db.migrate")
    return settings


def query(chops, sql):
    return json.loads(chops("db.query", sql, "--json").stdout)


def events_from_files(settings, day):
    folder = settings.path("paths.var") / "inbox" / "events" / day.isoformat()
    with open(folder / f"events-{day}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows += [json.loads(line, parse_float=str) for line in (folder / f"events-{day}.jsonl").read_text().splitlines()]
    return [{"time": datetime.strptime(r["event_time"], "%Y-%m-%d %H:%M:%S.%f"), "id": r["event_id"],
             "user": int(r["user_id"]), "type": r["event_type"], "country": r["country"],
             "revenue": Decimal(str(r["revenue"]))} for r in rows]


def sessions_in_python(events, gap_s=1800):
    """The reference: a user's events in time order; a gap over 30 minutes starts a new session."""
    by_user = defaultdict(list)
    for e in events:
        by_user[e["user"]].append(e)
    out = []
    for user in sorted(by_user):
        previous, current = None, None
        for e in sorted(by_user[user], key=lambda e: e["time"]):
            if previous is None or (e["time"] - previous).total_seconds() > gap_s:
                current = {"user_id": user, "session_no": (current["session_no"] + 1) if current else 1,
                           "started_at": e["time"], "ended_at": e["time"], "events": 0, "converted": 0,
                           "revenue": Decimal("0")}
                out.append(current)
            current["ended_at"] = e["time"]
            current["events"] += 1
            current["converted"] |= e["type"] == "purchase"
            current["revenue"] += e["revenue"]
            previous = e["time"]
    return out


@pytest.mark.slow
def test_dependencies_are_enforced_then_all_three_pipelines_build_the_day(chops, ready):
    # daily_rollup and user_sessions refuse to run before events_ingest succeeded for the day
    for name in ("daily_rollup", "user_sessions"):
        out = chops("pipeline.run", name, "--date", DAY.isoformat(), ok=False)
        assert out.returncode == 1, out.stderr
        assert f"{name} depends on events_ingest, which has not succeeded for {DAY} (never run)" in out.stderr
        assert f"inv pipeline.run events_ingest --date {DAY}" in out.stderr
    assert query(chops, "SELECT count() AS n FROM daily_rollup")[0]["n"] == 0

    out = chops("pipeline.run", "events_ingest", "--date", DAY.isoformat())
    assert f"events_ingest {DAY}: succeeded, {ROWS:,} rows" in out.stderr
    chops("pipeline.run", "daily_rollup", "--date", DAY.isoformat())
    chops("pipeline.run", "user_sessions", "--date", DAY.isoformat())
    # the other day's files were not loaded, and so the dependents of that day still refuse
    out = chops("pipeline.run", "daily_rollup", "--date", "2026-03-01", ok=False)
    assert out.returncode == 1 and "depends on events_ingest" in out.stderr

    events = events_from_files(ready, DAY)
    assert len(events) == ROWS

    # daily_rollup: every event counted once, per (event_type, country), with its users and revenue
    rollup = query(chops, "SELECT toString(day) AS day, event_type, country, events, users, toString(revenue) AS revenue "
                          "FROM daily_rollup ORDER BY event_type, country")
    assert {r["day"] for r in rollup} == {DAY.isoformat()}
    expected = defaultdict(lambda: {"events": 0, "users": set(), "revenue": Decimal("0")})
    for e in events:
        cell = expected[(e["type"], e["country"])]
        cell["events"] += 1
        cell["users"].add(e["user"])
        cell["revenue"] += e["revenue"]
    assert {(r["event_type"], r["country"]): (r["events"], r["users"], Decimal(r["revenue"])) for r in rollup} == \
           {k: (v["events"], len(v["users"]), v["revenue"]) for k, v in expected.items()}
    [totals] = query(chops, "SELECT (SELECT sum(events) FROM daily_rollup) AS rolled, "
                            "(SELECT count() FROM events WHERE day = '2026-03-02') AS ingested, "
                            "(SELECT toString(sum(revenue)) FROM daily_rollup) AS rollup_revenue, "
                            "(SELECT toString(sumIf(revenue, event_type = 'purchase')) FROM events) AS purchases")
    assert totals["rolled"] == totals["ingested"] == ROWS
    purchase_revenue = sum(e["revenue"] for e in events if e["type"] == "purchase")
    assert purchase_revenue > 0
    assert Decimal(totals["rollup_revenue"]) == Decimal(totals["purchases"]) == purchase_revenue

    # user_sessions: exactly the sessions computed here, row for row
    got = query(chops, "SELECT user_id, session_no, toString(started_at) AS started_at, toString(ended_at) AS ended_at, "
                       "events, duration_s, converted, toString(revenue) AS revenue, toString(day) AS day "
                       "FROM user_sessions ORDER BY user_id, session_no")
    reference = sessions_in_python(events)
    assert len(got) == len(reference) > 100
    for row, ref in zip(got, reference):
        assert row["day"] == DAY.isoformat()
        assert (row["user_id"], row["session_no"], row["events"], row["converted"], Decimal(row["revenue"])) == \
               (ref["user_id"], ref["session_no"], ref["events"], int(ref["converted"]), ref["revenue"]), row
        assert row["started_at"] == ref["started_at"].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        assert row["ended_at"] == ref["ended_at"].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        assert row["duration_s"] == int((ref["ended_at"] - ref["started_at"]).total_seconds())
    assert sum(r["events"] for r in got) == ROWS
    assert sum(Decimal(r["revenue"]) for r in got) == purchase_revenue
    assert sum(r["converted"] for r in got) == len({(s["user_id"], s["session_no"]) for s in reference
                                                    if s["converted"]}) > 0
    assert any(r["session_no"] > 1 for r in got)  # heavy users come back more than once a day
    # consecutive sessions of a user are more than 30 minutes apart
    [gaps] = query(chops, "SELECT countIf(gap <= 1800) AS too_close, count() AS pairs FROM (SELECT "
                          "dateDiff('second', lagInFrame(ended_at) OVER w, started_at) AS gap, "
                          "row_number() OVER w AS n FROM user_sessions WINDOW w AS (PARTITION BY user_id "
                          "ORDER BY session_no ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)) WHERE n > 1")
    assert gaps["pairs"] > 0 and gaps["too_close"] == 0

    # a forced re-run replaces the day: same numbers, no duplicates
    chops("pipeline.run", "daily_rollup", "--date", DAY.isoformat(), "--force")
    chops("pipeline.run", "user_sessions", "--date", DAY.isoformat(), "--force")
    [after] = query(chops, "SELECT (SELECT sum(events) FROM daily_rollup) AS rolled, "
                           "(SELECT count() FROM daily_rollup) AS cells, (SELECT sum(events) FROM user_sessions) AS s, "
                           "(SELECT count() FROM user_sessions) AS sessions")
    assert after == {"rolled": ROWS, "cells": len(rollup), "s": ROWS, "sessions": len(got)}
    history = query(chops, "SELECT pipeline, toString(status) AS status, rows_written FROM run_ledger FINAL "
                           "WHERE status = 'succeeded' ORDER BY pipeline, started_at")
    assert [(h["pipeline"], h["rows_written"]) for h in history] == [
        ("daily_rollup", len(rollup)), ("daily_rollup", len(rollup)), ("events_ingest", ROWS),
        ("user_sessions", len(got)), ("user_sessions", len(got))]


@pytest.mark.slow
def test_the_migrations_roll_back_cleanly(chops, ready):
    tables = lambda: {r["name"] for r in query(chops, "SELECT name FROM system.tables WHERE database = currentDatabase()")}
    assert {"daily_rollup", "user_sessions"} <= tables()
    chops("db.rollback", "--to", "0002_events")  # also rolls back any later migration, then re-applies it
    assert not {"daily_rollup", "user_sessions"} & tables() and "events" in tables()
    out = chops("pipeline.run", "daily_rollup", "--date", DAY.isoformat(), ok=False)
    assert out.returncode == 1 and "target table daily_rollup of daily_rollup does not exist" in out.stderr
    chops("db.migrate")
    assert {"daily_rollup", "user_sessions"} <= tables()
