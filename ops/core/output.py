"""Presentation: tables, JSON and CSV for people and scripts, and run logs a full disk cannot break (:class:`LogFile`).
rich is imported only when a table is drawn."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Sequence


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def to_json(data: Any) -> str:
    return json.dumps(data, default=_plain, indent=2, ensure_ascii=False)


json_printed = 0  # JSON documents printed on stdout by this process (a failure adds none after one)


def print_json(data: Any, file=None) -> None:
    global json_printed
    stream = file or sys.stdout
    print(to_json(data), file=stream)
    if stream is sys.stdout:
        json_printed += 1


def print_csv(rows: Sequence[Sequence[Any]], columns: Sequence[str], file=None) -> None:
    writer = csv.writer(file or sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else (_plain(v) if not isinstance(v, (int, float, str)) else v) for v in row])


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``n`` and ``noun`` in the right number: "1 statement", "2 statements" (``nouns``: an irregular plural)."""
    return f"{n:,} {word(n, noun, nouns)}"


def word(n: int, noun: str, nouns: str | None = None) -> str:
    """``noun`` in the number ``n`` asks for: "statement" for 1, "statements" otherwise."""
    return noun if n == 1 else (nouns or noun + "s")


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


PIPED_WIDTH = 120  # piped or captured output: lines at most this wide (CHOPS_WIDTH or --wide change it)
UNLIMITED = 100_000
TOKEN_MAX = 48  # an identifier or date column keeps its values whole up to this width
GAP = 2  # the space between two columns
SHORT = 20  # a value this short is never wrapped, spaces or not (a cron schedule, "3 days ago")
TEXT_MIN = 16  # the narrowest a wrapped text column may become before the records go one under the other
_wide = False

# The state words coloured on a terminal (the first word of a cell): green is fine, yellow needs a look, red failed.
STATE_STYLES = {
    **dict.fromkeys(("ok", "pass", "passed", "succeeded", "applied", "healthy"), "green"),
    **dict.fromkeys(("warn", "warning", "stale", "pending", "missing", "differs", "acknowledged", "running"),
                    "yellow"),
    **dict.fromkeys(("fail", "failed", "error", "dirty", "drifted", "bad", "unhealthy", "killed", "gone"), "bold red"),
}
_SEPARATED = re.compile(r"[^,/]+[,/]?|[,/]")  # a path or a list in pieces, each with the separator after it
_IDENT = re.compile(r"^[\w.@:+\-]+$")
_DATE = re.compile(r"^\d{4}-\d\d-\d\d(?:[ T]\d\d:\d\d(?::\d\d(?:\.\d+)?)?)?(?: ?(?:UTC|Z|[+-]\d\d:?\d\d))?$")


def wide(on: bool = True) -> None:
    """Print tables at their full width, even when piped (``--wide``)."""
    global _wide
    _wide = on


