"""test: the test runner (pytest + xdist), its reports and CI's gates."""

from __future__ import annotations

from ops.cli.base import settings, task


@task(help={
    "unit": "unit tests (combinable with --integration / --e2e)",
    "integration": "integration tests: real engine, real processes",
    "e2e": "end-to-end tests: whole commands on a fresh copy",
    "fast": "leave out slow and e2e tests (what `make test` runs)",
    "smoke": "only the smoke tests: the quick check a deploy runs on a new release",
    "coverage": "measure coverage: reports/coverage.json and reports/coverage-html/",
    "k": "only tests whose names match this pytest -k expression",
    "workers": "parallel workers (default: test.workers); 0 runs in this process",
    "ci": "what CI runs: every test, coverage, the coverage gate (test.coverage_min) and the performance gate",
    "json": "print results.json instead of the summary",
})
def test(c, unit=False, integration=False, e2e=False, fast=False, smoke=False, coverage=False, k=None,
         workers=None, ci=False, json=False):
    """Run the tests in parallel; write reports/results.json and reports/junit.xml; --ci adds the gates."""
    from ops.core import output
    from ops.core.errors import BadInput, WorkFailed
    from ops.dev import benchmarks, testing

    s = settings()
    if ci and (unit or integration or e2e or fast or smoke or k):
        raise BadInput("--ci runs every test; it takes no selection")
    selection = testing.Selection(unit=unit, integration=integration, e2e=e2e, fast=fast, smoke=smoke, keyword=k)
    run = testing.Run(
        selection=selection,
        reports=s.path("paths.reports"),
        workers=testing.validate_workers(workers if workers is not None else ("0" if smoke else s.get("test.workers"))),
        coverage=coverage or ci,
    )
    workers = output.plural(int(run.workers), "worker") if run.workers.isdigit() else f"{run.workers} workers"
    output.info(f"running {selection.describe()} with {workers}")
    results = testing.execute(run)
    measured = testing.coverage_percent(run.reports) if run.coverage else None
    gates = []
    if ci:
        gates.append(testing.coverage_gate(measured, s.get("test.coverage_min")))
        gates.extend(benchmarks.performance_gate(s))
    if json:
        output.print_json({**results, "coverage": measured, "gates": gates})
    else:
        for line in testing.summary_lines(results, measured):
            print(line)
        for gate in gates:
            shown = "n/a" if gate["measured"] is None else (
                f"{gate['measured']:.2f}%" if gate["gate"] == "coverage" else f"{gate['measured']:.2f}x")
            print(f"gate {gate['gate']}: {shown} (limit {gate['limit']:g}) {'ok' if gate['passed'] else 'FAILED'}")
        output.info(f"reports: {run.reports}/results.json, junit.xml" + (", coverage.json, coverage-html/" if run.coverage else ""))
    if results["exit_status"] != 0:
        t = results["totals"]
        raise WorkFailed(f"{output.plural(t['failed'] + t['error'], 'test')} failed")
    failed = [g for g in gates if not g["passed"]]
    if failed:
        raise WorkFailed("gate failed: " + "; ".join(g.get("reason") or g["gate"] for g in failed))
