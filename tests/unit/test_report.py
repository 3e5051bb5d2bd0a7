"""The report's pure parts: a cell's state, the grid from backfill.counts' data, the deploy index read leniently, and
a page that escapes everything from data and fetches nothing."""

import json
import re
from datetime import date, datetime, timezone
from html.parser import HTMLParser

import pytest

from ops.runtime import report, report_html

D1, D2, D3 = date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)
EVIL = '<script>alert("x")</script>'


@pytest.mark.parametrize("status, acked, state", [
    (None, False, "missing"), ("succeeded", False, "succeeded"), ("stale", False, "stale"),
    ("running", False, "running"), ("gone", False, "gone"), ("failed", False, "failed"),
    ("killed", False, "failed"), ("died", False, "failed"), ("failed", True, "acknowledged"),
    ("killed", True, "acknowledged"), ("succeeded", True, "succeeded"),
])
def test_a_cell_state_is_the_coverage_status_with_acknowledgements(status, acked, state):
    assert report.cell_state(status, acked) == state


def attempt(pipeline, day, status, started, run_id, acked=None, error="", log=""):
    return {"pipeline": pipeline, "partition": day, "status": status, "attempt": 1, "run_id": run_id,
            "started_at": started, "duration_s": 0.5, "rows_written": 10, "error": error, "log_path": log,
            "acknowledged": acked}


def counted():
    """What backfill.counts returns for two pipelines writing one target over three days."""
    days = [{"day": D1, "rows": 10, "flags": []}, {"day": D2, "rows": 0, "flags": ["no data"]},
            {"day": D3, "rows": 40, "flags": ["+300% vs previous day"]}]
    return {"start": D1, "end": D3, "threshold": 0.5,
            "tables": [{"pipeline": "a", "target": "t", "days": days}, {"pipeline": EVIL, "target": "t", "days": days}],
            "coverage": [{"pipeline": "a", "days": {str(D1): "succeeded", str(D2): "failed", str(D3): "stale"}},
                         {"pipeline": EVIL, "days": {str(D1): "killed", str(D2): None, str(D3): "succeeded"}}],
            "stale": [{"pipeline": "a", "day": D3, "why": "built from b run 1234abcd; b was rebuilt since"}]}


def newest():
    t = datetime(2026, 11, 4, 1, 2, 3, tzinfo=timezone.utc)
    ack = {"by": "ana@host", "at": t, "note": EVIL}
    attempts = [attempt("a", D2, "failed", t, "r-a2", error=f"boom {EVIL}", log="/var/log/a.log"),
                attempt("a", D2, "succeeded", t.replace(hour=0), "r-a2-old"),
                attempt("a", D1, "succeeded", t, "r-a1"), attempt("a", D3, "succeeded", t, "r-a3"),
                attempt(EVIL, D1, "killed", t, "r-e1", acked=ack), attempt(EVIL, D3, "succeeded", t, "r-e3")]
    return report.newest_by_partition(attempts)


def test_the_grid_has_each_cells_state_rows_and_newest_attempt():
    g = report.grid(counted(), newest())
    assert g["days"] == [D1, D2, D3]
    cells = {(p["pipeline"], c["day"]): c for p in g["pipelines"] for c in p["cells"]}
    assert [cells[("a", d)]["state"] for d in (D1, D2, D3)] == ["succeeded", "failed", "stale"]
    assert [cells[(EVIL, d)]["state"] for d in (D1, D2, D3)] == ["acknowledged", "missing", "succeeded"]
    failed = cells[("a", D2)]
    assert (failed["run_id"], failed["error"], failed["log_path"], failed["rows"]) == \
        ("r-a2", f"boom {EVIL}", "/var/log/a.log", 0)
    assert "was rebuilt since" in cells[("a", D3)]["stale"]
    assert cells[(EVIL, D2)]["run_id"] is None
    assert g["totals"] == {"succeeded": 2, "failed": 1, "acknowledged": 1, "stale": 1, "running": 0, "missing": 1,
                           "gone": 0}


def test_rows_are_one_series_per_target_and_durations_one_per_pipeline():
    [series] = report.row_series(counted())
    assert (series["target"], series["pipelines"]) == ("t", ["a", EVIL])
    runs = report.durations(newest().values())
    assert [p["pipeline"] for p in runs] == sorted(["a", EVIL])
    assert all(r["seconds"] == 0.5 for p in runs for r in p["runs"])


