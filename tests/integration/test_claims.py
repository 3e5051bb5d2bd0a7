"""Partition claims in the database (issue 14, finding 11), on the real embedded engine: the claim path a server
takes, forced on chDB by making the :class:`~ops.pipelines.claims.Claim` directly. Two threads with connections of
their own contend for one day and are never inside together; a dead process's claim and another host's silent one
are taken over; a live one is waited for; a holder whose claim was taken over cannot drop its successor's.
"""

import json
import socket
import subprocess
import threading
import time
import uuid
from datetime import date
from types import SimpleNamespace

import pytest

from ops.core.errors import LockTimeout
from ops.core.locks import FileLock
from ops.core.process import Holder
from ops.pipelines import claims

DAY = date(2026, 1, 2)


def claim(db, key="events/2026-01-02", **kwargs):
    messages = []
    made = claims.Claim(db, key, f"events for {DAY}", kwargs.pop("timeout", 30.0), notify=messages.append, **kwargs)
    return made, messages


def forge(db, key, holder: dict, beat_seconds_ago: float | None = None):
    """A claim of ``key`` as another process would have left it: its table, and maybe a heartbeat."""
    c, _ = claim(db, key)
    claims._require_beats(db)
    token = uuid.uuid4().hex
    record = json.dumps({**holder, "key": key, "token": token}).replace("\\", "\\\\").replace("'", "\\'")
    db.command(f"CREATE TABLE `{c.table}` (token String) ENGINE = Memory COMMENT '{record}'")
    if beat_seconds_ago is not None:
        db.command(f"INSERT INTO `{claims.BEATS}` (token, at) VALUES ('{token}', "
                   f"now64(6) - toIntervalMillisecond({int(beat_seconds_ago * 1000)}))")
    return token


def test_two_threads_never_hold_one_day_at_once(db, settings):
    from ops.clickhouse.client import connect

    inside, overlaps, turns = [0], [], []
    guard = threading.Lock()

    def worker(name):
        conn = connect(settings, database=db.name)
        try:
            for _ in range(6):
                c, _ = claim(conn, timeout=60.0, poll=0.01)
                with c:
                    with guard:
                        inside[0] += 1
                        if inside[0] > 1:
                            overlaps.append(name)
                    turns.append(name)
                    time.sleep(0.02)
                    with guard:
                        inside[0] -= 1
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert overlaps == [] and sorted(turns) == ["a"] * 6 + ["b"] * 6
    c, _ = claim(db)
    assert c.holder() is None  # every claim was ended
    left = db.rows("SELECT name FROM system.tables WHERE database = currentDatabase() AND name LIKE '%\\_end\\_%'")
    assert left == []


def test_a_live_claim_is_waited_for_and_names_its_holder(db):
    first, _ = claim(db)
    first.acquire()
    second, messages = claim(db, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(LockTimeout) as err:
        second.acquire()
    assert time.monotonic() - started >= 0.5
    assert f"pid {Holder.me().pid}" in err.value.line() and "after 0.5s" in err.value.line()
    assert messages and messages[0].startswith(f"waiting for events for {DAY}: claimed by pid")
    first.release()
    with second:
        assert second.holder()["token"] == second.token and second.waited and not first.waited
    other, _ = claim(db, key="events/2026-01-03")  # another day is another claim
    with other:
        assert other.held


def test_a_dead_processs_claim_is_taken_over_at_once(db):
    done = subprocess.run(["sleep", "0"])  # a real process, now gone
    assert done.returncode == 0
    dead = subprocess.Popen(["true"])
    dead.wait()
    holder = {**Holder.me().as_dict(), "pid": dead.pid, "create_time": None, "since": "2026-01-01 00:00:00 UTC"}
    old = forge(db, "events/2026-01-02", holder)
    c, messages = claim(db, timeout=5.0)
    started = time.monotonic()
    with c:
        assert time.monotonic() - started < 3
        assert c.holder()["token"] == c.token != old
    assert any(m.startswith("taking over the claim of pid") and "no longer running" in m for m in messages)


def test_another_hosts_claim_is_taken_over_only_when_its_heartbeat_is_stale(db):
    elsewhere = {**Holder.me().as_dict(), "host": "other-host.example", "pid": 4242}
    forge(db, "events/2026-01-02", elsewhere, beat_seconds_ago=1)
    waiting, _ = claim(db, timeout=0.3, stale_after=60)
    with pytest.raises(LockTimeout) as err:
        waiting.acquire()
    assert "other-host.example" in err.value.line()

    forge(db, "events/2026-01-05", elsewhere, beat_seconds_ago=300)
    stale, messages = claim(db, key="events/2026-01-05", timeout=5.0, stale_after=60)
    with stale:
        assert stale.holder()["host"] == socket.gethostname()
    assert any("no heartbeat for 300s" in m for m in messages)


def test_a_holder_taken_over_cannot_drop_its_successors_claim(db):
    first, _ = claim(db)
    first.acquire()
    taker, _ = claim(db)
    assert taker._end(first.token, why="taking over") is True  # as a taker that judged first dead does
    taker.acquire()
    first.release()  # first comes back and releases what it thinks it holds
    assert taker.holder()["token"] == taker.token
    taker.release()
    assert taker.holder() is None


def test_heartbeats_are_sent_from_a_connection_of_their_own(db, settings):
    from ops.clickhouse.client import connect

    c, _ = claim(db, connect=lambda: connect(settings, database=db.name), beat_every=0.1)
    with c:
        time.sleep(0.6)
        beats = db.scalar(f"SELECT count() FROM `{claims.BEATS}` WHERE token = {{t:String}}", {"t": c.token})
    assert beats >= 3 and c.lost == ""


def test_partition_lock_is_a_file_lock_on_the_embedded_engine_and_a_claim_on_a_server(db, settings):
    lock = claims.partition_lock(settings, db, "events", DAY, 5.0)
    assert isinstance(lock, FileLock) and lock.path.name == f"pipeline-events-{DAY}.lock"
    server = SimpleNamespace(target=SimpleNamespace(kind="server", url="http://h:8123/x"), name="x")
    made = claims.partition_lock(settings, server, "events", DAY, 5.0, connect=lambda: None)
    assert isinstance(made, claims.Claim) and made.key == f"events/{DAY}" and made.timeout == 5.0
