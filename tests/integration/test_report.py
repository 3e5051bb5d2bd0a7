"""`inv report` for real: a small project whose days succeeded, failed, were acknowledged, went stale or were never
run, through the real `inv`; the page's data agrees with the ledger's own commands, and a real headless browser
(Debian's chromium) loads the page with no console message and no request, shows the grid and the charts as the
ledger has them, and takes the screenshot CI keeps (reports/report-screenshot.png)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import ROOT, inv, pipeline_project, require

YESTERDAY = date.today() - timedelta(days=1)
DAYS = [str(YESTERDAY - timedelta(days=i)) for i in range(5, -1, -1)]  # `--days 6`, oldest first
SCREENSHOT = ROOT / "reports" / "report-screenshot.png"
BROWSER_SERVICES = (".google.com", ".googleapis.com", ".gvt1.com", ".gstatic.com")  # chromium's own requests

PIPELINES = '''
import os
from pathlib import Path
from ops.core.errors import WorkFailed
from ops.pipelines.definition import pipeline

@pipeline(name="numbers", target="numbers_t")
def numbers(run):
    rows = int(os.environ.get("TEST_ROWS", "100"))
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number FROM numbers({rows})", run.params())

@pipeline(name="doubled", target="doubled_t", depends_on=["numbers"])
def doubled(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT day, n * 2 FROM numbers_t WHERE day = {{day:Date}}",
                   run.params())

@pipeline(name="flaky", target="flaky_t")
def flaky(run):
    if Path(os.environ["TEST_FAIL"]).exists():
        raise WorkFailed("the source <b>is</b> not there & made to fail on purpose")
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number FROM numbers(10)", run.params())
'''

# the state of each (pipeline, day) the project below makes; the first day is never run by anyone
EXPECTED = {
    "numbers": ["missing", "succeeded", "succeeded", "succeeded", "succeeded", "succeeded"],
    "doubled": ["missing", "succeeded", "succeeded", "stale", "succeeded", "missing"],
    "flaky": ["missing", "succeeded", "acknowledged", "failed", "missing", "missing"],
}


def ok(*args, env):
    result = inv(*args, env=env)
    assert result.returncode == 0, f"inv {' '.join(args)}: {result.stderr}"
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    env = pipeline_project(tmp, PIPELINES, tuple(
        f"CREATE TABLE {t} (day Date, n UInt64) ENGINE = MergeTree PARTITION BY day ORDER BY n"
        for t in ("numbers_t", "doubled_t", "flaky_t")), TEST_FAIL=str(tmp / "fail"))
    ok("backfill", "--start", DAYS[1], "--end", DAYS[4], "--select", "numbers,doubled", env=env)
    ok("pipeline.run", "numbers", "--date", DAYS[3], "--force", env={**env, "TEST_ROWS": "300"})  # doubled: stale
    ok("pipeline.run", "numbers", "--date", DAYS[5], env=env)  # doubled never ran that day
    ok("pipeline.run", "flaky", "--date", DAYS[1], env=env)
    (tmp / "fail").touch()
    for day in DAYS[2:4]:
        assert inv("pipeline.run", "flaky", "--date", day, env=env).returncode == 1
    (tmp / "fail").unlink()
    ok("proc.ack", "--pipeline", "flaky", "--date", DAYS[2], "--note", "the source is gone <for good>", env=env)
    page = tmp / "out" / "ops.html"
    result = ok("report", "--days", "6", "--output", str(page), "--json", env=env)
    return {"env": env, "page": page, "data": json.loads(result.stdout), "stderr": result.stderr}


def jsonof(*args, env):
    result = inv(*args, "--json", env=env)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_the_report_is_the_ledgers_own_data(project):
    env, data = project["env"], project["data"]
    assert Path(data["path"]) == project["page"] and project["page"].is_file()
    assert data["grid"]["days"] == DAYS
    states = {p["pipeline"]: [c["state"] for c in p["cells"]] for p in data["grid"]["pipelines"]}
    assert states == EXPECTED
    # the same as backfill.counts (coverage and rows) and pipeline.history (newest attempt, acknowledgement)
    counts = jsonof("backfill.counts", "--days", "6", env=env)
    coverage = {g["pipeline"]: g["days"] for g in counts["coverage"]}
    rows = {t["pipeline"]: {d["day"]: d["rows"] for d in t["days"]} for t in counts["tables"]}
    history = jsonof("pipeline.history", "--limit", "100", env=env)
    newest = {}
    for a in history:
        newest.setdefault((a["pipeline"], a["partition"]), a)
    for p in data["grid"]["pipelines"]:
        for c in p["cells"]:
            assert c["status"] == coverage[p["pipeline"]][c["day"]] and c["rows"] == rows[p["pipeline"]][c["day"]]
            last = newest.get((p["pipeline"], c["day"]))
            assert c["run_id"] == (last["run_id"] if last else None)
            assert bool(c["acknowledged"]) == bool(last and last["acknowledged"])
    failed = next(c for p in data["grid"]["pipelines"] for c in p["cells"] if c["state"] == "failed")
    assert "made to fail on purpose" in failed["error"] and failed["log_path"].endswith(".log")
    assert [d["rows"] for d in next(r for r in data["rows"] if r["target"] == "numbers_t")["days"]] == \
        [0, 100, 100, 300, 100, 100]
    # health, migrations and plans: what proc.check, db.status and backfill.plans say
    check = jsonof("proc.check", env=env)
    assert data["health"]["healthy"] is check["healthy"] is False
    assert [(c["name"], c["status"]) for c in data["health"]["checks"]] == \
        [(c["name"], c["status"]) for c in check["checks"]]
    assert data["migrations"] == jsonof("db.status", env=env)
    assert [p["id"] for p in data["plans"]] == [p["id"] for p in jsonof("backfill.plans", env=env)]
    assert data["deploys"]["deploys"] == [] and data["problems"] == {}
    assert sorted(p["pipeline"] for p in data["durations"]) == ["doubled", "flaky", "numbers"]


class Dom(HTMLParser):
    """The grid's cells, and per chart the values of its points and whether each got its tooltip."""

    def __init__(self):
        super().__init__()
        self.cells, self.charts, self.figure, self.in_value, self.tooltips = {}, [], None, False, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and "data-state" in a:
            self.cells[(a["data-pipeline"], a["data-day"])] = (a["data-state"], int(a["data-rows"]), a["title"])
        elif tag == "figure":
            self.figure = {**a, "values": [], "dots": 0}
            self.charts.append(self.figure)
        elif tag == "g" and a.get("class") == "dots" and self.figure is not None:
            self.figure["dots"] += 1
        self.in_value = tag == "desc" and a.get("class") == "value"
        self.in_title = tag == "title"

    def handle_endtag(self, tag):
        if tag == "figure":
            self.figure = None

    def handle_data(self, data):
        if self.in_value and self.figure is not None:
            self.figure["values"].append(data)
        elif getattr(self, "in_title", False) and self.figure is not None and " · " in data:
            self.tooltips += 1


