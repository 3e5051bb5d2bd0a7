"""Quality gates: pure checks over measured results, so tests can feed them any numbers.

The performance gate judges CLI latency (``bench/cli_latency.py``) by ratios to ``python -c "import invoke"``
measured in the same run, never by absolute times. It uses the best of the rounds of each command: noise only
ever adds time, so the minimum is the most stable estimate of what a command costs.
"""

from __future__ import annotations

from typing import Any

from ops.core.errors import BadInput, WorkFailed
from ops.core.output import print_table

BASELINE = "python -c 'import invoke'"
BASELINE_LABEL = "import invoke"
# Gated command -> the settings key holding its limit.
PERFORMANCE_LIMITS = {
    "inv --list": "bench.max_inv_list_ratio",
    "inv --help db.info": "bench.max_inv_help_ratio",
}


def _best(results: dict[str, Any], name: str) -> float:
    try:
        best = float(results["commands"][name]["best"])
    except (KeyError, TypeError, ValueError):
        raise BadInput(f"benchmark results have no best time for `{name}`") from None
    if not best > 0:
        raise BadInput(f"benchmark results: best time of `{name}` must be positive, got {best}")
    return best


def performance_gate(results: dict[str, Any], settings) -> list[dict[str, Any]]:
    """One row per gated command: its best-of-rounds ratio to the baseline's best, the limit, and the verdict."""
    baseline = _best(results, BASELINE)
    rows = []
    for name, key in PERFORMANCE_LIMITS.items():
        ratio = _best(results, name) / baseline
        limit = float(settings.get(key))
        rows.append({"gate": name, "measured": ratio, "limit": limit, "passed": ratio <= limit})
    return rows


def check_performance(results: dict[str, Any], settings) -> list[dict[str, Any]]:
    """The gate's rows when every one passes; WorkFailed naming each failing command and its limit otherwise."""
    rows = performance_gate(results, settings)
    failed = [f"{r['gate']} is {r['measured']:.2f}x {BASELINE_LABEL} (limit {r['limit']:g}x)"
              for r in rows if not r["passed"]]
    if failed:
        raise WorkFailed("performance gate failed: " + "; ".join(failed))
    return rows


def ratio_gate(name: str, measured: float, limit: float) -> dict[str, Any]:
    """One gate row for a ratio measured by a benchmark (e.g. chops vs direct DDL)."""
    if not measured > 0:
        raise BadInput(f"benchmark ratio of `{name}` must be positive, got {measured}")
    return {"gate": name, "measured": measured, "limit": float(limit), "passed": measured <= float(limit)}


def describe(row: dict[str, Any]) -> str:
    return f"{row['gate']} is {row['measured']:.2f}x (limit {row['limit']:g}x)"


def print_gate(rows: list[dict[str, Any]]) -> None:
    print_table([(r["gate"], f"{r['measured']:.2f}x", f"{r['limit']:g}x", "pass" if r["passed"] else "FAIL")
                 for r in rows], ["gate", "measured (best)", "limit", "result"], title="performance gate",
                right=["measured (best)", "limit"])
