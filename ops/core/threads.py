"""Interrupting a thread at its next Python instruction, and starting threads where that may happen.

A fleet deploy runs hosts in threads; Ctrl-C or SIGTERM reaches the main thread only, which passes it on to each
running host as a KeyboardInterrupt raised in its thread (``PyThreadState_SetAsyncExc``), so each host cleans up as a
deploy interrupted in the main thread does.

The danger: CPython prepares a new thread's state in the thread that starts it, under the starting thread's id, until
the new thread runs. An interrupt aimed at the starting thread in that moment lands in the new thread instead, which
dies before it has started, while the starting thread waits in ``Thread.start()`` for it forever (a fleet deploy hung
at SIGTERM this way: its ssh call was starting the thread that feeds the remote helper). So an interrupt is sent, and
a thread that may be interrupted starts threads, only under one lock: :func:`start` returns once the new thread runs
under its own id. Only threads inside :func:`interruptible` are interrupted, so a thread whose work has ended is not
hit afterwards.
"""

from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager
from typing import Iterator

_GUARD = threading.Lock()
_ARMED: set[int] = set()


def start(thread: threading.Thread) -> None:
    """``thread.start()``, never while an interrupt is being sent (see the module)."""
    with _GUARD:
        thread.start()


@contextmanager
def interruptible() -> Iterator[None]:
    """The calling thread may be interrupted (:func:`interrupt`) inside this block, and only there."""
    me = threading.get_ident()
    with _GUARD:
        _ARMED.add(me)
    try:
        yield
    finally:
        with _GUARD:
            _ARMED.discard(me)


def interrupt(ident: int) -> bool:
    """Raise KeyboardInterrupt in the thread ``ident`` at its next Python instruction, if it is inside
    :func:`interruptible`; whether it was."""
    with _GUARD:
        if ident not in _ARMED:
            return False
        return ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident),
                                                           ctypes.py_object(KeyboardInterrupt)) == 1
