"""Backfill: ``inv backfill`` over 7 and 30 days of the example pipelines vs the same per-day statements in a loop.

* chops: ``inv backfill --start S --end E --parallel 1 --force --json``: a frozen plan stored first, then for each
  day and pipeline (dependencies first) the ledger, the partition's lock, a staging table, the checks and
  REPLACE PARTITION (see ops/pipelines/backfill.py and ops/pipelines/runner.py).
* direct: one Python process that opens the same embedded engine with clickhouse_connect and, day after day,
  has the engine load the day's inbox files into ``events`` (``INSERT … FROM INFILE``, as ``Run.insert_file`` does) and runs the
  ``INSERT … SELECT`` of daily_rollup and user_sessions straight into their tables: no plan, ledger, staging
  table, check or swap. The statements are not copied here: they are read from the pipelines themselves, by
  calling each ``build(run)`` with a recorder that keeps what it is asked to run and runs nothing (``_Recorder``),
  so the baseline follows any change to pipelines/*.py.

Both sides are subprocesses timed by the wall clock, process start included, each in a fresh temporary var/
directory whose database is set up and migrated first (untimed); they run one after the other (the embedded
engine allows one process per data path). The peak memory of each is its kernel high-water mark of resident
memory (``ru_maxrss`` from ``os.wait4`` on that one child: exact, no sampling). The user's var/ is never touched.

The inbox files are generated once per ``measure()``: one day by ``ops.pipelines.sample_data`` (realistic sessions), and
every other day is that day's files with the date rewritten, so each event falls on its file's day (the
``within_day`` check) and event ids stay unique within each day (they repeat across days, which nothing
checks). Generation is timed apart and is not in any ratio. Everything is deleted at the end.

* guarded: the hand-written job with chops' guarantees, in the same kind of process as direct: per day and
  pipeline a staging table made ``AS`` the target, the same statements into it, the same check query chops runs
  (the aggregates and single-value checks in one SELECT), ``REPLACE PARTITION`` and ``DROP`` of the staging table.
  chops / guarded is chops' own overhead (the ledger, the plan, locks, logs); chops / direct adds the guarantees.
* keep: chops again on the long run with ``clickhouse.memory_release_mb = 0`` (the engine keeps the memory it took
  instead of giving it back after each big statement): the time and peak memory of the other side of that trade.
* tiny: the same three sides at 200 rows a day over 60 days (best of 3 rounds at least), where bookkeeping, not
  data, is the work. The guarded job's own ratio to direct is the floor of a per-day build with these guarantees
  (a staging table, a check query and a swap per partition, about 5 ms of engine work where the day's INSERT is
  2-8 ms); chops / guarded is what chops adds on top.
* batch (``measure_batch``): a generated pipeline of 200 rows a day declared with ``batch_days = 30`` (and again
  with 1), backfilled over 60 days, against its per-day ``INSERT`` run directly: the tiny row for a range build.

Databases and the inbox live on a tmpfs when there is one (``/dev/shm``; the report says which).

Goals (issue): chops / guarded (30 days of 1M rows) <= 1.10; chops / direct <= 1.25; tiny partitions <= 1.5;
30 days within 10% of 30/7 x 7 days (scaling <= 1.10); peak RSS of the chops run under 500 MB.

    python bench/backfill.py [--rows-per-day N] [--days-long N] [--days-short N] [--rounds N] [--parallel N] [--json]
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `ops` importable
    sys.path.insert(0, str(ROOT))

FIRST_DAY = date(2025, 1, 1)  # a fixed day in the past: the runner refuses future days
GOALS = {"ratio": 1.25, "guarded_ratio": 1.10, "tiny_ratio": 1.5, "scaling": 1.10, "peak_rss_mb": 500.0}
TINY = {"rows_per_day": 200, "days_long": 60, "days_short": 10}
BYTES_PER_ROW = 115  # the two sample files, per row (measured: 112.9 MB for a million rows)
TIMEOUT_S = 3600.0  # per subprocess
KEEP_MEMORY = {"CHOPS_CLICKHOUSE__MEMORY_RELEASE_MB": "0"}  # the engine keeps what it took (faster, higher peak)

# The baseline. Arguments: data path, database, the pickled per-day operations (see direct_plan).
DIRECT = """
import pickle
import sys