def line_width(stream) -> int | None:
    """The width tables are fitted to: ``--wide``: unlimited; ``CHOPS_WIDTH`` (0 = unlimited); a terminal's own
    width (``None``: rich asks the terminal, honouring ``COLUMNS``); otherwise :data:`PIPED_WIDTH`."""
    if _wide:
        return UNLIMITED
    given = os.environ.get("CHOPS_WIDTH", "").strip()
    if given.isdigit():
        return int(given) or UNLIMITED
    return None if _isatty(stream) else PIPED_WIDTH


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def console(stderr: bool = False):
    """A rich console for ``stdout`` (or stderr): colour only on a terminal and never with ``NO_COLOR`` (rich's own
    rules), lines fitted to :func:`line_width`."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stderr and _isatty(stream) else line_width(stream)  # a progress bar fits its terminal
    return Console(file=stream, highlight=False, soft_wrap=False, width=width)


def styled(value: Any):
    """A cell as rich ``Text``, its first word coloured when it is a state (:data:`STATE_STYLES`)."""
    from rich.text import Text

    text = Text("" if value is None else str(value))
    first = text.plain.split(" ", 1)[0]
    style = STATE_STYLES.get(first.strip("():,;").lower())
    if style:
        text.stylize(style, 0, len(first))
    return text


def is_token(value: str) -> bool:
    """An identifier, number, date or other short value: what a table must never cut (a name, a version, a host, a
    date and time, or at most :data:`SHORT` characters, like a cron schedule). A path or a list (``a,b``) is not:
    it may fold when the line is short."""
    value = value.strip()
    return len(value) <= SHORT or bool(_DATE.match(value)) or is_identifier(value)


def is_identifier(word: str) -> bool:
    """A name, number, version or host: letters, digits and ``_ . @ : + -`` (quotes and brackets around it aside)."""
    return bool(_IDENT.match(word.strip("()[]{},;'\"`")))


def column_widths(cells: list[list[str]], columns: Sequence[str], width: int) -> list[int] | None:
    """Each column's width in a table ``width`` wide, or ``None`` when it cannot fit with its identifiers whole.
    A token column (:func:`is_token`) gets its widest value (up to :data:`TOKEN_MAX`); a text column at least
    :data:`TEXT_MIN` (or its widest value, when narrower) and its longest identifier (:func:`is_identifier`: a path
    or a list may fold), then a share of what is left."""
    plans, text = [], set()
    for i, name in enumerate(columns):
        values = [row[i] for row in cells if i < len(row)]
        widest = max((len(v) for v in values), default=0)
        # the longest word that must stay whole: of the header, and each identifier or date in the values
        word = max([len(w) for w in name.split()] + [len(part) for v in values for w in v.split()
                                                     for part in _SEPARATED.findall(w) if is_identifier(part)] + [1])
        if all(is_token(v) for v in values):
            least = min(max(widest, max(map(len, name.split() or [""]))), TOKEN_MAX)
            plans.append((least, max(least, len(name))))  # a header of several words wraps only when space is short
        else:
            text.add(i)
            least = min(max(min(widest, TEXT_MIN), word), TOKEN_MAX)
            plans.append((least, max(widest, least)))
    spare = width - GAP * (len(columns) - 1) - sum(least for least, _ in plans)
    if spare < 0:
        return None
    widths = [least for least, _ in plans]
    for i in sorted(range(len(plans)), key=lambda i: plans[i][1] - plans[i][0]):  # whole headers first
        if plans[i][1] - plans[i][0] <= spare and i not in text:
            spare -= plans[i][1] - widths[i]
            widths[i] = plans[i][1]
    wants = [most - width for (_, most), width in zip(plans, widths)]
    while spare > 0 and any(wants):  # share what is left among the text columns that want more, a cell at a time
        for i, want in enumerate(wants):
            if want and spare:
                widths[i] += 1
                wants[i] -= 1
                spare -= 1
    return widths


def print_table(rows: Iterable[Sequence[Any]], columns: Sequence[str], title: str | None = None,
                right: Iterable[str] = ()) -> None:
    """A table on stdout; ``right`` names the columns to right-align (numbers). It fits the line width
    (:func:`line_width`): text columns wrap at spaces, identifiers and dates stay whole (:func:`column_widths`);
    when even that does not fit, each row is printed as a record, one ``column value`` line under the other."""
    from rich.table import Table
    from rich.text import Text

    right = set(right)
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    out = console()
    widths = column_widths(cells, columns, out.width)
    if widths is None and len(columns) > 1:
        return _print_records(out, cells, columns, title)
    table = Table(header_style="bold", box=_box(), show_edge=False, pad_edge=False, collapse_padding=True)
    for col, size in zip(columns, widths or [out.width]):
        table.add_column(col, justify="right" if col in right else "left", overflow="fold", width=size)
    for row in cells:
        table.add_row(*[styled(_fit_words(v, size)) for v, size in zip(row, widths or [out.width] * len(row))])
    if title:
        _print(out, Text(title, style="bold"))
    _print(out, table)


def _fit_words(value: str, width: int) -> str:
    """``value`` with each word longer than ``width`` broken after its ``/`` and ``,`` (a path, a list): rich folds
    such a word anywhere, which would cut a name inside it."""
    if len(value) <= width:
        return value
    return " ".join(_break(word, width) if len(word) > width else word for word in value.split(" "))


def _break(word: str, width: int) -> str:
    lines, line = [], ""
    for piece in _SEPARATED.findall(word):
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = ""
        line += piece
    return "\n".join(lines + [line])


def _print(out, renderable) -> None:
    """Print without the spaces rich pads each line with to the table's width."""
    with out.capture() as captured:
        out.print(renderable)
    out.file.write("".join(line.rstrip(" ") + "\n" for line in captured.get().splitlines()))
    out.file.flush()


