"""Sample data: realistic inbox files for the ``events_ingest`` pipeline, so a fresh clone has something to run.

For each day, ``<paths.var>/inbox/events/<YYYY-MM-DD>/`` gets two files, as if from two sources:

* ``events-<day>.csv``   (CSVWithNames: the web tracker's export)
* ``events-<day>.jsonl`` (JSONEachRow: the app's event stream)

with the columns ``event_time, event_id, user_id, event_type, country, revenue``. The rows are sessions of users
rather than independent events, so the example pipelines have something real to find:

* session starts follow a daily curve (quiet around 04:00 UTC, busiest around 20:00 UTC); events within a
  session are seconds to minutes apart; every timestamp falls inside the UTC day (``YYYY-MM-DD HH:MM:SS.mmm``);
* ``user_id`` is skewed (zipf-like over 5,000 users: a few heavy users, a long tail); a user's country is fixed;
* event types follow a small funnel: mostly page views, then clicks, add-to-carts, few purchases, rare signups;
  ``revenue`` is set on purchases only (2 decimals) and 0 otherwise;
* ``event_id`` is a version-4 UUID drawn from the day's seeded generator.

Everything is seeded per day, so generating a day again gives byte-identical files; a day whose files exist is
skipped unless ``force``; files are written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
from bisect import bisect
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from itertools import accumulate
from pathlib import Path
from typing import Any

from ops.core.errors import BadInput

COLUMNS = ("event_time", "event_id", "user_id", "event_type", "country", "revenue")
INBOX = "events"
MAX_DAYS = 3660
USERS = 5000
FIRST_USER_ID = 100_001
DAY_MS = 86_400_000

# Countries and their share of users.
COUNTRIES = (("US", 28), ("GB", 9), ("DE", 9), ("IN", 8), ("FR", 7), ("BR", 6), ("CA", 5), ("JP", 5), ("ES", 4),
             ("IT", 4), ("NL", 3), ("AU", 3), ("MX", 3), ("PL", 2), ("SE", 2), ("KR", 2))

# The funnel: from each event type, the chances of the next one (the rest is page_view).
NEXT = {
    "page_view": (("click", 0.33), ("add_to_cart", 0.06), ("signup", 0.004)),
    "click": (("click", 0.22), ("add_to_cart", 0.14)),
    "add_to_cart": (("purchase", 0.30), ("click", 0.25), ("add_to_cart", 0.05)),
    "purchase": (("click", 0.20),),
    "signup": (("click", 0.30),),
}
CONTINUE = 0.86  # chance a session goes on after each event: about 7 events per session
JSON_SHARE = 0.4  # the share of sessions that come from the app (the JSON-lines file)


def inbox_dir(settings, day: date) -> Path:
    return settings.path("paths.var") / "inbox" / INBOX / day.isoformat()


def file_names(day: date) -> tuple[str, str]:
    return f"events-{day.isoformat()}.csv", f"events-{day.isoformat()}.jsonl"


def write_sample_data(settings, days: int, end: date | None = None, rows_per_day: int = 20000, force: bool = False,
                      dry_run: bool = False) -> list[dict[str, Any]]:
    """Write ``days`` days of sample files ending with ``end`` (default: yesterday, UTC), oldest first.

    Returns one row per day: ``{"day", "files", "rows", "action": "write" | "skip"}``. ``dry_run`` writes nothing
    and reports what would happen."""
    days = _whole(days, "days", 1, MAX_DAYS)
    rows_per_day = _whole(rows_per_day, "rows per day", 1, None)
    if end is None:
        end = datetime.now(timezone.utc).date() - timedelta(days=1)
    elif isinstance(end, datetime) or not isinstance(end, date):
        raise BadInput(f"end must be a date, got {end!r}")
    try:
        first = end - timedelta(days=days - 1)
    except OverflowError:
        raise BadInput(f"{days} days before {end} is not a date") from None
    out = []
    for i in range(days):
        day = first + timedelta(days=i)
        folder = inbox_dir(settings, day)
        paths = [folder / name for name in file_names(day)]
        if not force and all(p.is_file() for p in paths):
            out.append({"day": day, "files": [str(p) for p in paths], "rows": _count_rows(paths), "action": "skip"})
            continue
        if not dry_run:
            write_day(folder, day, rows_per_day)
        out.append({"day": day, "files": [str(p) for p in paths], "rows": rows_per_day, "action": "write"})
    return out


def _whole(value: Any, what: str, minimum: int, maximum: int | None) -> int:
    if isinstance(value, bool):
        raise BadInput(f"{what} must be a whole number, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadInput(f"{what} must be a whole number, got {value!r}") from None
    if number != value and not isinstance(value, str):
        raise BadInput(f"{what} must be a whole number, got {value!r}")
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise BadInput(f"{what} must be {bound}, got {number}")
    return number


def _count_rows(paths: list[Path]) -> int:
    """Rows in existing files: lines, less the CSV header."""
    total = 0
    for p in paths:
        with open(p, "rb") as f:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        total += lines - (1 if p.suffix == ".csv" and lines else 0)
    return total


# --- generation -----------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _population() -> tuple[list[int], list[float], dict[int, str]]:
    """The users (heaviest first), their cumulative weights and each user's country: the same every day.

    Weights are zipf-like, 1 / (rank + 20): the heaviest user has about 1% of the sessions and the tail is long."""
    rng = random.Random("chops-users")
    ids = list(range(FIRST_USER_ID, FIRST_USER_ID + USERS))
    rng.shuffle(ids)
    weights = list(accumulate(1.0 / (rank + 20) for rank in range(1, USERS + 1)))
    names = [c for c, _ in COUNTRIES]
    countries = dict(zip(ids, rng.choices(names, weights=[w for _, w in COUNTRIES], k=USERS)))
    return ids, weights, countries


@lru_cache(maxsize=1)
def _day_curve() -> list[float]:
    """Cumulative weights of the 1,440 minutes of a UTC day: an evening peak near 20:00, a smaller one near 13:00,
    quietest around 05:00."""

    def bump(hour: float, centre: float, width: float) -> float:
        d = abs(hour - centre) % 24
        d = min(d, 24 - d)
        return math.exp(-d * d / (2 * width * width))

    return list(accumulate(0.12 + bump(m / 60, 20, 3.2) + 0.45 * bump(m / 60, 13, 2.5) for m in range(1440)))


@lru_cache(maxsize=1)
def _clock() -> list[str]:
    """``HH:MM:SS`` of each second of a day."""
    return [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)]


def _transitions() -> dict[str, tuple[tuple[float, str], ...]]:
    """NEXT as cumulative thresholds for one ``random()`` draw."""
    table = {}
    for state, options in NEXT.items():
        acc, steps = 0.0, []
        for name, p in options:
            acc += p
            steps.append((acc, name))
        table[state] = tuple(steps)
    return table


TRANSITIONS = _transitions()
_VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_BITS = (0x4000 << 64) | (0x8000 << 48)


def _uuid4(bits: int) -> str:
    """``str(uuid.UUID(int=bits, version=4))`` without building the object (the generator's hot path)."""
    h = "%032x" % ((bits & _VERSION_MASK) | _VERSION_BITS)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def generate_day(day: date, rows: int) -> tuple[list[tuple], list[tuple]]:
    """The day's events as (csv rows, json rows), each sorted by time; deterministic for (day, rows).

    Sessions are generated until the day has ``rows`` events: a user (zipf-like), a start time (the daily curve),
    then events a second to a few minutes apart walking the funnel, until the session or the day ends. A session
    comes from one source: the CSV export or the JSON-lines stream. Rows are
    ``(event_time, event_id, user_id, event_type, country, revenue)`` with revenue as text (``"0"`` or ``"12.34"``)."""
    rng = random.Random(f"chops-{day.isoformat()}")
    users, user_weights, countries = _population()
    curve = _day_curve()
    total_users, total_minutes = user_weights[-1], curve[-1]
    rand, bits, expo, lognormal = rng.random, rng.getrandbits, rng.expovariate, rng.lognormvariate
    transitions = TRANSITIONS
    events: list[tuple[int, int, int, str, int, bool]] = []  # (ms, uuid bits, user, type, revenue cents, json?)
    append = events.append
    left = rows
    while left:
        user = users[bisect(user_weights, rand() * total_users)]
        t = min(bisect(curve, rand() * total_minutes), 1439) * 60_000 + int(rand() * 60_000)
        to_json = rand() < JSON_SHARE
        state = "page_view"
        while t < DAY_MS and left:
            cents = min(max(1, int(lognormal(3.4, 0.8) * 100)), 500_000) if state == "purchase" else 0
            append((t, bits(128), user, state, cents, to_json))
            left -= 1
            if rand() > CONTINUE:
                break
            t += 1000 + int(expo(1 / 35.0) * 1000)  # 1 s plus about 35 s on average between a user's events
            r, current, state = rand(), state, "page_view"
            for threshold, name in transitions[current]:
                if r < threshold:
                    state = name
                    break
    events.sort()  # by time, then by id (ids are unique, so nothing further is compared)
    prefix, clock = day.isoformat() + " ", _clock()
    csv_rows, json_rows = [], []
    add_csv, add_json = csv_rows.append, json_rows.append
    for ms, b, user, kind, cents, to_json in events:
        row = (f"{prefix}{clock[ms // 1000]}.{ms % 1000:03d}", _uuid4(b), user, kind, countries[user],
               f"{cents // 100}.{cents % 100:02d}" if cents else "0")
        (add_json if to_json else add_csv)(row)
    return csv_rows, json_rows


def _json_lines(rows: list[tuple]) -> str:
    """JSONEachRow text: strings escaped by the json module, numbers as written (revenue keeps its 2 decimals)."""
    q = json.encoder.encode_basestring_ascii
    line = '{"event_time":%s,"event_id":%s,"user_id":%d,"event_type":%s,"country":%s,"revenue":%s}\n'
    return "".join(line % (q(t), q(i), u, q(k), q(c), r) for t, i, u, k, c, r in rows)


def write_day(folder: Path, day: date, rows: int) -> list[Path]:
    """Generate and write the day's two files, each atomically (a temporary name, then a rename)."""
    csv_rows, json_rows = generate_day(day, rows)
    folder.mkdir(parents=True, exist_ok=True)
    csv_name, json_name = file_names(day)

    def write_csv(f):
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(csv_rows)

    def write_json(f):
        f.write(_json_lines(json_rows))

    paths = []
    for name, write in ((csv_name, write_csv), (json_name, write_json)):
        path = folder / name
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                write(f)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(path)
    return paths
