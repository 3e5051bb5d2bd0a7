"""Stopping threads at their next stop point: how Ctrl-C and SIGTERM reach a fleet's host threads.

A fleet deploy runs hosts in threads; a signal reaches the main thread only, which sets the Event the hosts run
under (:func:`interruptible`). Each host's thread raises KeyboardInterrupt itself, at its next stop point
(:func:`stop_point`, before each remote command and step; :func:`pause` in a wait), and cleans up as a deploy
interrupted in the main thread does. It is raised once in each thread: the clean-up's own remote commands run.

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

_RUNNING = threading.local()  # this thread's stop: [the Event it runs under, whether its stop was raised]
_SHIELDED = threading.local()


@contextmanager
def interruptible(stop: threading.Event) -> Iterator[None]:
    """The calling thread stops at its stop points inside this block once ``stop`` is set (at the first one if it
    already is)."""
    _RUNNING.stop = [stop, False]
    try:
        yield
    finally:
        _RUNNING.stop = None


def _asked() -> bool:
    """Whether this thread was asked to stop and has not been stopped yet."""
    running = getattr(_RUNNING, "stop", None)
    return running is not None and running[0].is_set() and not running[1]


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
    if _asked() and not getattr(_SHIELDED, "depth", 0):
        _RUNNING.stop[1] = True
        raise KeyboardInterrupt


def pause(seconds: float) -> None:
    """``time.sleep(seconds)``, ended by a stop (:func:`stop_point`) in a thread that may be asked to."""
    running = getattr(_RUNNING, "stop", None)
    if running is None or running[1] or getattr(_SHIELDED, "depth", 0):
        time.sleep(seconds)
        return
    running[0].wait(seconds)
    stop_point()
