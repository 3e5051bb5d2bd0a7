"""The test runner behind ``inv test``: selections by marker, parallel runs, reports and the coverage gate.

It runs the real pytest in a subprocess (so the run is exactly what a developer would get by hand) with the
``ops.dev.pytest_results`` plugin, JUnit XML, and with coverage through pytest-cov. Reports go to
``<paths.reports>/``: ``results.json``, ``junit.xml`` and, with coverage, ``coverage.json`` and ``coverage-html/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops import ROOT
from ops.core.errors import BadInput, WorkFailed

# pytest's exit codes (pytest.ExitCode), without importing pytest into the CLI process.
EXIT_OK, EXIT_TESTS_FAILED, EXIT_INTERRUPTED, EXIT_INTERNAL, EXIT_USAGE, EXIT_NO_TESTS = range(6)


@dataclass(frozen=True)
class Selection:
    """Which tests: kinds (combinable, none = all), ``fast`` leaves out slow and e2e, ``smoke`` only smoke."""

    unit: bool = False
    integration: bool = False
    e2e: bool = False
    fast: bool = False
    smoke: bool = False
    keyword: str | None = None

    def marker_expression(self) -> str | None:
        kinds = [k for k in ("unit", "integration", "e2e") if getattr(self, k)]
        parts = []
        if kinds:
            parts.append(" or ".join(kinds))
        if self.smoke:
            parts.append("smoke")
        if self.fast:
            parts.append("not slow and not e2e")
        if not parts:
            return None
        return " and ".join(f"({p})" if " or " in p else p for p in parts)

    def describe(self) -> str:
        bits = []
        if self.marker_expression():
            bits.append(f"-m '{self.marker_expression()}'")
        if self.keyword:
            bits.append(f"-k '{self.keyword}'")
        return " ".join(bits) or "every test"


@dataclass(frozen=True)
class Run:
    """One pytest invocation, as plain data: the tests task builds it, :func:`execute` runs it."""

    selection: Selection
    reports: Path
    workers: str = "auto"
    coverage: bool = False
    paths: tuple[str, ...] = ("tests",)
    cwd: Path = ROOT
    extra: tuple[str, ...] = field(default_factory=tuple)

    def argv(self, python: str = sys.executable) -> list[str]:
        args = [python, "-m", "pytest", *self.paths, "-p", "ops.dev.pytest_results",
                f"--results-json={self.reports / 'results.json'}", f"--junitxml={self.reports / 'junit.xml'}",
                "-o", "junit_family=xunit2", "-q"]
        if self.workers not in ("0", "1"):
            args += ["-n", self.workers]
        else:
            args += ["-p", "no:xdist"]
        expr = self.selection.marker_expression()
        if expr:
            args += ["-m", expr]
        if self.selection.keyword:
            args += ["-k", self.selection.keyword]
        if self.coverage:
            args += ["--cov", "--cov-branch", "--cov-report=",
                     f"--cov-report=json:{self.reports / 'coverage.json'}",
                     f"--cov-report=html:{self.reports / 'coverage-html'}"]
        return args + list(self.extra)


def validate_workers(workers: Any) -> str:
    text = str(workers).strip()
    if text in ("auto", "logical") or (text.isdigit() and int(text) >= 0):
        return text
    raise BadInput(f"--workers must be a number, 'auto' or 'logical'; got {text!r}")


def execute(run: Run, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run pytest; return results.json's content. No test selected is bad input (exit 2), not a pass."""
    run.reports.mkdir(parents=True, exist_ok=True)
    for stale in ("results.json", "junit.xml", "coverage.json"):
        (run.reports / stale).unlink(missing_ok=True)
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    code = subprocess.run(run.argv(), cwd=run.cwd, env=env).returncode
    if code == EXIT_NO_TESTS:
        raise BadInput(f"no test matches the selection ({run.selection.describe()})")
    if code == EXIT_USAGE:
        raise BadInput("pytest refused the arguments (see its message above)")
    if code in (EXIT_INTERRUPTED, EXIT_INTERNAL):
        raise WorkFailed(f"the test run was interrupted or broke (pytest exit {code})")
    results_path = run.reports / "results.json"
    if not results_path.exists():
        raise WorkFailed(f"pytest exited {code} without writing {results_path}")
    results = json.loads(results_path.read_text())
    results["exit_status"] = code
    return results


def coverage_percent(reports: Path) -> float | None:
    path = reports / "coverage.json"
    if not path.exists():
        return None
    return float(json.loads(path.read_text())["totals"]["percent_covered"])


def coverage_gate(measured: float | None, minimum: float) -> dict[str, Any]:
    """Pure: the coverage gate's verdict. No measurement is a failure, not a pass."""
    if measured is None:
        return {"gate": "coverage", "measured": None, "limit": minimum, "passed": False,
                "reason": "no coverage was measured"}
    passed = measured + 1e-9 >= minimum
    return {"gate": "coverage", "measured": round(measured, 2), "limit": minimum, "passed": passed,
            "reason": "" if passed else f"coverage {measured:.2f}% is below the gate of {minimum:g}% (test.coverage_min)"}


def summary_lines(results: dict[str, Any], coverage: float | None = None, slowest: int = 5) -> list[str]:
    """A short human summary; its last line is the plain `N passed, N failed, N skipped` that CI reads."""
    t = results["totals"]
    lines = []
    if results.get("slowest"):
        lines.append(f"slowest {min(slowest, len(results['slowest']))}:")
        for test in results["slowest"][:slowest]:
            lines.append(f"  {test['duration']:7.2f}s  {test['nodeid']}")
    failed = [x for x in results["tests"] if x["outcome"] in ("failed", "error", "xpassed")]
    for test in failed[:20]:
        lines.append(f"{test['outcome'].upper():>7}  {test['nodeid']}  {test.get('message', '')}".rstrip())
    if coverage is not None:
        lines.append(f"coverage: {coverage:.1f}%")
    lines.append(f"{t['passed']} passed, {t['failed'] + t['error']} failed, {t['skipped']} skipped"
                 f" in {results['duration']:.1f}s")
    return lines
