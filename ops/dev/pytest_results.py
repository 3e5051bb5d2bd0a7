"""A pytest plugin that writes results.json: every test's outcome and duration, totals, the slowest ten and the
environment. Loaded by ``inv test`` with ``-p ops.dev.pytest_results --results-json PATH``.

With pytest-xdist the reports of every worker reach the controller, which alone writes the file.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

KNOWN_MARKERS = ("unit", "integration", "e2e", "slow", "smoke")


def pytest_addoption(parser):
    parser.addoption("--results-json", default=None, help="write each test's outcome and duration to this JSON file")


class Collector:
    def __init__(self, path: Path):
        self.path = path
        self.tests: dict[str, dict] = {}
        self.started = time.time()

    def record(self, report) -> None:
        entry = self.tests.setdefault(report.nodeid, {
            "nodeid": report.nodeid, "outcome": None, "duration": 0.0,
            "markers": sorted(m for m in KNOWN_MARKERS if m in getattr(report, "keywords", {})),
        })
        entry["duration"] = round(entry["duration"] + getattr(report, "duration", 0.0), 6)
        xfail = hasattr(report, "wasxfail")
        if report.when == "call":
            if xfail:
                entry["outcome"] = "xfailed" if report.skipped else "xpassed"
            else:
                entry["outcome"] = report.outcome
        elif report.failed:  # setup or teardown broke: an error, whatever the call did
            entry["outcome"] = "error"
        elif report.skipped and entry["outcome"] is None:
            entry["outcome"] = "xfailed" if xfail else "skipped"
        if report.failed and entry.get("message") is None:
            entry["message"] = _first_line(report)

    def write(self, exitstatus: int, config) -> None:
        tests = list(self.tests.values())
        for t in tests:
            t["outcome"] = t["outcome"] or "error"
        totals = {k: 0 for k in ("passed", "failed", "error", "skipped", "xfailed", "xpassed")}
        for t in tests:
            totals[t["outcome"]] = totals.get(t["outcome"], 0) + 1
        totals["total"] = len(tests)
        data = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "exit_status": int(exitstatus),
            "duration": round(time.time() - self.started, 3),
            "selection": {"markers": config.getoption("markexpr") or "", "keyword": config.getoption("keyword") or ""},
            "totals": totals,
            "slowest": sorted(tests, key=lambda t: t["duration"], reverse=True)[:10],
            "environment": {
                "python": platform.python_version(),
                "implementation": platform.python_implementation(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "workers": _workers(config),
                "ci": os.environ.get("CI", "") not in ("", "0", "false"),
                "argv": sys.argv[1:],
            },
            "tests": sorted(tests, key=lambda t: t["nodeid"]),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.path)


def _workers(config) -> int:
    numprocesses = getattr(config.option, "numprocesses", None)
    return int(numprocesses) if isinstance(numprocesses, int) else 0


def _first_line(report) -> str:
    text = str(getattr(report, "longreprtext", "") or "")
    lines = text.strip().splitlines()
    errors = [line[1:].strip() for line in lines if line.startswith("E ")]
    return (errors[0] if errors else lines[-1] if lines else "")[:300]


_collector: Collector | None = None


def pytest_configure(config):
    global _collector
    path = config.getoption("results_json")
    if path and not hasattr(config, "workerinput"):  # the controller (or a run without xdist) writes
        _collector = Collector(Path(path))


def pytest_runtest_logreport(report):
    if _collector is not None:
        _collector.record(report)


def pytest_sessionfinish(session, exitstatus):
    if _collector is not None:
        _collector.write(exitstatus, session.config)