import clickhouse_connect

path, database, plan = sys.argv[1], sys.argv[2], sys.argv[3]
with open(plan, "rb") as f:
    days = pickle.load(f)
client = clickhouse_connect.get_client(dsn=f"chdb://{path}", database=None)
client.database = database
for operations in days:
    for _, sql, parameters in operations:
        client.command(sql, parameters=parameters)
for table, rows in client.query("SELECT table, sum(rows) FROM system.parts WHERE database = currentDatabase() "
                                "AND active GROUP BY table").result_rows:
    print(table, rows)
client.close()
"""


# Starts a command, waits for it, and writes "exit seconds maxrss_kib" to a file. Arguments: that file, the command.
LAUNCH = """
import os, subprocess, sys, time
report, args = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
proc = subprocess.Popen(args)
_, status, usage = os.wait4(proc.pid, 0)
took = time.perf_counter() - started
proc.returncode = code = os.waitstatus_to_exitcode(status)
with open(report, "w") as f:
    f.write(f"{code} {took!r} {usage.ru_maxrss}")
sys.exit(0 if code == 0 else 1)
"""

# --- the inbox files --------------------------------------------------------------------------------------------------

def generate_inbox(inbox: Path, first: date, days: int, rows_per_day: int) -> int:
    """``days`` days of sample files from ``first`` under ``inbox/events/<day>/``; returns the bytes written.

    The first day is generated by ops.pipelines.sample_data; each other day is a copy with the date rewritten. The date
    can only occur in event_time: an event_id is a UUID (dashes after 8, 4, 4, 4 hex digits, never the 4-2-2
    of a date) and the other columns have no dashes."""
    from ops.pipelines.sample_data import INBOX, file_names, write_day

    paths = write_day(inbox / INBOX / first.isoformat(), first, rows_per_day)
    total = sum(p.stat().st_size for p in paths)
    source = [(p.read_bytes(), p.suffix) for p in paths]
    old = first.isoformat().encode()
    for i in range(1, days):
        day = first + timedelta(days=i)
        folder = inbox / INBOX / day.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        new = day.isoformat().encode()
        for (data, suffix), name in zip(source, file_names(day)):
            assert name.endswith(suffix), (name, suffix)
            (folder / name).write_bytes(data.replace(old, new))
            total += len(data)
    return total


def _check_disk(where: Path, days: int, rows_per_day: int) -> None:
    from ops.core.errors import BadInput

    need = int(days * rows_per_day * BYTES_PER_ROW * 1.6)  # the files, and the database of one run beside them
    free = shutil.disk_usage(where).free
    if free < need:
        raise BadInput(f"{days} days of {rows_per_day:,} rows need about {need / 1e9:.1f} GB in {where}; "
                       f"{free / 1e9:.1f} GB free", hint="pass fewer --days-long or --rows-per-day, or set TMPDIR")


# --- the baseline's statements, read from the pipelines ---------------------------------------------------------------

class _Recorder:
    """Stands in for ``ops.pipelines.runner.Run`` so a pipeline's ``build(run)`` says what it would do for a day.

    Nothing runs: ``run.db.command`` and ``run.insert_file`` are recorded, with the pipeline's target table in
    place of the staging table. A build that does anything else fails here, loudly (AttributeError)."""

    def __init__(self, pipeline, day: date, inbox: Path, staging: str | None = None):
        self.pipeline, self.day, self.inbox_root = pipeline, day, inbox
        self.staging = staging or pipeline.target  # the direct loop writes straight into the target
        self.db = self  # build() calls run.db.command(sql, parameters)
        self.log = logging.getLogger("chops.bench.backfill")
        self.operations: list[tuple] = []

    @property
    def target(self) -> str:
        return self.pipeline.target

    def params(self, **extra):
        return {"day": self.day, **extra}

    def inbox(self, name: str) -> Path:
        return self.inbox_root / name / self.day.isoformat()

    def insert_file(self, path: Path, fmt: str, columns: list[str] | None = None) -> None:
        from ops.clickhouse.client import infile_sql  # what ops.clickhouse.Database.load_file runs on the embedded engine
        from ops.pipelines.runner import NO_BAD_ROWS

        self.operations.append(("sql", infile_sql(self.staging, path, fmt, columns, NO_BAD_ROWS), None))

    def command(self, sql: str, parameters: dict | None = None, settings: dict | None = None) -> None:
        from ops.clickhouse.client import _used  # what ops.clickhouse.Database.command sends: the bound parameters only

        self.operations.append(("sql", sql, _used(sql, parameters)))


def direct_plan(settings, inbox: Path, first: date, days: int, guarded: bool = False) -> list[list[tuple]]:
    """Per day, in the order a backfill runs them: every backfillable pipeline's operations (see _Recorder),
    with ``inbox`` as ``<paths.var>/inbox``; ``guarded``: each through a staging table, checked, swapped in."""
    from ops.pipelines.definition import load_pipelines

    registry = load_pipelines(settings)
    ordered = [p for p in registry.ordered() if p.backfillable]
    plan = []
    for i in range(days):
        day, operations = first + timedelta(days=i), []
        for p in ordered:
            staging = f"_guarded_{p.name}" if guarded else None
            recorder = _Recorder(p, day, inbox, staging)
            p.build(recorder)
            if guarded:
                operations += _guarded(p, day, staging, recorder.operations)
            else:
                operations += recorder.operations
        plan.append(operations)
    return plan


def _guarded(p, day: date, staging: str, build: list[tuple]) -> list[tuple]:
    """``build`` (into ``staging``) as a careful hand-written job runs it: a staging table made AS the target, the
    check query, the swap of the day's partition, and the staging table dropped."""
    together = [c for c in p.checks if c.expr or c.scalar]
    columns = ["count()"] + [f"toInt64({c.expr})" if c.expr else f"toInt64(({c.render(staging)}))"
                             for c in together]
    checks = [("sql", f"SELECT {', '.join(columns)} FROM `{staging}`", {"day": day})]
    checks += [("sql", c.render(staging), {"day": day}) for c in p.checks if c not in together]
    return [("sql", f"CREATE TABLE `{staging}` AS `{p.target}`", None), *build, *checks,
            ("sql", f"ALTER TABLE `{p.target}` REPLACE PARTITION ID '{day:%Y%m%d}' FROM `{staging}`", None),
            ("sql", f"DROP TABLE `{staging}` SYNC", None)]


