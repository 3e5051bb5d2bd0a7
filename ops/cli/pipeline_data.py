"""pipeline.sample-data: realistic inbox files for events_ingest (thin over ``ops.pipelines.sample_data``)."""

from __future__ import annotations

from ops.cli.base import settings, task, whole_number


@task(name="sample-data", help={
    "days": "how many days, counting back from --end inclusive (1 to 3660; default 7)",
    "rows": "events per day, split between a CSV and a JSON-lines file (default 20000)",
    "end": "the last day: YYYY-MM-DD, today or yesterday (UTC; default yesterday)",
    "force": "rewrite days whose files already exist (the same seed gives the same bytes)",
    "dry_run": "say which days would be written or skipped; write nothing",
    "json": "print the result as JSON",
})
def sample_data(c, days="7", rows="20000", end=None, force=False, dry_run=False, json=False):
    """Write sample event files into <paths.var>/inbox/events/<day>/ for the events_ingest pipeline."""
    from datetime import timezone
    from pathlib import Path

    from ops.core import output
    from ops.pipelines.definition import parse_day
    from ops.pipelines.sample_data import INBOX, write_sample_data

    s = settings()
    days, rows = whole_number(days, "--days"), whole_number(rows, "--rows")
    last = parse_day(end, timezone.utc, allow_future=True) if end is not None else None
    result = write_sample_data(s, days, end=last, rows_per_day=rows, force=force, dry_run=dry_run)
    inbox = s.path("paths.var") / "inbox" / INBOX
    written = [r for r in result if r["action"] == "write"]
    if json:
        return output.print_json({"inbox": str(inbox), "dry_run": dry_run, "days": result,
                                  "written": len(written), "skipped": len(result) - len(written),
                                  "rows_written": sum(r["rows"] for r in written)})
    verb = "would write" if dry_run else "write"
    output.print_table(
        [(r["day"], f"{r['rows']:,}", verb if r["action"] == "write" else "skip (exists; --force rewrites)",
          ", ".join(Path(f).name for f in r["files"])) for r in result],
        ["day", "rows", "action", "files"], right=["rows"])
    rows_written = sum(r["rows"] for r in written)
    output.info(f"{'would write' if dry_run else 'wrote'} {output.plural(len(written), 'day')}, "
                f"{output.plural(rows_written, 'row')}; "
                f"skipped {len(result) - len(written)} (already there); inbox {_short(inbox)}"
                + ("; nothing was changed" if dry_run else ""))


def _short(path) -> str:
    from ops import ROOT

    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


TASKS = (sample_data,)
