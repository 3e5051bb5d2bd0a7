"""CLI latency: wall time of `inv` commands as ratios to two baselines measured in the same run.

Baselines are ``python -c pass`` (the interpreter) and ``python -c "import invoke"`` (the least any ``inv``
command can cost). Every command gets one warm-up run, then ``rounds`` timed runs interleaved round-robin
so machine noise hits all commands alike. Reported per command: median and best seconds, and their ratios
to each baseline. Absolute times are shown but never judged; the gate (``ops.dev.gates``) uses ratios only.

    python bench/cli_latency.py [--rounds N] [--json] [--gate]

``inv db.info`` runs against a throw-away embedded database (``CHOPS_PATHS__VAR`` = a temporary directory,
set up once with ``inv db.setup``), so the project's var/ and any configured server are never touched.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `ops` importable
    sys.path.insert(0, str(ROOT))

from ops.core.errors import BadInput, WorkFailed  # noqa: E402
from ops.dev.gates import BASELINE as IMPORT_INVOKE  # noqa: E402  (the gate reads results by these names)

PYTHON = "python -c pass"
BASELINES = {"ratio_to_import_invoke": IMPORT_INVOKE, "ratio_to_python": PYTHON}


def commands() -> dict[str, list[str]]:
    """Display name -> argv. The interpreter and `inv` are the ones of the running environment."""
    python = sys.executable
    inv = str(Path(python).parent / "inv")
    return {
        PYTHON: [python, "-c", "pass"],
        IMPORT_INVOKE: [python, "-c", "import invoke"],
        "inv --list": [inv, "--list"],
        "inv --help db.info": [inv, "--help", "db.info"],
        "inv db.info": [inv, "db.info"],
    }


def _bench_env(var: str) -> dict[str, str]:
    """The process environment, pinned to an embedded engine in ``var`` and without coverage's subprocess hook
    (under ``coverage run`` every child would otherwise be traced, and timed as such)."""
    dropped = {"CLICKHOUSE_URL", "COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["CHOPS_PATHS__VAR"] = var
    env["CHOPS_CLICKHOUSE__URL"] = ""  # wins over .env: never a configured server
    return env


def _run(name: str, argv: list[str], env: dict[str, str]) -> float:
    """Seconds one run of ``argv`` took; a failing command is WorkFailed (its timing would mean nothing)."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise WorkFailed(f"benchmark command `{name}` exited {proc.returncode}: {tail[0]}")
    return elapsed


def measure(rounds: int) -> dict:
    """Time every command ``rounds`` times (after one warm-up each) and return the result dict."""
    if rounds < 1:
        raise BadInput(f"rounds must be at least 1, got {rounds}")
    cmds = commands()
    names = list(cmds)
    times: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="chops-bench-") as var:
        env = _bench_env(var)
        _run("inv db.setup", [cmds["inv --list"][0], "db.setup"], env)
        for name in names:
            _run(name, cmds[name], env)
        for r in range(rounds):
            # Round-robin, starting one further each round so no command always follows the same one.
            for name in names[r % len(names):] + names[:r % len(names)]:
                times[name].append(_run(name, cmds[name], env))

    stats = {name: {"median": statistics.median(t), "best": min(t)} for name, t in times.items()}
    result_commands = {}
    for name, s in stats.items():
        entry = {"median": s["median"], "best": s["best"]}
        for key, baseline in BASELINES.items():
            entry[key] = {stat: s[stat] / stats[baseline][stat] for stat in ("median", "best")}
        result_commands[name] = entry
    return {
        "benchmark": "cli_latency",
        "rounds": rounds,
        "commands": result_commands,
        "environment": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
        },
    }


def output_path(settings) -> Path:
    return settings.path("paths.reports") / "bench" / "cli_latency.json"


def write_json(result: dict, path: Path) -> Path:
    from ops.core.output import to_json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(result) + "\n", encoding="utf-8")
    return path


def display_path(path: Path) -> str:
    """The path relative to the project root when it is inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def print_report(result: dict) -> None:
    """The ratios as a table, median and best of the rounds."""
    from ops.core.output import print_table

    rows = []
    for name, c in result["commands"].items():
        inv, py = c["ratio_to_import_invoke"], c["ratio_to_python"]
        rows.append((name, f"{inv['median']:.2f}", f"{inv['best']:.2f}", f"{py['median']:.2f}", f"{py['best']:.2f}",
                     f"{c['best'] * 1000:.0f}"))
    columns = ["command", "invoke\nmedian", "invoke\nbest", "python\nmedian", "python\nbest", "best\nms"]
    title = f"CLI latency, {result['rounds']} rounds: ratio to `import invoke` and to `python -c pass`"
    print_table(rows, columns, title=title, right=columns[1:])


def main(argv: list[str] | None = None) -> int:
    import argparse

    from ops.dev import gates
    from ops.core import output
    from ops.core.errors import ChopsError
    from ops.core.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="timed runs per command (default: bench.rounds)")
    parser.add_argument("--json", action="store_true", help="print the JSON result instead of the table")
    parser.add_argument("--gate", action="store_true", help="apply the performance gate; exit 1 if it fails")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        rounds = settings.get("bench.rounds") if args.rounds is None else args.rounds
        plural = "s" if rounds != 1 else ""
        output.info(f"measuring CLI latency: {rounds} round{plural} of {len(commands())} commands")
        result = measure(rounds)
        if args.gate:
            result["gate"] = gates.performance_gate(result, settings)
        path = write_json(result, output_path(settings))
        if args.json:
            output.print_json(result)
        else:
            print_report(result)
            if args.gate:
                gates.print_gate(result["gate"])
        output.info(f"wrote {display_path(path)}")
        if args.gate:
            gates.check_performance(result, settings)
    except ChopsError as exc:
        print(f"error: {exc.line()}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