def test_the_deploy_index_is_read_newest_first_skipping_bad_lines(tmp_path):
    missing = report.read_deploys(tmp_path / "nope.jsonl")
    assert (missing["deploys"], missing["bad_lines"], missing["unreadable"]) == ([], 0, "")
    folder = report.read_deploys(tmp_path)  # not a file: said, not raised
    assert folder["deploys"] == [] and folder["unreadable"] == "Is a directory"
    assert "cannot read" in report_html.deploys_section(folder)
    path = tmp_path / "deploys.jsonl"
    lines = [json.dumps({"at": f"2026-11-0{i}T10:00:00Z", "action": "deploy", "release": f"r{i}", "outcome": "ok"})
             for i in range(1, 5)]
    path.write_text("\n".join([lines[0], "not json {", lines[1], "[1, 2]", "", lines[2], lines[3][:20], lines[3]]))
    found = report.read_deploys(path, limit=3)
    assert [d["release"] for d in found["deploys"]] == ["r4", "r3", "r2"]
    assert found["bad_lines"] == 3 and found["deploys"][0]["error"] is None


def page_data():
    t = datetime(2026, 11, 4, 1, 2, 3, tzinfo=timezone.utc)
    c = counted()
    grid = report.grid(c, newest())
    return {
        "generated_at": t, "environment": "test", "start": D1, "end": D3,
        "health": {"healthy": False, "passed": 1, "warnings": 0, "failed": 1, "checks": [
            {"name": "database", "status": "pass", "reason": "reachable", "seconds": 0.1},
            {"name": "failed runs", "status": "fail", "reason": f"{EVIL} failed", "seconds": 0.0}]},
        "grid": grid, "rows": report.row_series(c), "threshold": 0.5, "durations": report.durations(newest().values()),
        "migrations": [{"id": "0001_x", "state": "applied", "applied_at": t, "applied_by": EVIL, "note": ""},
                       {"id": "0002_y", "state": "dirty", "applied_at": None, "applied_by": None, "note": EVIL}],
        "plans": [{"id": "p1", "created_at": t, "created_by": "ana", "start": D1, "end": D3, "jobs": ["a", EVIL],
                   "partitions": 4, "succeeded": 2, "failed": 1, "running": 0, "pending": 1, "done_percent": 50.0}],
        "deploys": {"path": "/x/deploys.jsonl", "bad_lines": 1, "deploys": [
            {"at": "2026-11-03T10:00:00Z", "action": "deploy", "target": EVIL, "host": "h", "release": "r2",
             "from_release": "r1", "outcome": "failed", "error": EVIL, "log": "/x/deploy.log"}]},
        "problems": {"plans": EVIL},
    }


class Elements(HTMLParser):
    """Every element's tag and attributes, and the page's text."""

    def __init__(self):
        super().__init__()
        self.found, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_the_page_escapes_everything_from_data_and_fetches_nothing():
    page = report_html.render(page_data())
    # data never opens an element: the only scripts are the page's own and pygal's config (one per chart)
    assert EVIL not in page
    parsed = Elements()
    parsed.feed(page)
    tags = [t for t, _ in parsed.found]
    assert tags.count("script") == 1 + 2  # the page's, and one per chart (two here)
    assert all(not a.get("src") for t, a in parsed.found if t == "script")
    [policy] = [a["content"] for t, a in parsed.found if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert policy.startswith("default-src 'none';")  # the browser itself refuses to fetch anything for the page
    links = [a.get("href") or a.get("src") for t, a in parsed.found if a.get("href") or a.get("src")]
    assert links and all(x.startswith(("#", "file://")) for x in links), links
    assert "<link" not in page and "@import" not in page and not re.search(r"url\((?!#)", page)
    # what the data said is there, as text
    text = "".join(parsed.text)
    assert f"boom {EVIL}" in text and f"{EVIL} failed" in text
    cells = {(a["data-pipeline"], a["data-day"]): a for t, a in parsed.found if t == "td" and "data-state" in a}
    assert cells[(EVIL, str(D1))]["data-state"] == "acknowledged" and EVIL in cells[(EVIL, str(D1))]["title"]
    failed = cells[("a", str(D2))]
    assert failed["data-state"] == "failed" and "log: /var/log/a.log" in failed["title"]
    assert "rows in t: 0" in failed["title"] and "10 rows written" in failed["title"]
    charts = [a for t, a in parsed.found if t == "figure"]
    assert [(c["data-chart"], c.get("data-target"), c.get("data-flagged")) for c in charts] == \
        [("rows", "t", "2"), ("durations", None, None)]
    for section in ("health", "grid", "rows", "durations", "migrations", "plans", "deploys", "problems"):
        assert f'<section id="{section}"' in page


def test_an_empty_project_renders_every_section_saying_there_is_nothing():
    data = {**page_data(), "grid": {"days": [], "pipelines": [], "totals": {s: 0 for s in report.STATES}},
            "rows": [], "durations": [], "migrations": [], "plans": [], "problems": {},
            "deploys": {"path": "/x/deploys.jsonl", "bad_lines": 0, "deploys": []}}
    page = report_html.render(data)
    for said in ("no pipelines", "no targets", "no finished runs", "no migrations", "no backfill plans",
                 "no deploys recorded in"):
        assert said in page
    assert "<svg" not in page
