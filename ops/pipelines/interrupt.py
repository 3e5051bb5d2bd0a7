"""Interrupts: SIGTERM and Ctrl-C stop a run as ``killed``, and a backfill from starting partitions; never as a
database error.

Two facts of the engine shape this (measured, see facts.md):

* clickhouse-connect catches any ``Exception`` raised while a statement runs, a signal handler's included, and
  wraps it into its own database error. So :class:`Interrupted` is a ``BaseException``, like ``KeyboardInterrupt``:
  no ``except Exception`` on the way turns it into something else.
* the embedded engine runs a statement in C, and Python runs a signal handler only when the statement is over
  (a ten-second statement: the handler ran after ten seconds). So a watcher thread learns of the signal at once
  (``signal.set_wakeup_fd``) and cancels the statements of the runs in their cancellable phase (``KILL QUERY``);
  the statement returns now, and the handler raises in the main thread. A run's statements are known by its tag:
  on the embedded engine its connection's ``log_comment`` is set to the run's staging table for that phase (``SET``,
  a fraction of a millisecond; it shows in ``system.processes``), and a statement that names the staging table
  counts too (the only way on a server, whose HTTP requests may not share a session; there a signal also reaches
  the main thread at once, as it waits on a socket).

Where the handler may raise is explicit: in a run's *cancellable* phase (its build and checks, :func:`cancellable`)
and while a run waits for its lock (:func:`armed`). Everywhere else (the swap and the row that records it, the row
that records a failure, dropping the staging table, a backfill's own loop) a signal is only noted: the work that
is under way is recorded whole, :func:`requested` says a stop was asked for, and the next :func:`check` (before a
partition starts) raises. Signals are handled only in the main thread (Python's rule); a backfill's worker threads
learn of a stop through :func:`requested`, and their statements are cancelled by the same watcher.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from ops.clickhouse.client import connect
from ops.core.errors import WorkFailed

STOPS = (signal.SIGTERM, signal.SIGINT)
# How a statement that KILL QUERY cancelled fails (chDB and a server alike).
CANCELLED = re.compile(r"QUERY_WAS_CANCELLED|Code: 394\b")
_NAME = re.compile(r"[A-Za-z0-9_]+")


class Interrupted(BaseException):
    """A run (or a backfill) was stopped by a signal. A BaseException, so that no ``except Exception`` (the
    database client's included) mistakes it for a failure. ``run_id``: the attempt it ended, if one had begun."""

    def __init__(self, signum: int, message: str = ""):
        self.signum = signum
        self.signal = signal.Signals(signum).name
        self.message = message or f"stopped by {self.signal}"
        self.run_id = ""
        super().__init__(self.message)


class TimedOut(WorkFailed):
    """The run took longer than the pipeline's timeout."""


class Stopped(WorkFailed):
    """What the task layer turns an :class:`Interrupted` into: one line, and the shell's exit code for death by
    that signal (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, message: str, signum: int, hint: str | None = None):
        super().__init__(message, hint)
        self.exit_code = 128 + int(signum)


class _Deadline(BaseException):
    """Raised by the SIGALRM handler inside a run; :func:`cancellable` turns it into :class:`TimedOut`."""


@dataclass
class _State:
    """The process's interrupt state. ``signum``: the stop asked for; ``alarm``: the main thread's run passed its
    deadline; ``armed``: the main thread may be interrupted where it is; ``staging``: the tags (staging tables) of
    the runs in their cancellable phase, each with whether its run is the main thread's."""

    signum: int | None = None
    alarm: bool = False
    armed: bool = False
    staging: dict[str, bool] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # held while cancelling
    depth: int = 0
    settings: Any = None


_state = _State()


def _main() -> bool:
    return threading.current_thread() is threading.main_thread()


def requested() -> int | None:
    """The signal that asked this process to stop (SIGTERM or SIGINT), or None."""
    return _state.signum


def check() -> None:
    """Raise :class:`Interrupted` if a stop was asked for: a checkpoint before work begins."""
    if _state.signum is not None:
        raise Interrupted(_state.signum)


def cancelled(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is a statement cancelled by ``KILL QUERY``."""
    seen = 0
    while exc is not None and seen < 10:
        if CANCELLED.search(str(exc)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _handler(signum: int, frame) -> None:
    if signum == signal.SIGALRM:
        _state.alarm = True
        if _state.armed:
            _state.armed = False
            raise _Deadline()
        return
    if _state.signum is None:
        _state.signum = signum
    if _state.armed:
        _state.armed = False  # once: what runs after (recording how the run ended) is not interrupted again
        raise Interrupted(signum)


@contextmanager
def scope(settings) -> Iterator[None]:
    """Handle SIGTERM, SIGINT and SIGALRM in the main thread for the duration (the outermost scope does; nested
    ones and other threads change nothing). Inside, a signal is noted, cancels the statements of the runs in
    their cancellable phase, and raises only where :func:`armed` or :func:`cancellable` allow it."""
    if not _main() or _state.depth:
        _state.depth += _main()
        try:
            yield
        finally:
            _state.depth -= _main()
        return
    _state.signum, _state.alarm, _state.armed, _state.staging = None, False, False, {}
    _state.settings, _state.depth = settings, 1
    previous = {sig: signal.signal(sig, _handler) for sig in (*STOPS, signal.SIGALRM)}
    read, write = os.pipe()
    os.set_blocking(write, False)
    old_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    watcher = threading.Thread(target=_watch, args=(read,), name="chops-interrupts", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        _state.armed, _state.depth = False, 0
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.set_wakeup_fd(old_fd)
        os.write(write, b"\0")  # tells the watcher to end
        watcher.join(timeout=10)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(write)
        os.close(read)


def _watch(read: int) -> None:
    """The watcher thread: a byte per signal arrives on ``read`` the moment the signal does (0: end)."""
    while True:
        try:
            data = os.read(read, 64)
        except OSError:
            return
        if not data or 0 in data:
            return
        stop = any(b in STOPS for b in data)
        if stop and _state.signum is None:
            _state.signum = next(b for b in data if b in STOPS)
        if stop or signal.SIGALRM in data:
            _cancel(only_main=not stop)


def _cancel(only_main: bool = False) -> None:
    """Cancel the statements of the runs in their cancellable phase (``only_main``: of the main thread's run, whose
    deadline passed): those tagged with a run's staging table, or naming it."""
    with _state.lock:
        tags = [tag for tag, main in _state.staging.items() if (main or not only_main) and _NAME.fullmatch(tag)]
        if not tags or _state.settings is None:
            return
        listed = ", ".join(f"'{t}'" for t in tags)
        where = (f"(Settings['log_comment'] IN ({listed}) OR multiSearchAny(query, [{listed}])) "
                 "AND NOT startsWith(query, 'KILL QUERY')")
        try:
            db = connect(_state.settings, admin=True)
        except Exception:  # noqa: BLE001 - cannot cancel: the handler still stops the run when its statement ends
            return
        try:
            db.command(f"KILL QUERY WHERE {where} ASYNC")
        except Exception:  # noqa: BLE001 - as above
            pass
        finally:
            db.close()


@contextmanager
def armed() -> Iterator[None]:
    """In the main thread, a signal raises :class:`Interrupted` right where the code is (for waiting on a lock:
    nothing has begun). Elsewhere, nothing changes."""
    if not _main() or not _state.depth:
        yield
        return
    check()
    _state.armed = True
    try:
        yield
    finally:
        _state.armed = False


@contextmanager
def cancellable(db, staging: str, timeout: float | None = None) -> Iterator[None]:
    """A run's cancellable phase on ``db``: its build into ``staging`` and the checks. A stop cancels the run's
    statements (``db``'s, tagged with ``staging``, and those naming ``staging``) and ends the phase with
    :class:`Interrupted`; so does a stop asked for during it, when the phase ends (a checkpoint: nothing is swapped
    in after a stop). In the main thread, ``timeout`` seconds end it with :class:`TimedOut`."""
    main = _main() and bool(_state.depth)
    check()
    with _state.lock:
        _state.staging[staging] = main
    if main:
        _state.alarm = False
        _state.armed = True
        if timeout:
            signal.setitimer(signal.ITIMER_REAL, timeout)
    tagged = db.target.kind == "embedded"  # a server's HTTP requests may not share a session: names it is
    try:
        if tagged:
            db.command(f"SET log_comment = '{staging}'")
        yield
    except BaseException as exc:
        _leave(db if tagged else None, staging, main)
        if isinstance(exc, Interrupted):
            raise
        if isinstance(exc, _Deadline) or (main and _state.alarm and cancelled(exc)):
            raise TimedOut(f"timed out after {timeout:g}s") from None
        if _state.signum is not None and (main or cancelled(exc)):
            raise Interrupted(_state.signum) from None
        raise
    _leave(db if tagged else None, staging, main)
    check()


def _leave(db, staging: str, main: bool) -> None:
    if main:
        _state.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
    with _state.lock:  # waits for a cancellation under way: nothing after this point is cancelled
        _state.staging.pop(staging, None)
    if db is None:
        return
    try:
        db.command("SET log_comment = ''")
    except Exception:  # noqa: BLE001 - the tag only matters to a cancellation, and there is none after this
        pass
