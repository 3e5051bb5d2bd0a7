"""The performance gate: pure over measured results, so a regression can be fed on purpose."""

import pytest

from ops.core.errors import BadInput, WorkFailed
from ops.dev.gates import BASELINE, check_performance, performance_gate
from ops.core.settings import load_settings

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(tmp_path):
    environ = {"CHOPS_ENV": "test", "CHOPS_ENV_FILE": str(tmp_path / ".env")}  # no .env, no environment
    return load_settings(environ=environ).with_overrides(bench__max_inv_list_ratio=1.5, bench__max_inv_help_ratio=1.5)


def results(list_best: float, help_best: float, baseline_best: float = 0.1) -> dict:
    """A cli_latency result with the given best times; medians are noisier on purpose and must be ignored."""
    def entry(best):
        return {"median": best * 4, "best": best}

    return {"benchmark": "cli_latency", "rounds": 3, "commands": {
        "python -c pass": entry(0.02),
        BASELINE: entry(baseline_best),
        "inv --list": entry(list_best),
        "inv --help db.info": entry(help_best),
    }}


def test_passes_on_good_ratios(settings):
    rows = check_performance(results(0.11, 0.12), settings)
    assert [r["gate"] for r in rows] == ["inv --list", "inv --help db.info"]
    assert all(r["passed"] for r in rows)
    assert rows[0]["measured"] == pytest.approx(1.1)
    assert rows[0]["limit"] == 1.5


def test_uses_best_not_median(settings):
    # medians are 4x the baseline's best, but the gate compares best to best
    assert all(r["passed"] for r in performance_gate(results(0.1, 0.1), settings))


def test_at_the_limit_passes(settings):
    assert all(r["passed"] for r in performance_gate(results(0.15, 0.15), settings))


def test_fails_on_regressed_inv_list(settings):
    rows = performance_gate(results(0.3, 0.11), settings)
    assert rows[0] == {"gate": "inv --list", "measured": pytest.approx(3.0), "limit": 1.5, "passed": False}
    assert rows[1]["passed"]
    with pytest.raises(WorkFailed) as exc:
        check_performance(results(0.3, 0.11), settings)
    assert str(exc.value) == "performance gate failed: inv --list is 3.00x import invoke (limit 1.5x)"
    assert exc.value.exit_code == 1


def test_message_names_every_failing_command(settings):
    with pytest.raises(WorkFailed) as exc:
        check_performance(results(0.3, 0.2), settings)
    assert "inv --list is 3.00x import invoke (limit 1.5x)" in str(exc.value)
    assert "inv --help db.info is 2.00x import invoke (limit 1.5x)" in str(exc.value)


def test_limits_come_from_settings(settings):
    loose = settings.with_overrides(bench__max_inv_list_ratio=4.0)
    assert all(r["passed"] for r in check_performance(results(0.3, 0.11), loose))


def test_missing_command_is_bad_input(settings):
    broken = results(0.11, 0.11)
    del broken["commands"]["inv --list"]
    with pytest.raises(BadInput, match="inv --list"):
        performance_gate(broken, settings)
