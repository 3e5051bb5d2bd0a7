"""Stopping threads at their stop points (ops.core.threads), alone and through the fleet's runner with the real ssh
feeder: a stop is raised in the thread asked, once, at a stop point, never in a thread being started."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from ops.core.threads import interruptible, pause, shielded, stop_point
from ops.deploy.fleet import run_many
from ops.deploy.targets import resolve_targets
from ops.deploy.transport import _start_feeder


def _stop_while(work, stop: threading.Event, asked: threading.Event) -> None:
    """Run ``work`` in a thread, set ``stop`` (the runner's Ctrl-C), then ``asked`` (what it waits on), and wait for
    it to end."""
    t = threading.Thread(target=work)
    t.start()
    time.sleep(0.05)
    stop.set()
    asked.set()
    t.join(5)
    assert not t.is_alive()


def test_a_stop_is_raised_once_at_the_next_stop_point_and_the_clean_up_goes_on():
    said: list[str] = []
    stop, asked = threading.Event(), threading.Event()

    def work():
        with interruptible(stop):
            try:
                asked.wait(5)
                said.append("step ends")  # the step under way when asked ends
                stop_point()
                said.append("next step")
            except KeyboardInterrupt:
                stop_point()  # the clean-up's own stop points pass
                said.append("cleaned up")

    _stop_while(work, stop, asked)
    assert said == ["step ends", "cleaned up"]


def test_a_clean_up_after_a_failure_runs_whole_when_a_stop_is_asked_meanwhile():
    said: list[str] = []
    stop, asked = threading.Event(), threading.Event()

    @shielded()
    def clean_up():
        asked.wait(5)  # the stop is asked here
        stop_point()
        said.append("restored")

    def work():
        with interruptible(stop):
            try:
                clean_up()
                stop_point()
            except KeyboardInterrupt:
                said.append("then stopped")

    _stop_while(work, stop, asked)
    assert said == ["restored", "then stopped"]


def test_pause_ends_early_on_a_stop_and_is_a_sleep_elsewhere():
    took: list[float] = []
    stop = threading.Event()

    def waiting():
        with interruptible(stop):
            began = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                pause(30)
            took.append(time.monotonic() - began)

    t = threading.Thread(target=waiting)
    t.start()
    time.sleep(0.1)
    stop.set()
    t.join(5)
    assert took and took[0] < 5
    began = time.monotonic()
    pause(0.05)  # the main thread: no stop can be asked of it here
    assert time.monotonic() - began >= 0.05


def test_a_thread_outside_interruptible_is_left_alone():
    result: list[str] = []
    stop, go = threading.Event(), threading.Event()

    def work():
        with interruptible(stop):
            pass
        go.wait(5)
        stop_point()
        result.append("finished")

    _stop_while(work, stop, go)
    assert result == ["finished"]


def test_a_thread_that_starts_after_the_stop_stops_at_its_first_stop_point():
    """A host the pool starts just as Ctrl-C came does not deploy on while the others stop."""
    stop = threading.Event()
    stop.set()
    said: list[str] = []
    with interruptible(stop):
        try:
            said.append("local preparation")
            stop_point()
            said.append("first remote command")
        except KeyboardInterrupt:
            said.append("stopped")
    assert said == ["local preparation", "stopped"]


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
