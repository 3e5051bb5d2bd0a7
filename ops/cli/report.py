"""report: the ops report page (health, the pipelines × days grid, rows, durations, migrations, plans, deploys)."""

from __future__ import annotations

from ops.cli.base import settings, task, whole_number


@task(help={
    "days": "the last N complete days, ending yesterday (UTC; default 14, at most 366)",
    "output": "write the page here (default: <paths.var>/reports/ops.html)",
    "open": "open the page in a web browser when it is written",
    "json": "print the report's data as JSON (the page is written too)",
})
def report(c, days="14", output=None, open=False, json=False):
    """Write the ops report, one self-contained HTML page: health, runs grid, charts, migrations, plans, deploys."""
    from pathlib import Path

    from ops.core import output as out
    from ops.core.errors import BadInput
    from ops.pipelines.backfill import resolve_range
    from ops.runtime import report as gathered
    from ops.runtime import report_html

    s = settings()
    n = whole_number(days, "--days")
    if n > gathered.MAX_DAYS:
        raise BadInput(f"--days {n} is more than a report shows (at most {gathered.MAX_DAYS})")
    first, last = resolve_range(n, max_days=gathered.MAX_DAYS)
    path = Path(output).expanduser().resolve() if output else gathered.default_output(s)
    if path.is_dir():
        raise BadInput(f"--output {output} is a folder; name the page's file, e.g. {Path(output) / 'ops.html'}")
    data = gathered.gather(s, first, last)
    report_html.write(data, path)
    if json:
        out.print_json({**data, "path": str(path)})
    else:
        h, totals = data["health"], data["grid"]["totals"]
        cells = ", ".join(f"{n} {state}" for state, n in totals.items() if n) or "no partitions"
        out.info(f"wrote {path}: {'healthy' if h['healthy'] else 'unhealthy'} ({h['failed']} failed, "
                 f"{h['warnings']} warning{'' if h['warnings'] == 1 else 's'}); {first} .. {last}: {cells}")
        for name, why in data["problems"].items():
            out.info(f"note: {name} not shown: {why}")
    if open:
        import webbrowser

        if not webbrowser.open(path.as_uri()):
            out.info(f"no web browser found here; open {path} where one is")
