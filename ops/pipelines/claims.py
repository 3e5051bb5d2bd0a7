"""A pipeline day's lock: a file lock on the embedded engine, an atomic claim in ClickHouse on a server.

On the embedded engine every run is on this host, so the per-partition lock is a :class:`~ops.core.locks.FileLock`
under ``var/locks/``. On a server several hosts may build the same pipelines, and a local file cannot keep two of
them off one day: the lock becomes a :class:`Claim` in the database, which every host sees. :func:`partition_lock`
chooses; both have the same ``acquire()`` / ``release()`` / context-manager interface.

How a claim works (ClickHouse has no row locks and no transactions; like the migration lock, it relies on the one
thing a server does atomically, creating a table: ``CREATE TABLE`` of a name succeeds for exactly one caller and
fails with TABLE_ALREADY_EXISTS for every other):

* **claim**: ``CREATE TABLE _chops_claim_<hash of pipeline/day> … ENGINE = Memory COMMENT '<holder>'``, the comment a
  :class:`~ops.core.process.Holder` record (host, pid, command, since) plus a fresh random ``token``. The one caller
  whose CREATE succeeds holds the day; the others wait, polling with backoff until their timeout.
* **liveness**: the holder appends a heartbeat row (its token, the server's ``now64()``) to ``_chops_claim_beats``
  every :data:`BEAT_EVERY` seconds from a thread of its own. A waiting run judges the holder with the one liveness
  test (``ops.core.process``): a holder on this host whose process is gone is dead at once; a holder on another
  host (which cannot be looked at from here) is dead when its newest heartbeat, by the server's clock (no clock
  skew between hosts), is older than ``stale_after`` seconds.
* **ending a claim** (the holder's release, or a takeover of a dead holder's): whoever ends the claim of token T
  must first create ``_chops_claim_<hash>_end_<T>`` (again exactly one caller succeeds), then re-read the claim's
  comment, and DROP the claim table only if it still carries T, then drop the end table.

Why no two holders can exist at once: the claim's name holds at most one table at a time (the server's guarantee).
A claim table of token T disappears only through a DROP by the one caller that created ``…_end_<T>`` and, holding
that, read T in the comment; while T's table exists no other table can have its name, and nobody else can drop it,
so that DROP removes exactly T's table, never a successor's. A late caller that creates ``…_end_<T>`` after T's
table is gone reads another token (tokens are never reused) and drops nothing. So a claim is held by exactly the
caller whose CREATE made the table under the name, until that table's one sanctioned DROP.

What it cannot do: a holder on another host that stops heartbeating for ``stale_after`` seconds while still working
(a frozen VM, a network partition) is taken over, like any lease; its next heartbeat notices and says so in its log
(the swap of a day stays atomic, so the day holds one run's data, whichever swapped last). A process that dies in
the few milliseconds between creating an end table and dropping it leaves that end table; it is broken after twice
``stale_after``. The claim lives on the server the URL names: hosts that build the same pipelines must use the same
server (on a cluster, the same node).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import uuid
from datetime import date
from typing import Any, Callable

from ops.clickhouse.client import connect as open_database, sql_string
from ops.core.errors import LockTimeout, WorkFailed
from ops.core.locks import FileLock
from ops.core.process import Holder, Liveness

PREFIX = "_chops_claim_"
BEATS = "_chops_claim_beats"
BEAT_EVERY = 15.0  # seconds between a holder's heartbeats
STALE_AFTER = 120.0  # seconds without a heartbeat after which another host's claim is dead
_MAX_POLL = 2.0


def partition_lock(settings, db, pipeline: str, day: date, timeout: float,
                   notify: Callable[[str], None] | None = None, connect: Callable[[], Any] | None = None):
    """The lock of ``pipeline`` for ``day``: a FileLock on the embedded engine, a :class:`Claim` on a server.
    ``connect`` opens the heartbeat thread's own connection (default: another ``connect(settings)``)."""
    what = f"{pipeline} for {day}"
    if db.target.kind == "embedded":
        return FileLock(settings.path("paths.var") / "locks" / f"pipeline-{pipeline}-{day}.lock", what, timeout,
                        notify=notify)
    if connect is None:
        def connect():
            return open_database(settings, database=db.name)
    return Claim(db, f"{pipeline}/{day}", what, timeout, notify=notify, connect=connect)


