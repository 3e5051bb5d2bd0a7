"""The README's "Writing a pipeline" example is real: its pipeline and its migration's table, as generated from the
docstrings, build a day on the real engine, and its checks hold."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import pytest

from ops.dev import pipeline_docs
from tests.conftest import inv, pipeline_project

DAY = str(date.today() - timedelta(days=1))
UPSTREAM = '''

@pipeline(name="events_ingest", target="events_t")
def ingest(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, ['view', 'click'][number % 2 + 1] "
                   "FROM numbers(7)", run.params())
'''


@pytest.mark.slow
def test_the_documented_example_builds_a_day(tmp_path):
    text = pipeline_docs.section()
    python = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    table = re.search(r"```sql\n(.*?)```", text, re.S).group(1)
    source = python.replace("FROM events ", "FROM events_t ") + UPSTREAM  # events_ingest's table, of this project
    env = pipeline_project(tmp_path, source, (
        "CREATE TABLE events_t (day Date, event_type String) ENGINE = MergeTree PARTITION BY day ORDER BY day",
        table))
    for name in ("events_ingest", "daily_counts"):
        done = inv("pipeline.run", name, "--date", DAY, env=env)
        assert done.returncode == 0, done.stderr
    rows = inv("db.query", "SELECT event_type, events FROM daily_counts ORDER BY event_type", "--json", env=env)
    assert json.loads(rows.stdout) == [{"event_type": "click", "events": 3}, {"event_type": "view", "events": 4}]
