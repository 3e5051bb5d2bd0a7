"""Stopping a thread at its next stop point: how Ctrl-C and SIGTERM reach a fleet's host threads.

A fleet deploy runs hosts in threads; a signal reaches the main thread only, which asks each running host to stop
(:func:`interrupt`). The host's thread raises KeyboardInterrupt itself, at its next stop point (:func:`stop_point`,
before each remote command and step; :func:`pause` in a wait), and cleans up as a deploy interrupted in the main
thread does. It is raised once: the clean-up's own remote commands run.

Not an exception raised in the thread from outside (``PyThreadState_SetAsyncExc``), as this was first: on CPython
3.11 that one lands in whatever the thread runs, a thread being started included (it died unborn and its starter
waited in ``Thread.start()`` forever: a deploy hung at SIGTERM), and while its target waits in C every other thread
may spin on it (a test run hung at 100% CPU). Here nothing is raised anywhere but at a stop point.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

_LOCK = threading.Lock()
_STOPS: dict[int, threading.Event] = {}
_SHIELDED = threading.local()


@contextmanager
def interruptible() -> Iterator[None]:
    """The calling thread may be asked to stop (:func:`interrupt`) inside this block, and only there."""
    me = threading.get_ident()
    with _LOCK:
        _STOPS[me] = threading.Event()
    try:
        yield
    finally:
        with _LOCK:
            _STOPS.pop(me, None)


def interrupt(ident: int) -> bool:
    """Ask the thread ``ident`` to stop at its next stop point; whether it is inside :func:`interruptible`."""
    with _LOCK:
        stop = _STOPS.get(ident)
    if stop is None:
        return False
    stop.set()
    return True


def _asked() -> threading.Event | None:
    return _STOPS.get(threading.get_ident())


@contextmanager
def shielded() -> Iterator[None]:
    """A clean-up runs whole: its stop points pass (a stop asked meanwhile is raised at the next one after it). Also a
    decorator."""
    _SHIELDED.depth = getattr(_SHIELDED, "depth", 0) + 1
    try:
        yield
    finally:
        _SHIELDED.depth -= 1


def stop_point() -> None:
    """KeyboardInterrupt when this thread was asked to stop (once: what runs after it, a clean-up, goes on)."""
    stop = _asked()
    if stop is not None and stop.is_set() and not getattr(_SHIELDED, "depth", 0):
        stop.clear()
        raise KeyboardInterrupt


def pause(seconds: float) -> None:
    """``time.sleep(seconds)``, ended by a stop (:func:`stop_point`) in a thread that may be asked to."""
    stop = _asked()
    if stop is None:
        time.sleep(seconds)
        return
    stop.wait(seconds)
    stop_point()