# --- running and measuring one side -----------------------------------------------------------------------------------

def _environ(var: Path) -> dict[str, str]:
    """The parent's environment without chops settings, pointed at ``var`` (and its log/ beside it)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CHOPS_") and k not in ("CLICKHOUSE_URL", "COV_CORE_SOURCE")}
    env.update(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(var), CHOPS_PATHS__LOGS=str(var.parent / f"{var.name}-log"),
               CHOPS_ENV_FILE=str(var.parent / "none.env"))
    return env


def _run(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a command to its end: (wall seconds with process start, peak RSS in MB, stdout). WorkFailed if it fails.

    The command is started by a small launcher (LAUNCH), which times it and reads its peak RSS: ``ru_maxrss``
    of that one child from ``os.wait4``, the kernel's high-water mark of its resident memory, in KiB (Linux). Not
    from here: Linux carries the high-water mark of the memory a process had before ``exec`` into the new
    program, so a child forked from this process (hundreds of MB after generating the inbox, or with an engine
    open under pytest or ``inv bench``) would report at least this process's size."""
    import signal

    from ops.core.errors import WorkFailed

    with tempfile.TemporaryDirectory(prefix="run-") as scratch:
        report = Path(scratch) / "report"
        with open(Path(scratch) / "out", "w+b") as out, open(Path(scratch) / "err", "w+b") as err:
            proc = subprocess.Popen([sys.executable, "-c", LAUNCH, str(report), *args], cwd=ROOT, env=env,
                                    stdout=out, stderr=err, start_new_session=True)
            try:
                proc.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the launcher's own session: it and what it started
                proc.wait()
                raise WorkFailed(f"{' '.join(Path(a).name for a in args[:3])} took more than {TIMEOUT_S:g}s") from None
            out.seek(0), err.seek(0)
            stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        measured = report.read_text().split() if report.is_file() else []
    if proc.returncode != 0 or len(measured) != 3 or measured[0] != "0":
        code = measured[0] if measured else proc.returncode
        raise WorkFailed(f"{' '.join(Path(a).name for a in args[:3])} failed (exit {code}): "
                         f"{(stderr or stdout).strip()[-800:]}")
    took, rss_kib = float(measured[1]), float(measured[2])
    if sys.platform == "darwin":
        rss_kib /= 1024  # bytes there
    return took, rss_kib / 1024, stdout


