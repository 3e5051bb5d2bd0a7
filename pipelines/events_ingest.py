"""events_ingest: load the day's files from the inbox (CSV and JSON lines) into `events`.

Files are dropped in ``<paths.var>/inbox/events/<YYYY-MM-DD>/`` (``inv pipeline.sample-data`` writes realistic
ones). ClickHouse parses them (CSVWithNames / JSONEachRow): the embedded engine reads each file from disk itself,
a server receives its bytes, and no row passes through Python. A malformed row fails the run, naming the file and
row, and leaves `events` untouched.
"""

from ops.errors import WorkFailed
from ops.pipelines import checks, pipeline

FORMATS = {".csv": "CSVWithNames", ".jsonl": "JSONEachRow", ".ndjson": "JSONEachRow"}


def inbox_files(run):
    """The day's files: the runner checks there are some before it builds (a dry run too)."""
    folder = run.inbox("events")
    files = sorted(f for f in folder.glob("*") if f.suffix in FORMATS) if folder.is_dir() else []
    if not files:
        raise WorkFailed(f"no inbox files for {run.day} in {folder}",
                         hint="drop CSV or JSON-lines files there, or run: inv pipeline.sample-data")
    return files


@pipeline(
    name="events_ingest",
    description="load the day's inbox files (CSV, JSON lines) into events",
    target="events",
    schedule="15 1 * * *",
    checks=[checks.unique("event_id"), checks.within_day("event_time"), checks.no_nulls("user_id")],
    inputs=inbox_files,
    retries=2,
    timeout=1800,
)
def build(run):
    for path in inbox_files(run):
        run.insert_file(path, FORMATS[path.suffix])
