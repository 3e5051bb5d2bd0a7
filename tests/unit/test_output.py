"""ops.core.output's tables: they fit the line width, never cut an identifier or a date, fall back to one record
per row when even that does not fit, colour states only on a terminal; and the plural helper."""

from __future__ import annotations

import re

import pytest

from ops.core import output

NOTE = ("migrate stopped after 1 of 2 statements; statement 2 failed: Code: 47. DB::Exception: Unknown expression "
        "identifier `nope_a_rather_long_function_name` in scope SELECT nope_a_rather_long_function_name(1)")
ROWS = [("0001_run_ledger", "applied", "2026-11-27 19:22:12 UTC", "deploy@etl1", ""),
        ("0002_events_with_a_longer_name", "dirty", "2026-11-28 03:00:00 UTC", "root@vm", NOTE)]
COLUMNS = ["migration", "state", "applied", "by", "note"]
TOKENS = ["0001_run_ledger", "0002_events_with_a_longer_name", "2026-11-27 19:22:12 UTC", "2026-11-28 03:00:00 UTC",
          "deploy@etl1", "nope_a_rather_long_function_name(1)"]


@pytest.fixture(autouse=True)
def narrow_default(monkeypatch):
    monkeypatch.delenv("CHOPS_WIDTH", raising=False)
    yield
    output.wide(False)


def printed(capsys, width: int | None, rows=ROWS, columns=COLUMNS, monkeypatch=None) -> list[str]:
    if width is not None:
        monkeypatch.setenv("CHOPS_WIDTH", str(width))
    output.print_table(rows, columns)
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("width", [60, 80, 100, 120, 160])
def test_a_table_fits_the_width_and_keeps_identifiers_and_dates_whole(capsys, monkeypatch, width):
    lines = printed(capsys, width, monkeypatch=monkeypatch)
    assert max(map(len, lines)) <= width, "\n".join(lines)
    text = "\n".join(lines)
    for token in TOKENS:
        assert any(token in line for line in lines), f"{token!r} was cut at width {width}:\n{text}"
    assert all(line == line.rstrip() for line in lines), "lines are padded with spaces"
    assert "\x1b[" not in text  # not a terminal: no colour


def test_piped_output_is_at_most_120_columns_unless_wide(capsys, monkeypatch):
    lines = printed(capsys, None)
    assert max(map(len, lines)) <= output.PIPED_WIDTH and "migration" in lines[0]  # still a table at 120
    output.wide()
    lines = printed(capsys, None)
    assert max(map(len, lines)) > output.PIPED_WIDTH and any(NOTE in line for line in lines)


def test_a_table_too_wide_for_its_identifiers_becomes_one_record_per_row(capsys, monkeypatch):
    lines = printed(capsys, 60, monkeypatch=monkeypatch)
    assert lines[0] == "0001_run_ledger" and "  state" in lines[1] and "applied" in lines[1]
    assert "0002_events_with_a_longer_name" in lines  # each record starts with its first column, whole
    # at 120 the same rows fit as a table: identifiers in one column, the note wrapped at spaces
    lines = printed(capsys, 120, monkeypatch=monkeypatch)
    assert re.match(r"migration\s+state\s+applied\s+by\s+note$", lines[0])
    assert sum(1 for line in lines if line.startswith(" ")) >= 1  # the note's continuation lines


def test_column_widths_give_text_what_identifiers_leave():
    cells = [[str(v) for v in row] for row in ROWS]
    widths = output.column_widths(cells, COLUMNS, 120)
    assert widths[:4] == [30, 7, 23, 11]  # identifiers, states and dates at their widest
    assert sum(widths) + output.GAP * 4 == 120  # the note takes the rest
    assert output.column_widths(cells, COLUMNS, 80) is None  # 30 + 7 + 23 + 11 + 34 (its longest word) + gaps > 80


def test_short_values_with_spaces_are_never_wrapped():
    assert output.is_token("15 1 * * *") and output.is_token("2026-11-28 01:15 UTC") and output.is_token("abc")
    assert not output.is_token("succeeded 2026-11-26 (1m ago) and some more words")


def test_states_are_coloured_only_as_the_first_word_of_a_cell():
    assert output.styled("FAIL").spans[0].style == "bold red"
    assert output.styled("ok").spans[0].style == "green"
    assert output.styled("WARN").spans[0].style == "yellow"
    stale = output.styled("stale 2026-11-26 (3d ago)")
    assert stale.spans[0].style == "yellow" and stale.spans[0].end == len("stale")
    assert output.styled("failed_pipeline").spans == [] and output.styled("no failed runs").spans == []


def test_colour_follows_the_terminal_and_no_color(monkeypatch):
    from rich.console import Console

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    terminal = Console(force_terminal=True, color_system="standard", width=40)
    with terminal.capture() as seen:
        terminal.print(output.styled("FAIL"))
    assert "\x1b[1;31mFAIL" in seen.get()
    monkeypatch.setenv("NO_COLOR", "1")
    plain = Console(force_terminal=True, color_system="standard", width=40)
    with plain.capture() as seen:
        plain.print(output.styled("FAIL"))
    assert "\x1b[1;31m" not in seen.get() and "FAIL" in seen.get()


def test_plural():
    assert output.plural(1, "statement") == "1 statement"
    assert output.plural(5, "statement") == "5 statements"
    assert output.plural(0, "check") == "0 checks"
    assert output.plural(2, "process", "processes") == "2 processes"
    assert output.plural(12345, "row") == "12,345 rows"


def test_json_printed_counts_only_stdout(capsys):
    import io

    before = output.json_printed
    output.print_json({"a": 1}, file=io.StringIO())
    assert output.json_printed == before
    output.print_json({"a": 1})
    assert output.json_printed == before + 1 and '"a": 1' in capsys.readouterr().out


@pytest.mark.parametrize("width", [50, 64, 80])
def test_lists_and_paths_fold_between_their_names_never_inside_one(capsys, monkeypatch, width):
    rows = [("bench.ci_benchmarks", "cli_latency,migrations,pipeline_run,backfill_fleet", "config/default.toml"),
            ("paths.var", "/srv/chops/shared/var/clickhouse/embedded_engine_data", "environment CHOPS_PATHS__VAR")]
    lines = printed(capsys, width, rows=rows, columns=["key", "value", "from"], monkeypatch=monkeypatch)
    text = "\n".join(lines)
    assert max(map(len, lines)) <= width, text
    for name in ("cli_latency", "migrations", "pipeline_run", "backfill_fleet", "embedded_engine_data",
                 "CHOPS_PATHS__VAR", "bench.ci_benchmarks"):
        assert re.search(rf"(^|[\s,/]){re.escape(name)}([\s,/]|$)", text, re.M), f"{name} was cut:\n{text}"
