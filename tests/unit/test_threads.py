"""Stopping threads at their stop points (ops.core.threads), alone and through the fleet's runner with the real ssh
feeder: a stop is raised in the thread asked, once, at a stop point, never in a thread being started."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from ops.core.threads import interrupt, interruptible, pause, shielded, stop_point
from ops.deploy.fleet import run_many
from ops.deploy.targets import resolve_targets
from ops.deploy.transport import _start_feeder


def _stop_while(work, asked: threading.Event) -> bool:
    """Run ``work`` in a thread, ask it to stop, then set ``asked`` (what it waits on) and wait for it to end: whether
    the thread could be asked."""
    t = threading.Thread(target=work)
    t.start()
    time.sleep(0.05)
    could = interrupt(t.ident)
    asked.set()
    t.join(5)
    assert not t.is_alive()
    return could


def test_a_stop_is_raised_once_at_the_next_stop_point_and_the_clean_up_goes_on():
    said: list[str] = []
    asked = threading.Event()

    def work():
        with interruptible():
            try:
                asked.wait(5)
                said.append("step ends")  # the step under way when asked ends
                stop_point()
                said.append("next step")
            except KeyboardInterrupt:
                stop_point()  # the clean-up's own stop points pass
                said.append("cleaned up")

    assert _stop_while(work, asked) is True
    assert said == ["step ends", "cleaned up"]


def test_a_clean_up_after_a_failure_runs_whole_when_a_stop_is_asked_meanwhile():
    said: list[str] = []
    asked = threading.Event()

    @shielded()
    def clean_up():
        asked.wait(5)  # the stop is asked here
        stop_point()
        said.append("restored")

    def work():
        with interruptible():
            try:
                clean_up()
                stop_point()
            except KeyboardInterrupt:
                said.append("then stopped")

    assert _stop_while(work, asked) is True
    assert said == ["restored", "then stopped"]


def test_pause_ends_early_on_a_stop_and_is_a_sleep_elsewhere():
    took: list[float] = []

    def waiting():
        with interruptible():
            began = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                pause(30)
            took.append(time.monotonic() - began)

    t = threading.Thread(target=waiting)
    t.start()
    time.sleep(0.1)
    interrupt(t.ident)
    t.join(5)
    assert took and took[0] < 5
    began = time.monotonic()
    pause(0.05)  # the main thread: no stop can be asked of it here
    assert time.monotonic() - began >= 0.05


def test_a_thread_outside_interruptible_is_left_alone():
    result: list[str] = []
    go = threading.Event()

    def work():
        with interruptible():
            pass
        go.wait(5)
        stop_point()
        result.append("finished")

    assert _stop_while(work, go) is False
    assert result == ["finished"]


def _pipes() -> set[str]:
    """The pipes this process holds open (not its other descriptors: an engine's files come and go meanwhile)."""
    held = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed by now
            continue
        if target.startswith("pipe:"):
            held.add(target)
    return held


def test_ctrl_c_stops_hosts_busy_starting_ssh_feeders(project):
    """The fleet runner's interrupt, at random moments, of hosts that do what a host does most: start the thread that
    feeds a remote helper its program (transport's feeder, over a real pipe), a stop point before each. Every round
    ends, every host interrupted, no descriptor left open."""
    targets = resolve_targets(hosts="h0,h1", root=project)
    rng = random.Random(11)

    def job():
        while True:
            stop_point()  # as Remote.run does before each command
            read, write = os.pipe()
            try:
                try:
                    _start_feeder(write, b"program")
                finally:
                    os.close(write)  # as Remote.run does: the feeder writes to a dup of its own
                assert os.read(read, 64) == b"program"
            finally:
                os.close(read)

    main = threading.main_thread().ident
    pipes = _pipes()
    for round_ in range(40):
        timer = threading.Timer(0.02 + rng.random() * 0.02, lambda: signal.pthread_kill(main, signal.SIGINT))
        timer.start()
        started = time.monotonic()
        results, interrupted = run_many([(t, job) for t in targets], 2, lambda line: None)
        assert interrupted and time.monotonic() - started < 5, f"round {round_}"
        assert all(isinstance(r, KeyboardInterrupt) for _, r in results), f"round {round_}: {results}"
    time.sleep(0.1)  # the last feeders close their own
    assert _pipes() <= pipes