def chromium(*args: str, page: Path) -> subprocess.CompletedProcess:
    """Debian's chromium, headless, as root, with every request it makes logged and sent to a dead local proxy."""
    return subprocess.run(
        [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--proxy-server=127.0.0.1:9", "--enable-logging=stderr", "--v=1", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120)


@pytest.fixture
def browser():
    """Debian's chromium (checked before the project is built: without it the test skips at once, or fails in CI)."""
    require(shutil.which("chromium") is not None, "chromium is not installed (apt-get install chromium)")


@pytest.mark.slow
def test_a_real_browser_shows_the_ledger_with_no_error_and_no_request(browser, project):
    data = project["data"]
    loaded = chromium("--dump-dom", page=project["page"])
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    console = [line for line in loaded.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    requests = re.findall(r"NotifyBeforeURLRequest: (\S+)", loaded.stderr)
    own = [u for u in requests if not (urlparse(u).hostname or "").endswith(BROWSER_SERVICES)]
    assert own == [], f"the page asked for {own}"

    dom = Dom()
    dom.feed(loaded.stdout)
    # the grid as the ledger has it: each (pipeline, day) in its state, with its rows and its newest attempt
    shown = {}
    for p in data["grid"]["pipelines"]:
        for c in p["cells"]:
            state, rows, title = dom.cells[(p["pipeline"], c["day"])]
            shown.setdefault(p["pipeline"], []).append(state)
            assert rows == c["rows"]
            assert (c["run_id"] or "")[:8] in title
    assert shown == EXPECTED
    assert "made to fail on purpose" in dom.cells[("flaky", DAYS[3])][2]
    assert "the source is gone <for good>" in dom.cells[("flaky", DAYS[2])][2]
    # a chart per target with one point per day, its rows; the flagged days counted; and the durations chart
    rows_charts = {c["data-target"]: c for c in dom.charts if c["data-chart"] == "rows"}
    assert set(rows_charts) == {"numbers_t", "doubled_t", "flaky_t"}
    for series in data["rows"]:
        chart = rows_charts[series["target"]]
        assert [int(re.sub(r"\D", "", v)) for v in chart["values"]] == [d["rows"] for d in series["days"]]
        assert int(chart["data-flagged"]) == sum(1 for d in series["days"] if d["flags"]) > 0
    [durations] = [c for c in dom.charts if c["data-chart"] == "durations"]
    assert durations["dots"] == int(durations["data-runs"]) == sum(len(p["runs"]) for p in data["durations"])
    assert dom.tooltips == sum(c["dots"] for c in dom.charts)  # the page's script ran: every point has its tooltip

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    shot = chromium(f"--screenshot={SCREENSHOT}", "--window-size=1280,2400", page=project["page"])
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and SCREENSHOT.stat().st_size > 50_000


def test_without_a_database_the_page_says_so_and_is_written(run_inv, tmp_path):
    page = tmp_path / "ops.html"
    result = run_inv("report", "--days", "3", "--output", str(page), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["health"]["healthy"] is False and "no database" in data["problems"]["grid"]
    text = page.read_text()
    assert 'data-verdict="unhealthy"' in text and "there is no embedded database" in text
    plain = run_inv("report", "--days", "3", "--output", str(page))
    assert plain.returncode == 0 and f"wrote {page}: unhealthy" in plain.stderr
    assert "note: grid not shown: no database" in plain.stderr


@pytest.mark.parametrize("args, said", [
    (["--days", "x"], "--days must be a whole number, got 'x'"),
    (["--days", "0"], "--days must be at least 1, got 0"),
    (["--days", "367"], "--days 367 is more than a report shows (at most 366)"),
    (["--output", "."], "is a folder; name the page's file"),
])
def test_bad_input_is_one_line_and_exit_2(run_inv, args, said):
    result = run_inv("report", *args)
    assert result.returncode == 2 and said in result.stderr and "Traceback" not in result.stderr, result.stderr
