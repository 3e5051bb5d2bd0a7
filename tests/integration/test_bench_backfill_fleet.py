"""The fleet benchmark, for real at a tiny size: 3 generated pipelines, 2 days, a 5-day plan from a 3,000-row ledger."""

import json

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def bench():
    from ops.dev.benchmarks import load_benchmark

    return load_benchmark("backfill_fleet")


@pytest.fixture(scope="module")
def result(bench):
    return bench.measure(rounds=1, pipelines=3, days=2, plan_days=5, ledger_rows=3000)


def test_shape_and_derived_numbers(result):
    assert result["benchmark"] == "backfill_fleet" and result["storage"]
    fleet = result["fleet"]
    assert fleet["partitions"] == 6 and fleet["ratio"] == pytest.approx(fleet["chops_s"] / fleet["direct_s"])
    assert result["planning"]["ratio"] == pytest.approx(result["planning"]["ledger_s"] / result["planning"]["empty_s"])
    assert set(result["readers"]) == {"pipeline.list", "proc.check", "pipeline.history"}
    assert all(r["empty_s"] > 0 and r["ledger_s"] > 0 for r in result["readers"].values())
    json.loads(json.dumps(result))


def test_report_and_gate_rows(result, bench, capsys, settings):
    from ops.dev.benchmarks import gate_rows

    bench.print_report(result)
    out = capsys.readouterr().out
    assert "fleet: 3 pipelines x 2 days" in out and "planning 3 x 5 days" in out
    rows = gate_rows("backfill_fleet", result, settings)
    assert len(rows) == 5 and all(r["limit"] > 0 for r in rows)


def test_the_generated_fleet_loads(bench, tmp_path):
    from ops.pipelines.definition import load_pipelines

    bench.write_fleet(tmp_path, 4)
    registry = load_pipelines(directory=tmp_path)
    assert registry.names() == ["f000", "f001", "f002", "f003"] and not registry.errors
    assert registry.get("f002").target == "f002_t"
