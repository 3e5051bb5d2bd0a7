"""Interrupting a thread while it starts threads (ops.core.threads), alone and through the fleet's runner with the
real ssh feeder: an interrupt must reach the thread it is meant for, never a thread being born (which dies unborn and
leaves its starter waiting forever)."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

from ops.core.threads import interrupt, interruptible, start
from ops.deploy.fleet import run_many
from ops.deploy.targets import resolve_targets
from ops.deploy.transport import _start_feeder


def _starting_threads_until_interrupted(got: list[str]) -> None:
    try:
        with interruptible():
            while True:
                t = threading.Thread(target=lambda: None, daemon=True)
                start(t)
                t.join()
    except KeyboardInterrupt:
        got.append("interrupted")


def test_an_interrupt_reaches_a_thread_that_keeps_starting_threads():
    """300 interrupts at random moments of a loop that starts threads: each reaches the looping thread (unguarded,
    about one in seven landed in the thread being started and the loop hung in Thread.start())."""
    rng = random.Random(7)
    for round_ in range(300):
        got: list[str] = []
        worker = threading.Thread(target=_starting_threads_until_interrupted, args=(got,), daemon=True)
        worker.start()
        time.sleep(rng.random() * 0.004)
        while not interrupt(worker.ident):  # not yet inside interruptible()
            time.sleep(0.0005)
        worker.join(5)
        assert not worker.is_alive() and got == ["interrupted"], f"round {round_}: the worker hung"


def test_a_thread_outside_interruptible_is_left_alone():
    ended = threading.Event()
    result: list[str] = []

    def work():
        with interruptible():
            pass
        ended.wait(5)
        time.sleep(0.05)  # a pending interrupt would land here
        result.append("finished")

    t = threading.Thread(target=work, daemon=True)
    t.start()
    time.sleep(0.05)
    assert interrupt(t.ident) is False
    ended.set()
    t.join(5)
    assert result == ["finished"]


def test_ctrl_c_stops_hosts_busy_starting_ssh_feeders(project):
    """The fleet runner's interrupt, at random moments, of hosts that do what a host does most: start the thread that
    feeds a remote helper its program (transport's feeder, over a real pipe). Every round ends, every host
    interrupted."""
    targets = resolve_targets(hosts="h0,h1", root=project)
    rng = random.Random(11)

    def job():
        while True:
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
    for round_ in range(40):
        timer = threading.Timer(0.05 + rng.random() * 0.02, lambda: signal.pthread_kill(main, signal.SIGINT))
        timer.start()
        started = time.monotonic()
        results, interrupted = run_many([(t, job) for t in targets], 2, lambda line: None)
        assert interrupted and time.monotonic() - started < 5, f"round {round_}"
        assert all(isinstance(r, KeyboardInterrupt) for _, r in results), f"round {round_}: {results}"