def _print_records(out, cells: list[list[str]], columns: Sequence[str], title: str | None) -> None:
    """The narrow layout: each row a record headed by its first value, the other columns one per line."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    if title:
        _print(out, Text(title, style="bold"))
    room = max(out.width - max(map(len, columns[1:])) - 4, 12)  # for a value, beside its column's name
    for n, row in enumerate(cells):
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True, style="dim")
        grid.add_column(overflow="fold")
        for name, value in zip(columns[1:], row[1:]):
            if value:  # an empty cell says nothing in a record
                grid.add_row(f"  {name}", styled(_fit_words(value, room)))
        head = styled(row[0])
        head.stylize("bold")
        _print(out, Group(*([Text()] if n else []), head, grid))


def print_pairs(pairs: Iterable[tuple[str, Any]], title: str | None = None) -> None:
    """Key/value lines aligned in two columns."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(key, styled(value))
    _print(console(), table)


def _box():
    from rich import box

    return box.SIMPLE_HEAD


def info(message: str) -> None:
    """A progress or status line for people, on stderr so stdout stays clean for data."""
    print(message, file=sys.stderr, flush=True)


class LogFile(logging.FileHandler):
    """A run's log file that a full disk cannot break. logging's own handler prints a traceback for every record
    it fails to write, and its ``close`` raises, which would turn a run that succeeded (and is recorded so) into
    an error. This one says once, in one line on stderr, that the log could not be written, and the work goes on:
    the data and the ledger do not depend on the log."""

    def __init__(self, path: Path | str):
        super().__init__(path, encoding="utf-8")
        self.failed: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.failed is None:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if self.failed is None and error is not None:
            self.failed = error
            reason = getattr(error, "strerror", None) or str(error)
            info(f"warning: cannot write the log {self.baseFilename}: {reason}; going on without it")

    def close(self) -> None:
        try:
            super().close()
        except OSError as exc:  # the unwritten end of the log (reported by handleError, unless this is the first)
            if self.failed is None:
                self.failed = exc
                info(f"warning: cannot write the log {self.baseFilename}: {exc.strerror}; going on without it")


class Progress:
    """A progress bar with ETA on a terminal; one line per step otherwise (logs, CI). Use as a context manager.
    ``done``: steps finished before (a resumed backfill counts on from them; the ETA is from this run's pace)."""

    def __init__(self, total: int, label: str, done: int = 0):
        self.total, self.label, self.done, self.before = total, label, done, done
        self.started = __import__("time").monotonic()
        self._bar = None
        if sys.stderr.isatty() and total:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                     console=console(stderr=True), transient=False)
            self._task = self._bar.add_task(label, total=total, completed=done)

    def __enter__(self) -> "Progress":
        if self._bar:
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar:
            self._bar.stop()

    def step(self, line: str) -> None:
        """One unit of work finished; ``line`` says what it was."""
        import time

        self.done += 1
        if self._bar:
            self._bar.console.print(line, highlight=False)
            self._bar.update(self._task, completed=self.done)
            return
        elapsed = time.monotonic() - self.started
        now = self.done - self.before
        eta = elapsed / now * (self.total - self.done) if now else 0
        info(f"[{self.done}/{self.total}] {line} (ETA {eta:.0f}s)")
