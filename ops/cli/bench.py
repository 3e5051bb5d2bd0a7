"""bench: the benchmarks (bench/*.py) and the performance gate."""

from __future__ import annotations

from ops.cli.base import settings, task

BENCHMARKS = ("cli_latency", "migrations")


def load_benchmark(name: str):
    """bench/<name>.py as a module; bench/ is a directory of scripts, not a package."""
    import importlib.util

    from ops import ROOT

    path = ROOT / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"chops_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_benchmarks(s, rounds: int, only: str | None = None, show: bool = True) -> tuple[dict, list[dict]]:
    """Measure each benchmark, write reports/bench/<name>.json, and return the results and the gate's rows."""
    from ops import gates, output

    names = [only] if only else list(BENCHMARKS)
    results, rows = {}, []
    for name in names:
        module = load_benchmark(name)
        if name == "cli_latency":
            output.info(f"benchmark {name}: {rounds} round(s)")
            result = module.measure(rounds)
            rows += gates.performance_gate(result, s)
        else:
            output.info(f"benchmark {name}: {min(rounds, 3)} round(s)")
            result = module.measure(rounds=min(rounds, 3))
            rows.append(gates.ratio_gate(f"{result['count']} migrations vs direct DDL", result["ratio"]["best"],
                                         s.get("bench.max_migrations_ratio")))
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
    from ops import gates, output
    from ops.errors import BadInput, WorkFailed

    s = settings()
    if only is not None and only not in BENCHMARKS:
        raise BadInput(f"unknown benchmark {only!r}: choose {', '.join(BENCHMARKS)}")
    try:
        rounds = int(s.get("bench.rounds") if rounds is None else rounds)
    except ValueError:
        raise BadInput(f"--rounds must be a whole number, got {rounds!r}") from None
    if rounds < 1:
        raise BadInput(f"--rounds must be at least 1, got {rounds}")
    results, rows = run_benchmarks(s, rounds, only, show=not json)
    if json:
        output.print_json({"results": results, "gate": rows if gate else None})
    elif gate:
        gates.print_gate(rows)
    if gate:
        failed = [r for r in rows if not r["passed"]]
        if failed:
            raise WorkFailed("performance gate failed: " + "; ".join(gates.describe(r) for r in failed))
