"""Pipeline run: one day of about a million events ingested through chops vs the raw load statements.

* chops: ``inv pipeline.run events_ingest --date D --force``: the ledger, the partition's lock, a staging table,
  the checks (unique event_id, within the day, no NULL user), REPLACE PARTITION.
* direct: a Python process that opens the same embedded engine with clickhouse_connect, creates a fresh table of
  the same structure, and loads the same two files with the statement chops runs on the embedded engine
  (``INSERT … FROM INFILE … FORMAT CSVWithNames`` / ``JSONEachRow``, from ``ops.clickhouse.infile_sql``).

Both are subprocesses (a process start is in each), run one after the other on the same data path (the embedded
engine allows one process per path), in a temporary var/ directory: the user's var/ is never touched. The files
are generated once (``ops.pipelines.sample_data``) and reused by every round. Goal: ratio <= 1.3.

    python bench/pipeline_run.py [--rows N] [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `ops` importable
    sys.path.insert(0, str(ROOT))

DAY = date(2025, 1, 15)  # a fixed day in the past (the runner refuses future days)

# The baseline: the same files, the same engine, no chops. Arguments: data path, round number, the load statements.
DIRECT = """
import sys
import clickhouse_connect

path, number, statements = sys.argv[1], sys.argv[2], sys.argv[3:]
client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
client.command(f"CREATE DATABASE direct_{number} ENGINE = Atomic")
client.command(f"CREATE TABLE direct_{number}.events AS chops.events")
client.database = f"direct_{number}"
for sql in statements:
    client.command(sql)
print(client.command("SELECT count() FROM events"))
client.close()
"""


def load_statements(files: list[str]) -> list[str]:
    """What ``Run.insert_file`` runs for each file on the embedded engine (into ``events``)."""
    from ops.clickhouse.client import infile_sql
    from ops.pipelines.runner import NO_BAD_ROWS
    from pipelines.events_ingest import FORMATS

    return [infile_sql("events", name, FORMATS[Path(name).suffix], None, NO_BAD_ROWS) for name in files]


def _environ(tmp: Path) -> dict[str, str]:
    """The parent's environment without chops settings, pointed at the temporary directory."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CHOPS_") and k not in ("CLICKHOUSE_URL", "COV_CORE_SOURCE")}
    env.update(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp / "var"), CHOPS_PATHS__LOGS=str(tmp / "log"),
               CHOPS_ENV_FILE=str(tmp / "none.env"))
    return env


def _run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    from ops.core.errors import WorkFailed

    started = time.perf_counter()
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    took = time.perf_counter() - started
    if out.returncode != 0:
        raise WorkFailed(f"{' '.join(Path(a).name for a in args[:3])} failed (exit {out.returncode}): "
                         f"{(out.stderr or out.stdout).strip()[-800:]}")
    return took, out.stdout


def measure(rounds: int = 3, rows: int = 1_000_000) -> dict:
    from ops.core.errors import BadInput, WorkFailed
    from ops.pipelines.sample_data import write_sample_data
    from ops.core.settings import load_settings

    if rounds < 1 or rows < 1:
        raise BadInput(f"rounds and rows must be at least 1, got {rounds} and {rows}")
    inv = str(Path(sys.executable).parent / "inv")
    with tempfile.TemporaryDirectory(prefix="chops-bench-pipeline-") as tmp:
        tmp = Path(tmp)
        env = _environ(tmp)
        settings = load_settings(environ=env)
        started = time.perf_counter()
        [day] = write_sample_data(settings, 1, end=DAY, rows_per_day=rows)
        generate_s = time.perf_counter() - started
        files = sorted(day["files"])
        size = sum(Path(f).stat().st_size for f in files)
        data_path = str(settings.path("paths.var") / "clickhouse")
        _run([inv, "db.setup"], env)
        _run([inv, "db.migrate"], env)
        chops_times, direct_times = [], []
        for number in range(1, rounds + 1):
            took, _ = _run([inv, "pipeline.run", "events_ingest", "--date", DAY.isoformat(), "--force"], env)
            chops_times.append(took)
            took, out = _run([sys.executable, "-c", DIRECT, data_path, str(number), *load_statements(files)], env)
            direct_times.append(took)
            if int(out.strip().splitlines()[-1]) != rows:
                raise WorkFailed(f"the direct load wrote {out.strip()} rows, expected {rows}")
    best = {"chops": min(chops_times), "direct": min(direct_times)}
    median = {"chops": statistics.median(chops_times), "direct": statistics.median(direct_times)}
    return {
        "benchmark": "pipeline_run", "rows": rows, "rounds": rounds, "generate_s": generate_s,
        "bytes": size,
        "chops": {"best": best["chops"], "median": median["chops"], "times": chops_times},
        "direct": {"best": best["direct"], "median": median["direct"], "times": direct_times},
        "ratio": {"best": best["chops"] / best["direct"], "median": median["chops"] / median["direct"]},
        "environment": {"python": platform.python_version(), "platform": platform.platform()},
    }


def print_report(result: dict) -> None:
    from ops.core.output import print_table

    n = result["rows"]
    print_table(
        [("chops (inv pipeline.run events_ingest)", f"{result['chops']['best']:.3f}",
          f"{n / result['chops']['best']:,.0f}", f"{result['ratio']['best']:.2f}x"),
         ("direct (INSERT … FROM INFILE)", f"{result['direct']['best']:.3f}",
          f"{n / result['direct']['best']:,.0f}", "1.00x")],
        ["loading one day", "best s", "rows / s", "ratio"],
        title=f"{n:,} rows, best of {result['rounds']} rounds, process start included "
              f"(median ratio {result['ratio']['median']:.2f}x)",
        right=["best s", "rows / s", "ratio"],
    )


def main(argv=None) -> int:
    from ops.core.output import print_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.rounds, args.rows)
    print_json(result) if args.json else print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
