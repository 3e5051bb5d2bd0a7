"""SIGTERM and Ctrl-C while migrations run: stop between two statements, never inside the journal's record of one.

The embedded engine cannot be interrupted inside a statement (a signal's Python handler runs when the statement
returns), and on a server a statement cut off mid-way is of unknown fate. So the first signal only asks to stop:
the running statement finishes, its event is written, and the next journal write (the migrator's ``_write``, which
runs before every statement) writes what ran and holds back the ``begin`` of what would run next, then raises
:class:`Stopped`. A second signal stops at once (``KeyboardInterrupt``): the migration is then dirty, as after a
kill, and ``db.migrate --resume`` or ``db.rollback`` settles it.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable

from ops.core.errors import WorkFailed

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(WorkFailed):
    """A run stopped by SIGTERM or Ctrl-C, between two statements; exits 128 + the signal's number."""

    def __init__(self, message: str, hint: str, signum: int):
        super().__init__(message, hint)
        self.exit_code = 128 + signum


class StopRequest:
    """Whether a signal asked the run to stop (``signum``), while :meth:`watching` is active."""

    def __init__(self, notify: Callable[[str], None]):
        self.notify = notify
        self.signum: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    @contextmanager
    def watching(self):
        """Turn SIGTERM and SIGINT into a request to stop for the duration (main thread only: signals reach only
        it); the handlers before are restored after."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum, frame):
            if self.signum is not None:
                raise KeyboardInterrupt  # asked twice: at once
            self.signum = signum
            self.notify(f"{signal.Signals(signum).name}: stopping after the running statement (again: at once)")

        previous = {sig: signal.signal(sig, stop) for sig in SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.signum = None

    def stopped(self, written: list[dict[str, Any]], held: list[dict[str, Any]],
                ways_out: Callable[[str], str]) -> Stopped:
        """What the stop left, after :meth:`split`: a migration dirty after the statement whose event was written
        last (``ways_out(id)``: the hint that settles it), or nothing dirty and the ``begin`` ``held`` back."""
        last = written[-1] if written and written[-1]["event"] == "statement" else None
        if last is None:
            nxt = held[0]
            command = "inv db.migrate" if nxt["operation"] == "apply" else "inv db.rollback"
            return Stopped(f"stopped by {self.name} before the {nxt['operation']} of {nxt['migration_id']}; nothing "
                           "is dirty", f"continue with: {command}", self.signum)
        mid, op = last["migration_id"], last["operation"]
        of = mid if op == "apply" else f"the {op} of {mid}"
        return Stopped(f"stopped by {self.name} after statement {last['statement'] + 1} of {of}; {mid} is dirty",
                       ways_out(mid), self.signum)

    def split(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
        """Journal events about to be written: (the ones to write, the ones held back, whether to stop after
        writing). Without a request everything is written; with one, a ``begin`` and what follows it are held back,
        and the run stops unless what is written ends the work (a ``done``, or a ``failed`` about to be raised)."""
        if self.signum is None:
            return rows, [], False
        begin = next((i for i, r in enumerate(rows) if r["event"] == "begin"), len(rows))
        ran, held = rows[:begin], rows[begin:]
        return ran, held, bool(held) or bool(ran and ran[-1]["event"] == "statement")
