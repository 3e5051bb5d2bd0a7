"""The benchmarks (``bench/*.py``, scripts rather than a package): load one, measure it, write its report, and turn
its ratios into the performance gate's rows (``bench.max_*`` limits). ``inv bench`` and ``inv test --ci`` call
:func:`run_benchmarks`."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

from ops import ROOT
from ops.core import output
from ops.dev import gates

BENCHMARKS = ("cli_latency", "migrations", "pipeline_run", "backfill", "backfill_fleet")


def gate_rows(name: str, result: dict, s) -> list[dict]:
    """The performance gate's rows for one benchmark's result: ratios only, against bench.max_* limits."""
    if name == "cli_latency":
        return gates.performance_gate(result, s)
    if name == "migrations":
        return [gates.ratio_gate(f"{result['count']} migrations vs direct DDL", result["ratio"]["best"],
                                 s.get("bench.max_migrations_ratio"))]
    if name == "pipeline_run":
        return [gates.ratio_gate(f"{result['rows']:,}-row pipeline run vs direct load", result["ratio"]["best"],
                                 s.get("bench.max_pipeline_run_ratio"))]
    if name == "backfill_fleet":  # its goals are its limits (the benchmark's GOALS)
        goals = result["goals"]
        fleet = f"fleet of {result['pipelines']} x {result['days']} days"
        rows = [gates.ratio_gate(f"{fleet}, per-day pipelines, vs direct", result["fleet"]["ratio"],
                                 goals["fleet_ratio"])]
        if "batch_fleet" in result:  # the same fleet as range builds, against the same baseline
            rows.append(gates.ratio_gate(f"{fleet}, batch_days = {result['batch_days']} pipelines, vs direct",
                                         result["batch_fleet"]["ratio"], goals["fleet_ratio"]))
        rows.append(gates.ratio_gate(f"planning {result['pipelines']} x {result['plan_days']} days, seconds / goal",
                                     result["planning"]["ledger_s"] / goals["planning_s"], 1.0))
        return rows + [gates.ratio_gate(f"{cmd} with a big ledger vs an empty one", r["ratio"], goals["reader_ratio"])
                       for cmd, r in result["readers"].items()]
    d = result["days"]
    rows = [gates.ratio_gate(f"{d['long']}-day backfill vs direct statements", result["ratio"]["best"],
                             s.get("bench.max_backfill_ratio")),
            gates.ratio_gate(f"{d['long']} days vs {d['long']}/{d['short']} x {d['short']} days", result["scaling"],
                             s.get("bench.max_backfill_scaling")),
            gates.ratio_gate("backfill peak RSS vs direct", result["rss_ratio"], s.get("bench.max_backfill_rss_ratio"))]
    if "guarded_ratio" in result:  # the goals are the limits of these two
        rows.append(gates.ratio_gate(f"{d['long']}-day backfill vs the hand-written guarded job",
                                     result["guarded_ratio"]["best"], result["goals"]["guarded_ratio"]))
    if "tiny" in result:
        rows.append(gates.ratio_gate("tiny partitions vs direct statements", result["tiny"]["ratio"],
                                     result["goals"]["tiny_ratio"]))
    if "batch" in result:
        rows.append(gates.ratio_gate(f"tiny partitions, batch_days = {result['batch']['batch_days']}, vs direct",
                                     result["batch"]["ratio"], result["goals"]["tiny_ratio"]))
    return rows


def scratch_dir() -> tuple[str | None, str]:
    """Where a benchmark's databases go, and a note saying so: /dev/shm when it is a tmpfs, else the default
    temporary folder (a disk's timings drift: creating files slows down after many were deleted)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        mounts = []
    if any(len(m) > 2 and m[1] == "/dev/shm" and m[2] == "tmpfs" for m in mounts):
        return "/dev/shm", "tmpfs (/dev/shm)"
    return None, f"{tempfile.gettempdir()} (no tmpfs found: a disk's timings drift)"


def load_benchmark(name: str):
    """bench/<name>.py as a module; bench/ is a directory of scripts, not a package."""
    path = ROOT / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"chops_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_benchmarks(s, rounds: int, only: str | list[str] | None = None, show: bool = True) -> tuple[dict, list[dict]]:
    """Measure each benchmark, write reports/bench/<name>.json, and return the results and the gate's rows."""
    names = [only] if isinstance(only, str) else list(only) if only else list(BENCHMARKS)
    results, rows = {}, []
    for name in names:
        module = load_benchmark(name)
        # the heavy ones: best of at most 3 (the 30-day backfill: one round is ~2.5 minutes)
        n = rounds if name == "cli_latency" else 1 if name.startswith("backfill") else min(rounds, 3)
        output.info(f"benchmark {name}: {output.plural(n, 'round')}")
        result = module.measure(rounds=n)
        rows += gate_rows(name, result, s)
        path = s.path("paths.reports") / "bench" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(output.to_json(result) + "\n")
        results[name] = result
        if show:
            module.print_report(result)
    return results, rows


def performance_gate(s) -> list[dict]:
    """CI's performance gate: the benchmarks of ``bench.ci_benchmarks`` (best of ``bench.rounds``), judged against
    the configured limits, each failed row with its reason."""
    names = [n.strip() for n in s.get("bench.ci_benchmarks").split(",") if n.strip()]
    _, rows = run_benchmarks(s, int(s.get("bench.rounds")), only=names, show=False)
    for row in rows:
        row["reason"] = "" if row["passed"] else gates.describe(row)
    return rows
