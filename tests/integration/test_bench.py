"""The CLI latency benchmark, for real: two rounds of every command against a throw-away database."""

import json
import math

import pytest

from ops.dev.gates import performance_gate
from ops.core.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cli_latency():
    from ops.dev.benchmarks import load_benchmark

    return load_benchmark("cli_latency")


@pytest.fixture(scope="module")
def result(cli_latency):
    return cli_latency.measure(rounds=2)


def test_shape(result, cli_latency):
    assert result["benchmark"] == "cli_latency"
    assert result["rounds"] == 2
    assert set(result["commands"]) == set(cli_latency.commands())
    assert {"python -c pass", "python -c 'import invoke'", "inv --list", "inv --help db.info",
            "inv db.info"} <= set(result["commands"])
    for entry in result["commands"].values():
        assert set(entry) == {"median", "best", "ratio_to_import_invoke", "ratio_to_python"}
        for key in ("ratio_to_import_invoke", "ratio_to_python"):
            assert set(entry[key]) == {"median", "best"}
    env = result["environment"]
    assert env["python"] and env["platform"] and env["cpu_count"]
    json.loads(json.dumps(result))


def test_ratios_positive_and_finite(result):
    for name, entry in result["commands"].items():
        assert 0 < entry["best"] <= entry["median"], name
        for key in ("ratio_to_import_invoke", "ratio_to_python"):
            for stat, ratio in entry[key].items():
                assert math.isfinite(ratio) and ratio > 0, (name, key, stat, ratio)


def test_baselines_are_one_to_themselves(result):
    assert result["commands"]["python -c 'import invoke'"]["ratio_to_import_invoke"] == {"median": 1.0, "best": 1.0}
    assert result["commands"]["python -c pass"]["ratio_to_python"] == {"median": 1.0, "best": 1.0}


def test_gate_reads_real_results(result, tmp_path):
    settings = load_settings(environ={"CHOPS_ENV": "test", "CHOPS_ENV_FILE": str(tmp_path / ".env")})
    rows = performance_gate(result, settings)
    assert [r["gate"] for r in rows] == ["inv --list", "inv --help db.info"]
    assert all(r["measured"] > 0 for r in rows)


def test_writes_json(result, cli_latency, tmp_path):
    path = cli_latency.write_json(result, tmp_path / "bench" / "cli_latency.json")
    assert json.loads(path.read_text())["commands"].keys() == result["commands"].keys()
