"""bench: CLI latency benchmark and performance gate."""

from __future__ import annotations

from ops.cli.base import settings, task


def _cli_latency():
    """bench/cli_latency.py as a module; bench/ is a directory of scripts, not a package."""
    import importlib.util

    from ops import ROOT

    path = ROOT / "bench" / "cli_latency.py"
    spec = importlib.util.spec_from_file_location("chops_bench_cli_latency", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@task(help={
    "rounds": "timed runs per command (default: bench.rounds)",
    "gate": "apply the performance gate after measuring; exit 1 if it fails",
    "json": "print the JSON result instead of the table",
})
def bench(c, rounds=None, gate=False, json=False):
    """Measure CLI latency as ratios to `python -c 'import invoke'`; write reports/bench/cli_latency.json."""
    from ops import gates, output
    from ops.errors import BadInput

    s = settings()
    if rounds is None:
        rounds = s.get("bench.rounds")
    try:
        rounds = int(rounds)
    except ValueError:
        raise BadInput(f"--rounds must be a whole number, got {rounds!r}") from None
    if rounds < 1:
        raise BadInput(f"--rounds must be at least 1, got {rounds}")

    cli_latency = _cli_latency()
    plural = "s" if rounds != 1 else ""
    output.info(f"measuring CLI latency: {rounds} round{plural} of {len(cli_latency.commands())} commands")
    result = cli_latency.measure(rounds)
    if gate:
        result["gate"] = gates.performance_gate(result, s)
    path = cli_latency.write_json(result, cli_latency.output_path(s))
    if json:
        output.print_json(result)
    else:
        cli_latency.print_report(result)
        if gate:
            cli_latency.print_gate(result["gate"])
    output.info(f"wrote {cli_latency.display_path(path)}")
    if gate:
        gates.check_performance(result, s)
