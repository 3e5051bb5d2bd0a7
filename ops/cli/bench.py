"""bench: the benchmarks (bench/*.py) and the performance gate."""

from __future__ import annotations

from ops.cli.base import settings, task, whole_number

BENCHMARKS = ("cli_latency", "migrations", "pipeline_run", "backfill")


def _gate_rows(name: str, result: dict, s) -> list[dict]:
    """The performance gate's rows for one benchmark's result: ratios only, against bench.max_* limits."""
    from ops.dev import gates

    if name == "cli_latency":
        return gates.performance_gate(result, s)
    if name == "migrations":
        return [gates.ratio_gate(f"{result['count']} migrations vs direct DDL", result["ratio"]["best"],
                                 s.get("bench.max_migrations_ratio"))]
    if name == "pipeline_run":
        return [gates.ratio_gate(f"{result['rows']:,}-row pipeline run vs direct load", result["ratio"]["best"],
                                 s.get("bench.max_pipeline_run_ratio"))]
    d = result["days"]
    return [gates.ratio_gate(f"{d['long']}-day backfill vs direct statements", result["ratio"]["best"],
                             s.get("bench.max_backfill_ratio")),
            gates.ratio_gate(f"{d['long']} days vs {d['long']}/{d['short']} x {d['short']} days", result["scaling"],
                             s.get("bench.max_backfill_scaling")),
            gates.ratio_gate("backfill peak RSS vs direct", result["rss_ratio"], s.get("bench.max_backfill_rss_ratio"))]


def load_benchmark(name: str):
    """bench/<name>.py as a module; bench/ is a directory of scripts, not a package."""
    import importlib.util

    from ops import ROOT

    path = ROOT / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"chops_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_benchmarks(s, rounds: int, only: str | list[str] | None = None, show: bool = True) -> tuple[dict, list[dict]]:
    """Measure each benchmark, write reports/bench/<name>.json, and return the results and the gate's rows."""
    from ops.core import output

    names = [only] if isinstance(only, str) else list(only) if only else list(BENCHMARKS)
    results, rows = {}, []
    for name in names:
        module = load_benchmark(name)
        # the heavy ones: best of at most 3 (the 30-day backfill: one round is ~2.5 minutes)
        n = rounds if name == "cli_latency" else 1 if name == "backfill" else min(rounds, 3)
        output.info(f"benchmark {name}: {n} round(s)")
        result = module.measure(rounds=n)
        rows += _gate_rows(name, result, s)
        path = s.path("paths.reports") / "bench" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(output.to_json(result) + "\n")
        results[name] = result
        if show:
            module.print_report(result)
    return results, rows


@task(help={
    "rounds": "timed runs per command (default: bench.rounds; migrations use at most 3)",
    "only": f"run one benchmark: {', '.join(BENCHMARKS)}",
    "gate": "apply the performance gate (bench.max_* in config); exit 1 if it fails",
    "json": "print the JSON results instead of tables",
})
def bench(c, rounds=None, only=None, gate=False, json=False):
    """Run the benchmarks: ratios to baselines measured in the same run; write reports/bench/*.json."""
    from ops.dev import gates
    from ops.core import output
    from ops.core.errors import BadInput, WorkFailed

    s = settings()
    if only is not None and only not in BENCHMARKS:
        raise BadInput(f"unknown benchmark {only!r}: choose {', '.join(BENCHMARKS)}")
    rounds = whole_number(s.get("bench.rounds") if rounds is None else rounds, "--rounds")
    results, rows = run_benchmarks(s, rounds, only, show=not json)
    if json:
        output.print_json({"results": results, "gate": rows if gate else None})
    elif gate:
        gates.print_gate(rows)
    if gate:
        failed = [r for r in rows if not r["passed"]]
        if failed:
            raise WorkFailed("performance gate failed: " + "; ".join(gates.describe(r) for r in failed))