def _fresh_var(tmp: Path, name: str, inbox: Path, inv: str) -> tuple[Path, dict[str, str]]:
    """A new var/ with the shared inbox linked in, and its database set up and migrated (untimed)."""
    var = tmp / name
    var.mkdir()
    (var / "inbox").symlink_to(inbox, target_is_directory=True)
    env = _environ(var)
    _run([inv, "db.setup"], env)
    _run([inv, "db.migrate"], env)
    return var, env


def _drop_var(var: Path) -> None:
    shutil.rmtree(var, ignore_errors=True)
    shutil.rmtree(var.parent / f"{var.name}-log", ignore_errors=True)


def _chops(tmp: Path, name: str, inbox: Path, inv: str, first: date, days: int, parallel: int,
           extra: dict[str, str] | None = None) -> dict:
    import json

    var, env = _fresh_var(tmp, name, inbox, inv)
    env.update(extra or {})
    try:
        last = first + timedelta(days=days - 1)
        args = [inv, "backfill", "--start", first.isoformat(), "--end", last.isoformat(),
                "--parallel", str(parallel), "--force", "--json"]
        if days > 366:  # backfill.max_days
            args += ["--max-days", str(days)]
        took, rss, out = _run(args, env)
    finally:
        _drop_var(var)
    summary = json.loads(out)["summary"]
    return {"seconds": took, "rss_mb": rss, "rows": {r["pipeline"]: int(r["rows"]) for r in summary},
            "succeeded": sum(int(r["succeeded"]) for r in summary)}


def _direct(tmp: Path, name: str, inbox: Path, inv: str, plan: list[list[tuple]], days: int) -> dict:
    from ops.core.settings import load_settings

    var, env = _fresh_var(tmp, name, inbox, inv)
    try:
        s = load_settings(environ=env)
        plan_file = tmp / f"{name}.plan.pkl"
        plan_file.write_bytes(pickle.dumps(plan[:days]))
        took, rss, out = _run([sys.executable, "-c", DIRECT, str(var / "clickhouse"),
                               s.get("clickhouse.database"), str(plan_file)], env)
        plan_file.unlink()
    finally:
        _drop_var(var)
    rows = {}
    for line in out.strip().splitlines():
        table, count = line.split()
        rows[table] = int(count)
    return {"seconds": took, "rss_mb": rss, "rows": rows}


def _check_rows(chops: dict, direct: dict, registry, days: int, rows_per_day: int) -> None:
    """Both sides wrote the same rows to every target, and events has every row of every day."""
    from ops.core.errors import WorkFailed

    for p in registry.ordered():
        if not p.backfillable:
            continue
        mine, theirs = chops["rows"].get(p.name), direct["rows"].get(p.target, 0)
        if mine != theirs:
            raise WorkFailed(f"{days} days: chops wrote {mine} rows of {p.name}, the direct loop {theirs} "
                             f"rows to {p.target}")
    if direct["rows"].get("events") != days * rows_per_day:
        raise WorkFailed(f"{days} days: events has {direct['rows'].get('events')} rows, expected "
                         f"{days * rows_per_day}")


