"""The backfill benchmark, for real at a tiny size: 2 and 4 days of 2,000 rows, one round."""

import json
import math
from datetime import timedelta

import pytest

from ops.core.errors import BadInput

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIZES = {"rows_per_day": 2000, "days_long": 4, "days_short": 2}


@pytest.fixture(scope="module")
def bench():
    from ops.dev.benchmarks import load_benchmark

    return load_benchmark("backfill")


@pytest.fixture(scope="module")
def result(bench):
    return bench.measure(rounds=1, tiny_rounds=1, **SIZES)  # one round of each: CI runs it beside timing tests


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_shape(result):
    assert result["benchmark"] == "backfill"
    assert result["days"] == {"short": 2, "long": 4}
    assert result["rows_per_day"] == 2000
    assert result["rounds"] == 1 and result["parallel"] == 1
    assert result["partitions"] == {"short": 2 * 3, "long": 4 * 3}  # 3 example pipelines a day
    for side in ("chops", "direct"):
        assert set(result[side]) == {"short", "long"}
        for length in ("short", "long"):
            entry = result[side][length]
            assert set(entry) == {"best", "median", "times", "peak_rss_mb"}
            assert len(entry["times"]) == 1
    for key in ("ratio", "ratio_short"):
        assert set(result[key]) == {"best", "median"}
    env = result["environment"]
    assert env["python"] and env["platform"] and env["cpu_count"]
    json.loads(json.dumps(result))


def test_numbers_positive_and_finite(result):
    numbers = [result["scaling"], result["direct_scaling"], result["peak_rss_mb"], result["rss_ratio"],
               result["generation_s"], result["bytes"], *result["ratio"].values(), *result["ratio_short"].values()]
    for side in ("chops", "direct"):
        for entry in result[side].values():
            numbers += [entry["best"], entry["median"], entry["peak_rss_mb"], *entry["times"]]
    assert all(_positive(n) for n in numbers), numbers


def test_derived_numbers(result):
    chops, direct = result["chops"], result["direct"]
    assert result["ratio"]["best"] == pytest.approx(chops["long"]["best"] / direct["long"]["best"])
    assert result["scaling"] == pytest.approx(chops["long"]["best"] / (chops["short"]["best"] * 4 / 2))
    assert result["peak_rss_mb"] == max(chops["short"]["peak_rss_mb"], chops["long"]["peak_rss_mb"])
    # an embedded engine is in each process: tens of MB at least, and far less than a terabyte
    assert 20 < result["peak_rss_mb"] < 1_000_000


def test_the_guarded_job_and_tiny_partitions_are_measured(result):
    guarded = result["guarded"]
    assert set(guarded) == {"long"} and _positive(guarded["long"]["best"])
    assert result["guarded_ratio"]["best"] == pytest.approx(result["chops"]["long"]["best"] / guarded["long"]["best"])
    keep = result["keep_memory"]  # the same backfill with clickhouse.memory_release_mb = 0
    assert _positive(keep["long"]["best"]) and _positive(keep["long"]["peak_rss_mb"])
    assert keep["guarded_ratio"] == pytest.approx(keep["long"]["best"] / guarded["long"]["best"])
    tiny = result["tiny"]
    assert tiny["rows_per_day"] == 200 and tiny["partitions"] == tiny["days"] * 3
    assert tiny["ratio"] == pytest.approx(tiny["chops_s"] / tiny["direct_s"])
    assert tiny["floor"] == pytest.approx(tiny["guarded_s"] / tiny["direct_s"])  # the guarded job at that size
    assert tiny["guarded_ratio"] == pytest.approx(tiny["chops_s"] / tiny["guarded_s"])
    batch = result["batch"]  # the same size declared with batch_days = 30: its own pipeline, built and checked
    assert batch["batch_days"] == 30 and batch["days"] == 60 and all(_positive(v) for v in batch["seconds"].values())
    assert batch["ratio"] == pytest.approx(batch["seconds"]["batch"] / batch["seconds"]["direct"])
    assert result["storage"]


def test_the_guarded_plan_swaps_each_day_from_a_checked_staging_table(bench, tmp_path):
    from ops.core.settings import load_settings

    settings = load_settings(environ=bench._environ(tmp_path / "var"))
    bench.generate_inbox(tmp_path / "inbox", bench.FIRST_DAY, 1, 100)
    [day] = bench.direct_plan(settings, tmp_path / "inbox", bench.FIRST_DAY, 1, guarded=True)
    sql = [operation[1] for operation in day]
    staged = [s for s in sql if s.startswith("CREATE TABLE `_guarded_")]
    swaps = [s for s in sql if "REPLACE PARTITION ID '20250101' FROM `_guarded_" in s]
    assert len(staged) == len(swaps) == 3 and sum(s.startswith("SELECT count()") for s in sql) == 3


def test_report_prints(result, bench, capsys):
    bench.print_report(result)
    out = capsys.readouterr().out
    assert "inv backfill" in out and "goals" in out


def test_generated_days_differ_only_in_the_date(bench, tmp_path):
    first = bench.FIRST_DAY
    size = bench.generate_inbox(tmp_path, first, 2, 300)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert [p.parent.name for p in files] == [str(first)] * 2 + [str(first + timedelta(days=1))] * 2
    assert size == sum(p.stat().st_size for p in files)
    day1, day2 = files[0].read_text(), files[2].read_text()
    assert day2 == day1.replace(str(first), str(first + timedelta(days=1)))
    assert day1.count(str(first)) == 300 - sum(1 for _ in files[1].open())  # one event_time per CSV row


def test_direct_plan_is_the_pipelines_statements(bench, settings, tmp_path):
    bench.generate_inbox(tmp_path, bench.FIRST_DAY, 2, 100)
    plan = bench.direct_plan(settings, tmp_path, bench.FIRST_DAY, 2)
    assert len(plan) == 2
    day = plan[1]
    assert {op[0] for op in day} == {"sql"}
    loads = [op for op in day if "FROM INFILE" in op[1]]
    statements = [op for op in day if "FROM INFILE" not in op[1]]
    folder = tmp_path / "events" / "2025-01-02"
    assert [(op[1], op[2]) for op in loads] == [  # what Run.insert_file runs on the embedded engine
        (f"INSERT INTO `events` FROM INFILE '{folder}/events-2025-01-02.{ext}' SETTINGS "
         f"input_format_allow_errors_num = 0, input_format_allow_errors_ratio = 0 FORMAT {fmt}", None)
        for ext, fmt in (("csv", "CSVWithNames"), ("jsonl", "JSONEachRow"))]
    assert [" ".join(op[1].split()).split(" (")[0] for op in statements] == \
        ["INSERT INTO `daily_rollup`", "INSERT INTO `user_sessions`"]
    assert all(op[2]["day"] == bench.FIRST_DAY + timedelta(days=1) for op in statements)
    assert statements[1][2]["gap"] == 30 * 60 * 1000


@pytest.mark.parametrize("kwargs", [{"rounds": 0}, {"days_short": 4, "days_long": 4}, {"rows_per_day": 0},
                                    {"parallel": 0}, {"days_long": True}])
def test_bad_sizes(bench, kwargs):
    with pytest.raises(BadInput):
        bench.measure(**kwargs)
