"""Sample data for events_ingest: deterministic, idempotent, well-formed, realistic; bad input refused."""

import csv
import json
import re
import uuid
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from ops.core.errors import BadInput
from ops.pipelines.sample_data import COLUMNS, USERS, _uuid4, write_sample_data
from ops.core.settings import load_settings
from tests.conftest import clean_environ

END = date(2026, 3, 10)
TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$")


def settings_for(var):
    return load_settings(environ=clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(var),
                                               CHOPS_ENV_FILE=str(var.parent / "no.env")))


@pytest.fixture
def settings(tmp_path):
    return settings_for(tmp_path / "var")


def day_dir(settings, day):
    return settings.path("paths.var") / "inbox" / "events" / day.isoformat()


def snapshot(settings):
    root = settings.path("paths.var") / "inbox"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_day(settings, day):
    folder = day_dir(settings, day)
    with open(folder / f"events-{day}.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        from_csv = list(reader)
    from_json = [json.loads(line, parse_float=str)  # keeps numbers as written
                 for line in (folder / f"events-{day}.jsonl").read_text().splitlines()]
    for row in from_json:
        assert tuple(row) == COLUMNS
    return from_csv, from_json


def test_days_count_back_from_end_and_files_are_where_events_ingest_looks(settings):
    result = write_sample_data(settings, 3, end=END, rows_per_day=500)
    assert [r["day"] for r in result] == [date(2026, 3, 8), date(2026, 3, 9), END]
    assert {r["action"] for r in result} == {"write"} and {r["rows"] for r in result} == {500}
    for r in result:
        folder = day_dir(settings, r["day"])
        assert r["files"] == [str(folder / f"events-{r['day']}.csv"), str(folder / f"events-{r['day']}.jsonl")]
        assert sorted(p.name for p in folder.iterdir()) == [f"events-{r['day']}.csv", f"events-{r['day']}.jsonl"]


def test_end_defaults_to_yesterday_utc(settings):
    [row] = write_sample_data(settings, 1, rows_per_day=10, dry_run=True)
    assert row["day"] == datetime.now(timezone.utc).date() - timedelta(days=1)
    assert not (settings.path("paths.var") / "inbox").exists()  # a dry run writes nothing


def test_byte_for_byte_deterministic(tmp_path):
    first, second = settings_for(tmp_path / "a" / "var"), settings_for(tmp_path / "b" / "var")
    write_sample_data(first, 2, end=END, rows_per_day=2000)
    write_sample_data(second, 2, end=END, rows_per_day=2000)
    assert snapshot(first) == snapshot(second)
    before = snapshot(first)
    write_sample_data(first, 2, end=END, rows_per_day=2000, force=True)
    assert snapshot(first) == before
    a, b = (day_dir(first, END - timedelta(days=i)) for i in (0, 1))
    assert (a / f"events-{END}.csv").read_bytes()[100:] != (b / f"events-{END - timedelta(days=1)}.csv").read_bytes()[100:]


def test_existing_days_are_skipped_unless_forced(settings):
    write_sample_data(settings, 2, end=END, rows_per_day=300)
    folder = day_dir(settings, END)
    csv_file = folder / f"events-{END}.csv"
    stamp = csv_file.stat().st_mtime_ns
    result = write_sample_data(settings, 3, end=END, rows_per_day=999)
    assert [r["action"] for r in result] == ["write", "skip", "skip"]
    assert [r["rows"] for r in result] == [999, 300, 300]  # a skipped day reports the rows its files hold
    assert csv_file.stat().st_mtime_ns == stamp

    (folder / f"events-{END}.jsonl").unlink()  # half a day (e.g. a crash between the files) is written again
    assert [r["action"] for r in write_sample_data(settings, 1, end=END, rows_per_day=300)] == ["write"]

    result = write_sample_data(settings, 1, end=END, rows_per_day=400, force=True)
    assert result[0]["action"] == "write"
    from_csv, from_json = read_day(settings, END)
    assert len(from_csv) + len(from_json) == 400
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_dry_run_reports_without_writing(settings):
    write_sample_data(settings, 1, end=END, rows_per_day=100)
    before = snapshot(settings)
    result = write_sample_data(settings, 2, end=END, rows_per_day=100, dry_run=True)
    assert [r["action"] for r in result] == ["write", "skip"]
    assert snapshot(settings) == before
    result = write_sample_data(settings, 1, end=END, rows_per_day=100, force=True, dry_run=True)
    assert result[0]["action"] == "write" and snapshot(settings) == before


@pytest.mark.parametrize("kwargs, message", [
    ({"days": 0}, "days must be from 1 to 3660, got 0"),
    ({"days": -3}, "days must be from 1 to 3660"),
    ({"days": 3661}, "days must be from 1 to 3660, got 3661"),
    ({"days": "seven"}, "days must be a whole number"),
    ({"days": 2.5}, "days must be a whole number"),
    ({"days": True}, "days must be a whole number"),
    ({"days": 1, "rows_per_day": 0}, "rows per day must be at least 1, got 0"),
    ({"days": 1, "rows_per_day": None}, "rows per day must be a whole number"),
    ({"days": 1, "end": "2026-03-01"}, "end must be a date"),
    ({"days": 1, "end": datetime(2026, 3, 1)}, "end must be a date"),
    ({"days": 3, "end": date.min}, "is not a date"),
])
def test_bad_input_is_refused_and_writes_nothing(settings, kwargs, message):
    with pytest.raises(BadInput, match=re.escape(message)):
        write_sample_data(settings, **kwargs)
    assert not (settings.path("paths.var") / "inbox").exists()


def test_files_parse_and_rows_are_well_formed(settings):
    write_sample_data(settings, 1, end=END, rows_per_day=5000)
    from_csv, from_json = read_day(settings, END)
    assert len(from_csv) + len(from_json) == 5000
    assert len(from_csv) > len(from_json) > 1000  # split about 60/40 between the two sources
    for rows in (from_csv, from_json):
        assert [r["event_time"] for r in rows] == sorted(r["event_time"] for r in rows)  # each file in time order
    ids = set()
    for row in from_csv + from_json:
        assert TIME.match(row["event_time"]), row
        t = datetime.strptime(row["event_time"], "%Y-%m-%d %H:%M:%S.%f")
        assert t.date() == END
        parsed = uuid.UUID(row["event_id"])
        assert parsed.version == 4 and str(parsed) == row["event_id"]
        ids.add(row["event_id"])
        assert 100_001 <= int(row["user_id"]) < 100_001 + USERS
        assert re.fullmatch(r"[A-Z]{2}", row["country"])
        revenue = Decimal(str(row["revenue"]))
        if row["event_type"] == "purchase":
            assert revenue > 0 and re.fullmatch(r"\d+\.\d{2}", str(row["revenue"])), row
        else:
            assert revenue == 0
    assert len(ids) == 5000


def test_the_data_looks_like_traffic(settings):
    write_sample_data(settings, 1, end=END, rows_per_day=20000)
    rows = [r for part in read_day(settings, END) for r in part]
    types = Counter(r["event_type"] for r in rows)
    assert set(types) == {"page_view", "click", "add_to_cart", "purchase", "signup"}
    assert types["page_view"] > types["click"] > types["add_to_cart"] > types["purchase"] > types["signup"] > 0
    assert types["page_view"] > len(rows) / 2 and types["purchase"] < len(rows) / 20
    users = Counter(r["user_id"] for r in rows)
    assert 500 < len(users) <= USERS
    top = users.most_common(1)[0][1]
    assert top > 10 * len(rows) / len(users)  # skewed: the heaviest user does far more than the average one
    hours = Counter(int(r["event_time"][11:13]) for r in rows)
    assert sum(hours[h] for h in (18, 19, 20, 21)) > 3 * sum(hours[h] for h in (3, 4, 5, 6))  # evening peak
    countries = Counter(r["country"] for r in rows)
    assert countries.most_common(1)[0][0] == "US"
    by_user_country = {}
    for r in rows:
        assert by_user_country.setdefault(r["user_id"], r["country"]) == r["country"]  # a user stays in one country


def test_uuid_helper_matches_the_uuid_module():
    import random

    rng = random.Random(7)
    for _ in range(1000):
        bits = rng.getrandbits(128)
        assert _uuid4(bits) == str(uuid.UUID(int=bits, version=4))
    assert _uuid4(0) == str(uuid.UUID(int=0, version=4))
    assert _uuid4((1 << 128) - 1) == str(uuid.UUID(int=(1 << 128) - 1, version=4))


def test_a_single_row_day(settings):
    [row] = write_sample_data(settings, 1, end=END, rows_per_day=1)
    from_csv, from_json = read_day(settings, END)
    assert len(from_csv) + len(from_json) == 1 and row["rows"] == 1
    assert write_sample_data(settings, 1, end=END, rows_per_day=1)[0] == {**row, "action": "skip"}