def _stats(times: list[float]) -> dict:
    return {"best": min(times), "median": statistics.median(times), "times": times}


def measure(rounds: int = 1, days_long: int = 30, days_short: int = 7, rows_per_day: int = 1_000_000,
            parallel: int = 1, tiny: bool = True, tiny_rounds: int = 3) -> dict:
    """Generate the inbox once, then per round: chops and direct for ``days_short`` days, then chops, direct and
    guarded for ``days_long``; with ``tiny``, the same again at 200 rows a day over 60 days (``TINY``), and the
    range-build row, each best of ``tiny_rounds`` at least (they take seconds a round).

    ``parallel`` is ``inv backfill --parallel``: 1 (the default) compares the same work done one day at a time
    on both sides, so the ratio is what chops adds."""
    from ops.core.errors import BadInput

    for value, what in ((rounds, "rounds"), (days_short, "days_short"), (rows_per_day, "rows_per_day"),
                        (parallel, "parallel"), (tiny_rounds, "tiny_rounds")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadInput(f"{what} must be a whole number of at least 1, got {value!r}")
    if isinstance(days_long, bool) or not isinstance(days_long, int) or days_long <= days_short:
        raise BadInput(f"days_long must be a whole number above days_short ({days_short}), got {days_long!r}")
    from ops.dev.benchmarks import scratch_dir

    where, storage = scratch_dir()
    result = _measure(rounds, days_long, days_short, rows_per_day, parallel, where)
    result["storage"] = storage
    if tiny:
        small = _measure(max(rounds, tiny_rounds), TINY["days_long"], TINY["days_short"], TINY["rows_per_day"], parallel,
                         where)  # seconds a round: best of 3 at least
        result["tiny"] = {"rows_per_day": TINY["rows_per_day"], "days": TINY["days_long"],
                          "chops_s": small["chops"]["long"]["best"], "direct_s": small["direct"]["long"]["best"],
                          "guarded_s": small["guarded"]["long"]["best"], "ratio": small["ratio"]["best"],
                          "guarded_ratio": small["guarded_ratio"]["best"],
                          "floor": small["guarded"]["long"]["best"] / small["direct"]["long"]["best"],
                          "partitions": small["partitions"]["long"]}
        result["batch"] = measure_batch(rounds=max(rounds, tiny_rounds))
    return result


def _measure(rounds: int, days_long: int, days_short: int, rows_per_day: int, parallel: int, where: str | None,
             guarded: bool = True) -> dict:  # long: one measurement's steps in the order they run
    from ops.pipelines.definition import load_pipelines
    from ops.core.settings import load_settings

    inv = str(Path(sys.executable).parent / "inv")
    sides = ("chops", "direct", "guarded") if guarded else ("chops", "direct")
    with tempfile.TemporaryDirectory(prefix="chops-bench-backfill-", dir=where) as tmp:
        tmp = Path(tmp)
        _check_disk(tmp, days_long, rows_per_day)
        inbox = tmp / "inbox"
        started = time.perf_counter()
        size = generate_inbox(inbox, FIRST_DAY, days_long, rows_per_day)
        generation_s = time.perf_counter() - started
        settings = load_settings(environ=_environ(tmp / "var"))
        registry = load_pipelines(settings)
        plans = {"direct": direct_plan(settings, inbox, FIRST_DAY, days_long)}
        if guarded:
            plans["guarded"] = direct_plan(settings, inbox, FIRST_DAY, days_long, guarded=True)
        times = {(side, n): [] for side in sides for n in (days_short, days_long)}
        rss = {(side, n): [] for side in sides for n in (days_short, days_long)}
        times[("keep", days_long)], rss[("keep", days_long)] = [], []
        keep = guarded and rows_per_day > TINY["rows_per_day"]  # where memory is what the days take
        partitions = {}
        for number in range(1, rounds + 1):
            for n in (days_short, days_long):
                c = _chops(tmp, f"chops-{n}-{number}", inbox, inv, FIRST_DAY, n, parallel)
                partitions[n] = c["succeeded"]
                for side in sides:
                    if side == "chops" or (side == "guarded" and n != days_long):
                        continue  # the hand-written job is measured on the long run only
                    d = _direct(tmp, f"{side}-{n}-{number}", inbox, inv, plans[side], n)
                    _check_rows(c, d, registry, n, rows_per_day)
                    times[(side, n)].append(d["seconds"])
                    rss[(side, n)].append(d["rss_mb"])
                times[("chops", n)].append(c["seconds"])
                rss[("chops", n)].append(c["rss_mb"])
                if keep and n == days_long:  # the same backfill trading memory for time: never released
                    f = _chops(tmp, f"keep-{n}-{number}", inbox, inv, FIRST_DAY, n, parallel, KEEP_MEMORY)
                    _check_rows(f, d, registry, n, rows_per_day)
                    times[("keep", n)].append(f["seconds"])
                    rss[("keep", n)].append(f["rss_mb"])
    side = {s: {key: {**_stats(times[(s, n)]), "peak_rss_mb": max(rss[(s, n)])}
                for key, n in (("short", days_short), ("long", days_long)) if times[(s, n)]} for s in sides}
    chops_long, direct_long = side["chops"]["long"], side["direct"]["long"]
    factor = days_long / days_short
    peak = max(side["chops"]["short"]["peak_rss_mb"], side["chops"]["long"]["peak_rss_mb"])
    result = {
        "benchmark": "backfill", "days": {"short": days_short, "long": days_long}, "rows_per_day": rows_per_day,
        "rounds": rounds, "parallel": parallel, "partitions": {"short": partitions[days_short],
                                                                "long": partitions[days_long]},
        "chops": side["chops"], "direct": side["direct"],
        "ratio": {"best": chops_long["best"] / direct_long["best"],
                  "median": chops_long["median"] / direct_long["median"]},
        "ratio_short": {"best": side["chops"]["short"]["best"] / side["direct"]["short"]["best"],
                        "median": side["chops"]["short"]["median"] / side["direct"]["short"]["median"]},
        "scaling": chops_long["best"] / (side["chops"]["short"]["best"] * factor),
        "direct_scaling": direct_long["best"] / (side["direct"]["short"]["best"] * factor),
        "peak_rss_mb": peak,
        "rss_ratio": peak / max(side["direct"]["short"]["peak_rss_mb"], side["direct"]["long"]["peak_rss_mb"]),
        "generation_s": generation_s, "bytes": size,
        "goals": dict(GOALS),
        "environment": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpu_count": os.cpu_count()},
    }
    if guarded:
        result["guarded"] = side["guarded"]
        result["guarded_ratio"] = {"best": chops_long["best"] / side["guarded"]["long"]["best"],
                                   "median": chops_long["median"] / side["guarded"]["long"]["median"]}
    if times[("keep", days_long)]:
        keep = {**_stats(times[("keep", days_long)]), "peak_rss_mb": max(rss[("keep", days_long)])}
        result["keep_memory"] = {"long": keep, "guarded_ratio": keep["best"] / side["guarded"]["long"]["best"],
                                 "ratio": keep["best"] / direct_long["best"]}
    return result


# --- range builds (batch_days) ------------------------------------------------------------------------------------

BATCH_PIPELINE = """
from ops.pipelines import checks, pipeline

@pipeline(name="tiny", target="tiny_t", batch_days={batch_days}, checks=[checks.not_empty(), checks.unique("n")])
def build(run):
    run.db.command(f"INSERT INTO `{{run.staging}}` " + SQL, run.params(rows={rows}))
"""
# The build's SELECT, for one day (start = end) or a range: ``rows`` rows a day, the same on both sides.
BATCH_SQL = ("SELECT addDays({start:Date}, intDiv(number, {rows:UInt64})) AS day, number % {rows:UInt64} AS n "
             "FROM numbers({rows:UInt64} * toUInt64(dateDiff('day', {start:Date}, {end:Date}) + 1))")
BATCH_TABLE = "CREATE TABLE tiny_t (day Date, n UInt64) ENGINE = MergeTree PARTITION BY day ORDER BY n"


def measure_batch(days: int = 60, rows_per_day: int = 200, batch_days: int = 30, rounds: int = 1) -> dict:
    """A generated pipeline of ``rows_per_day`` rows a day, backfilled over ``days`` by ``inv backfill`` with
    ``batch_days`` and with 1, against its per-day statements run directly (one ``INSERT`` a day). The pipeline
    lives in a temporary folder, deleted at the end with every database."""
    from ops.core.errors import WorkFailed
    from ops.dev.benchmarks import scratch_dir

    inv = str(Path(sys.executable).parent / "inv")
    where, _ = scratch_dir()
    last = FIRST_DAY + timedelta(days=days - 1)
    times: dict[str, list[float]] = {"batch": [], "single": [], "direct": []}
    with tempfile.TemporaryDirectory(prefix="chops-bench-batch-", dir=where) as tmp:
        tmp = Path(tmp)
        (tmp / "inbox").mkdir()
        plan = [[("sql", f"INSERT INTO tiny_t {BATCH_SQL}", {"start": day, "end": day, "rows": rows_per_day})]
                for day in (FIRST_DAY + timedelta(days=i) for i in range(days))]
        plan_file = tmp / "plan.pkl"
        plan_file.write_bytes(pickle.dumps(plan))
        for number in range(1, rounds + 1):
            for side, n in (("batch", batch_days), ("single", 1), ("direct", 1)):
                folder = tmp / f"pipelines-{side}-{number}"
                folder.mkdir()
                (folder / "tiny.py").write_text(f"SQL = {BATCH_SQL!r}\n" +
                                                BATCH_PIPELINE.format(batch_days=n, rows=rows_per_day))
                var, env = _fresh_var(tmp, f"{side}-{number}", tmp / "inbox", inv)
                env["CHOPS_PIPELINES__DIR"] = str(folder)
                try:
                    _run([inv, "db.query", BATCH_TABLE], env)
                    if side == "direct":
                        from ops.core.settings import load_settings

                        args = [sys.executable, "-c", DIRECT, str(var / "clickhouse"),
                                load_settings(environ=env).get("clickhouse.database"), str(plan_file)]
                    else:
                        args = [inv, "backfill", "--start", FIRST_DAY.isoformat(), "--end", last.isoformat(),
                                "--parallel", "1", "--json"]
                    took, _, out = _run(args, env)
                    built = _run([inv, "db.query", "SELECT count() FROM tiny_t"], env)[2]
                finally:
                    _drop_var(var)
                if str(days * rows_per_day) not in built:
                    raise WorkFailed(f"{side}: tiny_t has {built.strip()} rows, expected {days * rows_per_day}")
                times[side].append(took)
    best = {side: min(t) for side, t in times.items()}
    return {"days": days, "rows_per_day": rows_per_day, "batch_days": batch_days, "seconds": best,
            "ratio": best["batch"] / best["direct"], "ratio_single": best["single"] / best["direct"]}


def print_report(result: dict) -> None:
    from ops.core.output import print_table

    short, long = result["days"]["short"], result["days"]["long"]
    rows = result["rows_per_day"]
    scale_col = f"{long}d / ({long}/{short} x {short}d)"
    table = []
    sides = [("chops", f"chops (inv backfill --parallel {result['parallel']})", result["ratio"]["best"]),
             ("direct", "direct (the same statements in a loop)", 1.0)]
    if "guarded" in result:
        sides.append(("guarded", "guarded (by hand: staging, checks, swap)",
                      result["ratio"]["best"] / result["guarded_ratio"]["best"]))
    for side, label, ratio in sides:
        r = result[side]
        scaling = result["scaling"] if side == "chops" else result["direct_scaling"] if side == "direct" else None
        table.append((label, f"{r['short']['best']:.2f}" if "short" in r else "-", f"{r['long']['best']:.2f}",
                      f"{rows * long / r['long']['best']:,.0f}", f"{scaling:.3f}" if scaling else "-",
                      f"{max(v['peak_rss_mb'] for v in r.values()):.0f}", f"{ratio:.2f}x"))
    columns = ["backfilling", f"{short} days s", f"{long} days s", "rows / s", scale_col, "peak RSS MB",
               f"vs direct ({long} days)"]
    print_table(table, columns,
                title=f"{rows:,} rows a day, 3 pipelines, best of {result['rounds']} round(s), process start "
                      f"included (median ratio {result['ratio']['median']:.2f}x, {short} days "
                      f"{result['ratio_short']['best']:.2f}x; inbox generated in {result['generation_s']:.1f}s; "
                      f"on {result.get('storage', '?')})",
                right=columns[1:])
    goals = result["goals"]
    checks = [("chops / direct", f"{result['ratio']['best']:.3f}", f"<= {goals['ratio']:g}",
               result["ratio"]["best"] <= goals["ratio"])]
    if "guarded_ratio" in result:
        checks.append(("chops / guarded (chops' own overhead)", f"{result['guarded_ratio']['best']:.3f}",
                       f"<= {goals['guarded_ratio']:g}", result["guarded_ratio"]["best"] <= goals["guarded_ratio"]))
    if "tiny" in result:
        t = result["tiny"]
        checks.append((f"tiny: {t['rows_per_day']} rows/day x {t['days']} days ({t['chops_s']:.2f} s vs "
                       f"{t['direct_s']:.2f} s; the guarded job itself {t['floor']:.2f}x, chops / guarded "
                       f"{t['guarded_ratio']:.2f}x)", f"{t['ratio']:.3f}", f"<= {goals['tiny_ratio']:g}",
                       t["ratio"] <= goals["tiny_ratio"]))
    if "batch" in result:
        b = result["batch"]
        checks.append((f"tiny, batch_days={b['batch_days']}: {b['rows_per_day']} rows/day x {b['days']} days "
                       f"({b['seconds']['batch']:.2f} s vs {b['seconds']['direct']:.2f} s direct; batch_days=1 "
                       f"{b['ratio_single']:.2f}x)", f"{b['ratio']:.3f}", f"<= {goals['tiny_ratio']:g}",
                       b["ratio"] <= goals["tiny_ratio"]))
    checks += [(f"scaling ({long} vs {short} days)", f"{result['scaling']:.3f}", f"<= {goals['scaling']:g}",
                result["scaling"] <= goals["scaling"]),
               ("peak RSS of chops, MB", f"{result['peak_rss_mb']:.0f}", f"< {goals['peak_rss_mb']:g}",
                result["peak_rss_mb"] < goals["peak_rss_mb"])]
    if "keep_memory" in result:  # the other side of the trade: never giving memory back
        k = result["keep_memory"]
        checks += [(f"memory_release_mb = 0: chops / guarded ({k['long']['best']:.2f} s)", f"{k['guarded_ratio']:.3f}",
                    f"<= {goals['guarded_ratio']:g}", k["guarded_ratio"] <= goals["guarded_ratio"]),
                   ("memory_release_mb = 0: peak RSS, MB", f"{k['long']['peak_rss_mb']:.0f}",
                    f"< {goals['peak_rss_mb']:g}", k["long"]["peak_rss_mb"] < goals["peak_rss_mb"])]
    print_table([(name, value, goal, "met" if ok else "MISSED") for name, value, goal, ok in checks],
                ["goal", "measured", "target", "result"], title="goals", right=["measured", "target"])


def main(argv=None) -> int:
    from ops.core.output import print_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-day", type=int, default=1_000_000)
    parser.add_argument("--days-long", type=int, default=30)
    parser.add_argument("--days-short", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=1, help="inv backfill --parallel (default 1)")
    parser.add_argument("--no-tiny", action="store_true", help="leave out the 200-rows-a-day run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.rounds, days_long=args.days_long, days_short=args.days_short,
                     rows_per_day=args.rows_per_day, parallel=args.parallel, tiny=not args.no_tiny)
    print_json(result) if args.json else print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
