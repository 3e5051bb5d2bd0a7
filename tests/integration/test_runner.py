"""The test runner itself, run for real on a small suite written for each test."""

import json
import textwrap
import xml.etree.ElementTree as ET

import pytest

from ops.core.errors import BadInput
from ops.dev.testing import Run, Selection, coverage_gate, coverage_percent, execute, summary_lines
from tests.conftest import clean_environ, inv

SUITE = {
    "pytest.ini": """
        [pytest]
        markers =
            unit: u
            integration: i
            e2e: e
            slow: s
            smoke: k
    """,
    "sample.py": """
        def double(x):
            return 2 * x

        def never_called():
            return "not covered"
    """,
    "tests/test_sample.py": """
        import pytest
        from sample import double

        @pytest.mark.unit
        def test_unit_ok():
            assert double(2) == 4

        @pytest.mark.unit
        @pytest.mark.slow
        def test_unit_slow():
            assert double(0) == 0

        @pytest.mark.integration
        def test_integration_fails():
            assert double(3) == 7

        @pytest.mark.integration
        def test_integration_skipped():
            pytest.skip("no such component here")

        @pytest.mark.e2e
        @pytest.mark.xfail(reason="known bug", strict=True)
        def test_e2e_xfail():
            assert False

        @pytest.mark.unit
        @pytest.mark.smoke
        def test_smoke():
            assert double(1) == 2
    """,
}


@pytest.fixture
def suite(tmp_path):
    for name, text in SUITE.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return tmp_path


def run(suite, workers="0", coverage=False, **selection):
    env = clean_environ(PYTHONPATH=str(suite))
    return execute(Run(Selection(**selection), reports=suite / "reports", workers=workers, coverage=coverage,
                       paths=("tests",), cwd=suite), env=env)


def names(results):
    return sorted(t["nodeid"].split("::")[-1] for t in results["tests"])


@pytest.mark.parametrize("selection, expected", [
    ({"unit": True}, ["test_smoke", "test_unit_ok", "test_unit_slow"]),
    ({"fast": True}, ["test_integration_fails", "test_integration_skipped", "test_smoke", "test_unit_ok"]),
    ({"unit": True, "fast": True}, ["test_smoke", "test_unit_ok"]),
    ({"integration": True, "e2e": True}, ["test_e2e_xfail", "test_integration_fails", "test_integration_skipped"]),
    ({"smoke": True}, ["test_smoke"]),
    ({"keyword": "unit_ok or unit_slow"}, ["test_unit_ok", "test_unit_slow"]),
], ids=["unit", "fast", "unit-fast", "integration-e2e", "smoke", "keyword"])
def test_selection_picks_the_right_tests(suite, selection, expected):
    assert names(run(suite, **selection)) == expected


@pytest.mark.slow
def test_results_json_and_junit_agree_across_workers(suite):
    results = run(suite, workers="2")
    assert results["exit_status"] == 1  # one test fails
    assert results["environment"]["workers"] == 2
    t = results["totals"]
    assert (t["passed"], t["failed"], t["skipped"], t["xfailed"], t["total"]) == (3, 1, 1, 1, 6)
    [failed] = [x for x in results["tests"] if x["outcome"] == "failed"]
    assert "assert 6 == 7" in failed["message"]
    assert len(results["slowest"]) == 6 and all(x["duration"] >= 0 for x in results["tests"])

    root = ET.parse(suite / "reports" / "junit.xml").getroot()
    cases = root.iter("testcase")
    outcome = {}
    for case in cases:
        name = case.get("name")
        kinds = {child.tag for child in case}
        outcome[name] = "failed" if "failure" in kinds else "error" if "error" in kinds else \
            "skipped" if "skipped" in kinds else "passed"
    from_json = {x["nodeid"].split("::")[-1]: x["outcome"] for x in results["tests"]}
    # junit reports an xfail as skipped; everything else must agree one to one
    assert outcome == {k: ("skipped" if v == "xfailed" else v) for k, v in from_json.items()}
    lines = summary_lines(results)
    assert lines[-1].startswith("3 passed, 1 failed, 1 skipped")
    assert any("test_integration_fails" in line and "FAILED" in line for line in lines)


def test_selection_that_matches_nothing_is_bad_input(suite):
    with pytest.raises(BadInput, match="no test matches the selection"):
        run(suite, keyword="no_such_test")


def test_coverage_is_measured_and_the_gate_fails_above_it(suite):
    run(suite, coverage=True, unit=True)
    measured = coverage_percent(suite / "reports")
    assert measured is not None and 0 < measured < 100  # never_called() is not covered
    assert (suite / "reports" / "coverage-html" / "index.html").exists()
    assert coverage_gate(measured, minimum=measured)["passed"]
    above = coverage_gate(measured, minimum=min(100.0, measured + 1))
    assert not above["passed"] and "below the gate" in above["reason"]
    assert not coverage_gate(None, minimum=0)["passed"]  # nothing measured never passes


def test_unknown_flag_is_a_clear_error():
    result = inv("test", "--no-such-flag", env=clean_environ())
    assert result.returncode != 0
    assert "--no-such-flag" in result.stderr and "Traceback" not in result.stderr


def test_bad_workers_value(tmp_path):
    result = inv("test", "--workers", "many", env=clean_environ(CHOPS_PATHS__REPORTS=str(tmp_path)))
    assert result.returncode == 2 and "--workers" in result.stderr
