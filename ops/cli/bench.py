"""bench: the benchmarks (bench/*.py) and the performance gate."""

from __future__ import annotations

from ops.cli.base import settings, task, whole_number


@task(help={
    "rounds": "timed runs per command (default: bench.rounds; migrations use at most 3)",
    "only": "run one benchmark: cli_latency, migrations, pipeline_run, backfill or backfill_fleet",
    "gate": "apply the performance gate (bench.max_* in config); exit 1 if it fails",
    "json": "print the JSON results instead of tables",
})
def bench(c, rounds=None, only=None, gate=False, json=False):
    """Run the benchmarks: ratios to baselines measured in the same run; write reports/bench/*.json."""
    from ops.core import output
    from ops.core.errors import BadInput, WorkFailed
    from ops.dev import benchmarks, gates

    s = settings()
    if only is not None and only not in benchmarks.BENCHMARKS:
        raise BadInput(f"unknown benchmark {only!r}: choose {', '.join(benchmarks.BENCHMARKS)}")
    rounds = whole_number(s.get("bench.rounds") if rounds is None else rounds, "--rounds")
    results, rows = benchmarks.run_benchmarks(s, rounds, only, show=not json)
    if json:
        output.print_json({"results": results, "gate": rows if gate else None})
    elif gate:
        gates.print_gate(rows)
    if gate:
        failed = [r for r in rows if not r["passed"]]
        if failed:
            raise WorkFailed("performance gate failed: " + "; ".join(gates.describe(r) for r in failed))
