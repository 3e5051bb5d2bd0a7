"""Presentation: tables, JSON and CSV for people and scripts, and run logs a full disk cannot break (:class:`LogFile`).
rich is imported only when a table is drawn."""

from __future__ import annotations

import csv
import json
import logging
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


def print_json(data: Any, file=None) -> None:
    print(to_json(data), file=file or sys.stdout)


def print_csv(rows: Sequence[Sequence[Any]], columns: Sequence[str], file=None) -> None:
    writer = csv.writer(file or sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else (_plain(v) if not isinstance(v, (int, float, str)) else v) for v in row])


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def console(stderr: bool = False):
    import os

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped or captured output keeps whole lines (a terminal's width is used when there is one; CHOPS_WIDTH
    # sets it otherwise).
    width = None if stream.isatty() else int(os.environ.get("CHOPS_WIDTH", "200"))
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def print_table(rows: Iterable[Sequence[Any]], columns: Sequence[str], title: str | None = None,
                right: Iterable[str] = ()) -> None:
    """A table on stdout; ``right`` names the columns to right-align (numbers)."""
    from rich.table import Table

    right = set(right)
    table = Table(title=title, title_justify="left", header_style="bold", box=_box())
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left", overflow="fold")
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    console().print(table)


def print_pairs(pairs: Iterable[tuple[str, Any]], title: str | None = None) -> None:
    """Key/value lines aligned in two columns."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(key, "" if value is None else str(value))
    console().print(table)


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