def _already_exists(exc: BaseException) -> bool:
    text = str(exc.__cause__ or exc) + str(exc)
    return "TABLE_ALREADY_EXISTS" in text or "already exists" in text.lower()


class Claim:
    """An exclusive claim of ``key`` in the database ``db`` (see the module's doc); waits up to ``timeout`` seconds.

    ``connect`` opens a connection for the heartbeat thread (a server's HTTP session runs one query at a time);
    without it, no heartbeats are sent, which suits holders that another host never needs to judge (tests)."""

    def __init__(self, db, key: str, what: str, timeout: float, notify: Callable[[str], None] | None = None,
                 connect: Callable[[], Any] | None = None, stale_after: float = STALE_AFTER,
                 beat_every: float = BEAT_EVERY, poll: float = 0.1):
        self.db = db
        self.key = key
        self.what = what
        self.timeout = timeout
        self.notify = notify or (lambda message: None)
        self.connect = connect
        self.stale_after = stale_after
        self.beat_every = beat_every
        self.poll = poll
        self.table = PREFIX + hashlib.sha256(key.encode()).hexdigest()[:20]
        self.token = ""
        self.lost = ""  # why the claim was found taken over while held, if it was
        self.waited = False  # whether acquire() found it claimed and waited (as FileLock.waited)
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return bool(self.token)

    # --- acquire / release -------------------------------------------------------------------------------------------

    def acquire(self) -> "Claim":
        if self.token:
            return self
        _require_beats(self.db)
        deadline = time.monotonic() + self.timeout
        wait, told = self.poll, False
        while True:
            token = uuid.uuid4().hex
            if self._create(token):
                self.token = token
                self._beat(self.db)
                self._start_beating()
                return self
            holder = self.holder()
            if holder is not None and self._dead(holder):
                self._end(holder["token"], why=f"taking over the claim of {self._describe(holder)}: "
                                                f"{self._why_dead(holder)}")
                continue
            if time.monotonic() >= deadline:
                raise LockTimeout(f"{self.what} is still claimed by {self._describe(holder)} after {self.timeout:g}s",
                                  hint="wait for it to finish" + (f", or stop process {holder.get('pid')} on "
                                                                 f"{holder.get('host')}" if holder else ""))
            if not told:
                self.notify(f"waiting for {self.what}: claimed by {self._describe(holder)} (timeout "
                            f"{self.timeout:g}s)")
                told = self.waited = True
            time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
            wait = min(wait * 1.5, _MAX_POLL)

    def release(self) -> None:
        if not self.token:
            return
        token, self.token = self.token, ""
        self._stop.set()
        if self._beater is not None:
            self._beater.join(timeout=10)
            self._beater = None
        self._end(token, why="")

    def __enter__(self) -> "Claim":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    # --- the table ---------------------------------------------------------------------------------------------------

    def _create(self, token: str) -> bool:
        record = {**Holder.me().as_dict(), "key": self.key, "token": token}
        try:
            self.db.command(f"CREATE TABLE `{self.table}` (token String) ENGINE = Memory "
                            f"COMMENT {sql_string(json.dumps(record))}")
            return True
        except WorkFailed as exc:
            if _already_exists(exc):
                return False
            raise

    def _comment(self, table: str, db=None) -> tuple[dict | None, float]:
        """The record in ``table``'s comment (None: no such table, or not a record) and its age in seconds."""
        rows = (db or self.db).rows("SELECT comment, dateDiff('second', metadata_modification_time, now()) AS age "
                            "FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
                            {"t": table})
        if not rows:
            return None, 0.0
        try:
            record = json.loads(rows[0]["comment"] or "null")
        except ValueError:
            record = None
        return (record if isinstance(record, dict) else {"token": "", "pid": 0, "host": "?"}), float(rows[0]["age"])

    def holder(self) -> dict | None:
        """The record of whoever holds the claim now (host, pid, command, since, token), or None."""
        return self._comment(self.table)[0]

    def _end(self, token: str, why: str) -> bool:
        """End the claim of ``token`` if it still stands (see the module's doc); True when this call dropped it."""
        end = f"{self.table}_end_{token[:32]}"
        if not self._create_end(end):
            return False
        try:
            record, _ = self._comment(self.table)
            if record is None or record.get("token") != token:
                return False
            if why:
                self.notify(why)
            self.db.command(f"DROP TABLE IF EXISTS `{self.table}` SYNC")
            return True
        finally:
            self.db.command(f"DROP TABLE IF EXISTS `{end}` SYNC")

    def _create_end(self, end: str) -> bool:
        try:
            self.db.command(f"CREATE TABLE `{end}` (x UInt8) ENGINE = Memory "
                            f"COMMENT {sql_string(json.dumps(Holder.me().as_dict()))}")
            return True
        except WorkFailed as exc:
            if not _already_exists(exc):
                raise
        record, age = self._comment(end)
        ender = Holder.from_dict(record)
        if ender is not None and (ender.gone() or age > 2 * self.stale_after):
            # its creator died between creating it and dropping it: nobody else could ever end this claim
            self.db.command(f"DROP TABLE IF EXISTS `{end}` SYNC")
        return False

    # --- liveness ----------------------------------------------------------------------------------------------------

    def _dead(self, holder: dict) -> bool:
        return bool(self._why_dead(holder))

    def _why_dead(self, holder: dict) -> str:
        record = Holder.from_dict(holder)
        state = record.liveness() if record is not None else Liveness.UNKNOWN
        if state is Liveness.GONE:
            return "that process is no longer running"
        if state is Liveness.ALIVE:
            return ""
        age = self._silence(str(holder.get("token") or ""))
        if age is not None and age > self.stale_after:
            return f"no heartbeat for {age:.0f}s (more than {self.stale_after:g}s)"
        return ""

    def _silence(self, token: str) -> float | None:
        """Seconds since the newest heartbeat of ``token`` (by the server's clock), or since its claim was made when
        it has none yet; None when there is no such claim."""
        row = self.db.rows(f"SELECT dateDiff('millisecond', max(at), now64(6)) / 1000 AS age, count() AS n "
                           f"FROM `{BEATS}` WHERE token = {{t:String}}", {"t": token})[0]
        if int(row["n"]):
            return float(row["age"])
        record, age = self._comment(self.table)
        return age if record is not None and record.get("token") == token else None

    def _beat(self, db) -> None:
        db.command(f"INSERT INTO `{BEATS}` (token) VALUES ({sql_string(self.token)})")

    def _start_beating(self) -> None:
        if self.connect is None:
            return
        self._stop.clear()
        self._beater = threading.Thread(target=self._beat_loop, name=f"chops-claim-{self.key}", daemon=True)
        self._beater.start()

    def _beat_loop(self) -> None:
        """The heartbeat thread: a row every ``beat_every`` seconds on a connection of its own, until release."""
        token = self.token
        try:
            db = self.connect()
        except Exception:  # noqa: BLE001 - without heartbeats another host may take over after stale_after
            return
        try:
            while not self._stop.wait(self.beat_every):
                try:
                    db.command(f"INSERT INTO `{BEATS}` (token) VALUES ({sql_string(token)})")
                    record, _ = self._comment(self.table, db)
                    if record is None or record.get("token") != token:
                        self.lost = f"the claim of {self.what} was taken over by {self._describe(record)}"
                        self.notify(f"warning: {self.lost}")
                        return
                except Exception:  # noqa: BLE001 - a missed beat; the next one may pass
                    continue
        finally:
            db.close()

    @staticmethod
    def _describe(holder: dict | None) -> str:
        record = Holder.from_dict(holder)
        if record is None:
            return "another process"
        here = "" if record.host != socket.gethostname() else " (this host)"
        return record.describe() + here


_beats_ready: set[tuple[str, str]] = set()


def _require_beats(db) -> None:
    """The heartbeat table exists (made once per process and database; rows expire after a day)."""
    key = (db.target.url, db.name)
    if key in _beats_ready:
        return
    db.command(f"CREATE TABLE IF NOT EXISTS `{BEATS}` (token String, at DateTime64(6, 'UTC') DEFAULT now64(6)) "
               "ENGINE = MergeTree ORDER BY (token, at) TTL toDateTime(at) + INTERVAL 1 DAY")
    _beats_ready.add(key)
