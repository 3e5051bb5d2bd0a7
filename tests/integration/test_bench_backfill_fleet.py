"""The fleet benchmark, for real at a tiny size: 3 generated pipelines, 3 days (and again as range builds of 2 days:
a batch of 2 and one of 1), a 5-day plan from a 3,000-row ledger."""

import json

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def bench():
    from ops.dev.benchmarks import load_benchmark

    return load_benchmark("backfill_fleet")


@pytest.fixture(scope="module")
def result(bench):
    return bench.measure(rounds=1, pipelines=3, days=3, plan_days=5, ledger_rows=3000, batch_days=2)


def test_shape_and_derived_numbers(result):
    assert result["benchmark"] == "backfill_fleet" and result["storage"]
    fleet = result["fleet"]
    assert fleet["partitions"] == 9 and fleet["ratio"] == pytest.approx(fleet["chops_s"] / fleet["direct_s"])
    assert fleet["floor"] == pytest.approx(fleet["guarded_s"] / fleet["direct_s"])  # the guarded job's own ratio
    assert fleet["guarded_ratio"] == pytest.approx(fleet["chops_s"] / fleet["guarded_s"])
    batch = result["batch_fleet"]
    assert result["batch_days"] == 2 and batch["partitions"] == 9 and batch["direct_s"] == fleet["direct_s"]
    assert batch["ratio"] == pytest.approx(batch["chops_s"] / batch["direct_s"])
    assert batch["partitions_per_s"] == pytest.approx(9 / batch["chops_s"])
    assert result["planning"]["ratio"] == pytest.approx(result["planning"]["ledger_s"] / result["planning"]["empty_s"])
    assert set(result["readers"]) == {"pipeline.list", "proc.check", "pipeline.history"}
    assert all(r["empty_s"] > 0 and r["ledger_s"] > 0 for r in result["readers"].values())
    json.loads(json.dumps(result))


def test_report_and_gate_rows(result, bench, capsys, settings):
    from ops.dev.benchmarks import gate_rows

    bench.print_report(result)
    out = capsys.readouterr().out
    assert out.count("fleet: 3 pipelines x 3 days") == 2 and "planning 3 x 5 days" in out  # a line each
    assert "batch_days = 2" in out  # (the table may wrap the rest of a label)
    rows = gate_rows("backfill_fleet", result, settings)
    assert len(rows) == 6 and all(r["limit"] > 0 for r in rows)
    assert [r["gate"] for r in rows[:2]] == ["fleet of 3 x 3 days, per-day pipelines, vs direct",
                                             "fleet of 3 x 3 days, batch_days = 2 pipelines, vs direct"]
    assert rows[1]["measured"] == result["batch_fleet"]["ratio"] and rows[1]["limit"] == result["goals"]["fleet_ratio"]
    alone = {k: v for k, v in result.items() if k != "batch_fleet"}  # --batch-days 0: the per-day row only
    assert len(gate_rows("backfill_fleet", alone, settings)) == 5


def test_the_generated_fleet_loads(bench, tmp_path):
    from ops.pipelines.definition import load_pipelines

    bench.write_fleet(tmp_path, 4)
    registry = load_pipelines(directory=tmp_path)
    assert registry.names() == ["f000", "f001", "f002", "f003"] and not registry.errors
    assert registry.get("f002").target == "f002_t"


def test_the_generated_batch_fleet_loads(bench, tmp_path):
    from ops.pipelines.definition import load_pipelines

    bench.write_fleet(tmp_path, 2, batch_days=30)
    registry = load_pipelines(directory=tmp_path)
    assert registry.names() == ["f000", "f001"] and not registry.errors
    assert registry.get("f001").batch_days == 30 and registry.get("f001").target == "f001_t"


@pytest.mark.parametrize("batch_days", [1, -1, True, 2.5])
def test_batch_days_must_be_0_or_a_range(bench, batch_days):
    from ops.core.errors import BadInput

    with pytest.raises(BadInput, match="batch_days must be 0"):
        bench.measure(pipelines=1, days=1, batch_days=batch_days)


def test_the_script_says_bad_input_in_one_line(bench, capsys):
    assert bench.main(["--batch-days", "1", "--pipelines", "1", "--days", "1"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: batch_days must be 0 (no batch row) or a whole number of at least 2, got 1"
