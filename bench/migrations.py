"""Migrations: 200 small migrations applied through chops vs the same statements executed directly.

Both run on one embedded engine in this process, each round in fresh databases, so the ratio measures only what
chops adds per migration: reading and checking the files, the syntax check, the lock, and the journal. Goal:
ratio <= 3 (a plain yoyo backend measured 4-6x).

    python bench/migrations.py [--count N] [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `ops` importable
    sys.path.insert(0, str(ROOT))


def statement(i: int) -> str:
    return f"CREATE TABLE m{i:04d} (id UInt64, at DateTime64(3, 'UTC'), v String) ENGINE = MergeTree ORDER BY id"


def write_migrations(directory: Path, count: int) -> None:
    for i in range(1, count + 1):
        (directory / f"{i:04d}_m{i:04d}.sql").write_text(f"-- migration {i}\n{statement(i)};\n")


def measure(count: int = 200, rounds: int = 3) -> dict:
    from ops.clickhouse.client import close_engine, connect
    from ops.migrations.migrator import Migrations
    from ops.core.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="chops-bench-migrations-") as tmp:
        tmp = Path(tmp)
        (tmp / "migrations").mkdir()
        write_migrations(tmp / "migrations", count)
        settings = load_settings(environ={"CHOPS_ENV": "test", "CHOPS_PATHS__VAR": str(tmp / "var"),
                                          "CHOPS_ENV_FILE": str(tmp / "none.env"),
                                          "CHOPS_MIGRATIONS__DIR": str(tmp / "migrations")})
        chops_times, direct_times = [], []
        try:
            for _ in range(rounds):
                direct = connect(settings, database=f"direct_{uuid.uuid4().hex[:8]}", create=True)
                started = time.perf_counter()
                for i in range(1, count + 1):
                    direct.command(statement(i))
                direct_times.append(time.perf_counter() - started)

                db = connect(settings, database=f"chops_{uuid.uuid4().hex[:8]}", create=True)
                started = time.perf_counter()
                applied = Migrations(settings, db=db).migrate()["applied"]
                chops_times.append(time.perf_counter() - started)
                assert len(applied) == count, applied
        finally:
            close_engine()
    paired = [c / d for c, d in zip(chops_times, direct_times)]
    best = {"chops": min(chops_times), "direct": min(direct_times)}
    median = {"chops": statistics.median(chops_times), "direct": statistics.median(direct_times)}
    return {
        "benchmark": "migrations", "count": count, "rounds": rounds,
        "chops": {"best": best["chops"], "median": median["chops"]},
        "direct": {"best": best["direct"], "median": median["direct"]},
        # best: the best chops time over the best direct time; median: of each round's chops time over the direct
        # time measured just before it (paired, so a slow spell of the machine hits both)
        "ratio": {"best": best["chops"] / best["direct"], "median": statistics.median(paired)},
        "environment": {"python": platform.python_version(), "platform": platform.platform()},
    }


def print_report(result: dict) -> None:
    from ops.core.output import print_table

    n = result["count"]
    print_table(
        [("chops (inv db.migrate)", f"{result['chops']['best']:.3f}", f"{result['chops']['best'] / n * 1000:.2f}",
          f"{result['ratio']['best']:.2f}x"),
         ("direct statements", f"{result['direct']['best']:.3f}", f"{result['direct']['best'] / n * 1000:.2f}", "1.00x")],
        ["applying", "best s", "ms / migration", "ratio"],
        title=f"{n} migrations, best of {result['rounds']} rounds (median ratio {result['ratio']['median']:.2f}x)",
        right=["best s", "ms / migration", "ratio"],
    )


def main(argv=None) -> int:
    from ops.core.output import print_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.count, args.rounds)
    print_json(result) if args.json else print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
