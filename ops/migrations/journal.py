"""The migration journal: its table, its write-ahead file, and the one fold that decides every migration's state.

ClickHouse DDL is not transactional, so an attempt is journaled statement by statement in ``_chops_migration_log``:
``begin``, one ``statement`` event after each statement that ran, then ``done`` (or ``failed``). yoyo's own
bookkeeping (``mark``/``unmark`` and its ``log`` lines, see ``ops.migrations.yoyo_backend``) is written into the
same table. :func:`fold` reads those events in order and is the only place chops decides that a migration is:

* ``applied``: its latest completed operation applied or marked it, and the file's checksum is unchanged;
* ``drifted``: applied, but the file on disk is not what was applied;
* ``ahead``: applied, and this tree has no file of that id (the database is ahead of this release: a newer one
  applied it); a warning, not drift;
* ``dirty``: an attempt began and did not finish (a statement failed, or the process died);
* ``pending``: never applied, or rolled back.

The ``begin`` event of an apply (and the ``done`` of a mark) also stores the migration as it runs (``sql``) and its
rollback file as it would run then (``rollback_sql``, both rendered; ``ops.migrations.stored``), so a release
whose tree lacks the file can still undo it, applied or left dirty. A journal made before these two columns existed
gets them when a writer next takes the lock (:func:`evolve_sql`); its old events have neither, and readers take
every column there is (``SELECT *``).

On a server every event is inserted as it happens. On the embedded engine a run's events go through a write-ahead
file and reach the table in one INSERT at the end (:class:`PendingEvents`); a run killed mid-way leaves the file,
which readers merge (:func:`read_events`) and the next writer replays.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

from ops.core.process import Holder
from ops.core.timefmt import parse_micro, stamp, stamp_micro, utc_now

LOG_TABLE = "_chops_migration_log"

COLUMNS = ("id", "attempt_id", "migration_id", "migration_hash", "operation", "event", "statement",
           "statement_sha", "checksum", "error", "username", "hostname", "pid", "command", "created_at_utc",
           "sql", "rollback_sql")
ADDED_COLUMNS = ("sql", "rollback_sql")  # String columns added after the first journals were made

# every column there is (a journal made before ADDED_COLUMNS lacks them), the id as text, not the id's hash
_EVENTS_SQL = (f"SELECT * EXCEPT (migration_hash) REPLACE (toString(id) AS id) FROM {LOG_TABLE} "
               "ORDER BY created_at_utc, statement")


def log_table_sql(cluster: str | None, replicated: bool) -> str:
    on_cluster = f" ON CLUSTER `{cluster}`" if cluster else ""
    engine = ("ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')"
              if replicated else "MergeTree")
    return (
        f"CREATE TABLE IF NOT EXISTS {LOG_TABLE}{on_cluster} ("
        "id UUID, attempt_id String, migration_id String, migration_hash String, "
        "operation LowCardinality(String), event LowCardinality(String), "
        "statement UInt32, statement_sha String, checksum String, error String, "
        "username String, hostname String, pid UInt32, command String, "
        "created_at_utc DateTime64(6, 'UTC'), sql String, rollback_sql String"
        f") ENGINE = {engine} ORDER BY (migration_id, created_at_utc, statement)"
        # small parts in one file each: an append of a few events costs half as much (measured on chDB)
        " SETTINGS min_bytes_for_full_part_storage = 10485760"
    )


def evolve_sql(cluster: str | None, present: set[str]) -> str | None:
    """The ALTER that adds the columns a journal made by an older chops lacks (``present``: its columns), or None."""
    missing = [c for c in ADDED_COLUMNS if c not in present]
    if not missing:
        return None
    on_cluster = f" ON CLUSTER `{cluster}`" if cluster else ""
    return (f"ALTER TABLE {LOG_TABLE}{on_cluster} "
            + ", ".join(f"ADD COLUMN IF NOT EXISTS {c} String" for c in missing))


# --- the fold -------------------------------------------------------------------------------------------------------

@dataclass
class State:
    """What the journal says about one migration."""

    id: str
    state: str = "pending"  # pending | applied | drifted | ahead | dirty
    applied_at: str | None = None
    applied_by: str | None = None
    checksum: str | None = None
    # the attempt in progress (dirty): its operation, statements done {index: sha}, and what failed
    operation: str | None = None
    attempt_id: str | None = None
    done: dict[int, str] = field(default_factory=dict)
    failed_statement: int | None = None
    error: str | None = None
    # when the completed operation that applied it finished (None: its latest completed one did not apply it)
    applied_time: datetime | None = None
    # the migration and its rollback as stored by the apply that began it (or the mark that recorded it), rendered
    # as they ran ("": not stored, ops.migrations.stored)
    sql: str = ""
    rollback_sql: str = ""

    def take(self, e: Mapping[str, Any]) -> None:
        """Move on by one journal event (``log`` lines are yoyo's and change nothing)."""
        if e["event"] == "begin":
            if not (self.operation == e["operation"] and self.state == "dirty"):
                self.done = {}  # a new attempt; a resumed one keeps what ran before
            self.state, self.operation, self.attempt_id = "dirty", e["operation"], e["attempt_id"]
            self.failed_statement, self.error = None, None
            if e["operation"] == "apply":  # what it runs, stored as it begins: undoable even if it never ends
                self.sql, self.rollback_sql = e.get("sql") or "", e.get("rollback_sql") or ""
        elif e["event"] == "statement":
            self.done[int(e["statement"])] = e["statement_sha"]
        elif e["event"] == "failed":
            self.failed_statement, self.error = int(e["statement"]), e["error"]
        elif e["event"] == "done":
            if e["operation"] in ("apply", "mark"):
                self.state, self.checksum = "applied", e["checksum"] or None
                self.applied_at, self.applied_time = stamp(e["created_at_utc"]), e["created_at_utc"]
                self.applied_by = f"{e['username']}@{e['hostname']}"
                if e["operation"] == "mark":  # an apply stored them in its begin
                    self.sql, self.rollback_sql = e.get("sql") or "", e.get("rollback_sql") or ""
            else:
                self.state, self.checksum, self.applied_at, self.applied_by = "pending", None, None, None
                self.applied_time, self.sql, self.rollback_sql = None, "", ""
            self.operation, self.attempt_id, self.done = None, None, {}
            self.failed_statement, self.error = None, None


def fold(events: Iterable[Mapping[str, Any]], on_disk: Mapping[str, str] | None = None) -> dict[str, State]:
    """The state of every migration, from the journal's events in order: the one place chops decides applied,
    dirty, drifted and ahead. ``on_disk`` ({id: checksum} of the migration files, in file order) adds the migrations
    that never ran, tells drift (same id, different content) and ahead (applied, no file of that id), and leaves
    out what only the journal knows and is not applied (rolled back or unmarked: nothing to this tree); without it
    (yoyo's question: it knows no files) nothing is found drifted or ahead."""
    states: dict[str, State] = {mid: State(mid) for mid in on_disk or ()}
    for e in events:
        if e["event"] != "log":
            states.setdefault(e["migration_id"], State(e["migration_id"])).take(e)
    if on_disk is None:
        return states
    for st in states.values():
        if st.state == "applied" and st.id not in on_disk:
            st.state = "ahead"
        elif st.state == "applied" and st.checksum and st.checksum != on_disk[st.id]:
            st.state = "drifted"
    # one only the journal knows and that is not applied (rolled back, unmarked) is nothing to this tree
    return {mid: st for mid, st in states.items() if mid in on_disk or st.state != "pending"}


def completed_applied(states: Mapping[str, State]) -> list[str]:
    """The migrations whose latest completed operation applied or marked them, oldest first: what yoyo calls
    applied (a dirty attempt begun after it, or drift, does not change that)."""
    return [st.id for st in sorted((st for st in states.values() if st.applied_time is not None),
                                   key=lambda st: st.applied_time)]


# --- reading and writing events ---------------------------------------------------------------------------------------

def read_events(db, leftover: list[dict] | None = None) -> list[dict[str, Any]]:
    """The journal table's events in order, with ``leftover`` (events of the write-ahead file, see
    :meth:`PendingEvents.leftover`) merged in by id."""
    rows = db.rows(_EVENTS_SQL)
    if leftover:
        seen = {r["id"] for r in rows}
        rows += [{k: v for k, v in e.items() if k != "migration_hash"}
                 | {"created_at_utc": parse_micro(e["created_at_utc"])}
                 for e in leftover if e["id"] not in seen]
        rows.sort(key=lambda r: (r["created_at_utc"], r["statement"]))
    return rows


@functools.lru_cache(maxsize=1)
def _me() -> Holder:
    """This process, as the journal records it: user, host, pid, command line."""
    return Holder.me()


_last_time: datetime | None = None


def _event_time() -> str:
    """Now, as text DateTime64(6, 'UTC') parses exactly, strictly increasing within this process, so journal
    events written in one INSERT keep their order. (clickhouse-connect's binding of a datetime drops the
    microseconds, hence text.)"""
    global _last_time
    now = utc_now()
    if _last_time is not None and now <= _last_time:
        now = _last_time + timedelta(microseconds=1)
    _last_time = now
    return stamp_micro(now)


def event_row(migration_id: str, checksum: str, operation: str, event: str, attempt: str, statement: int = 0,
              statement_sha: str = "", error: str = "", sql: str = "", rollback_sql: str = "") -> dict[str, Any]:
    """One journal event of this process, as the row :meth:`PendingEvents.write` takes. ``error`` is ClickHouse's
    message, kept whole (the one-line error shows a short form; ``db.history`` shows this). ``sql`` and
    ``rollback_sql``: what the ``begin`` of an apply and the ``done`` of a mark store (``ops.migrations.stored``)."""
    me = _me()
    values = [str(uuid.uuid4()), attempt, migration_id, hashlib.sha256(migration_id.encode()).hexdigest(),
              operation, event, statement, statement_sha, checksum, error, me.user, me.host, me.pid,
              me.command, _event_time(), sql, rollback_sql]
    return dict(zip(COLUMNS, values))


class PendingEvents:
    """Where a run's journal events go: straight into the journal, or (embedded engine) through a write-ahead file.

    An INSERT into the journal costs about 5 ms on chDB (a new part), twice a small CREATE TABLE, and each
    migration needs its ``begin`` on record before its first statement runs. On the embedded engine only one
    process can have the data open, so while a writer holds the migration lock its events are appended to a file
    inside the engine's data directory and flushed to the OS before the statement they precede (as durable as a
    MergeTree part, which ClickHouse does not fsync either); they reach the journal in one INSERT when the run
    ends. A run killed with -9 leaves the file behind: readers merge it into what they read, and the next writer
    replays it into the journal under the lock, by event id, so an interrupted replay is repeated safely. The file
    names the journal table's UUID, so a file left beside a database that was since recreated is discarded.
    On a server several hosts may apply migrations, so every event is inserted as it happens.
    """

    def __init__(self, db):
        self.db = db
        self.path = (db.target.path / "chops" / f"migration-journal.{db.name}.wal"
                     if db.target.kind == "embedded" and db.target.path else None)
        self._file = None
        self._rows: list[dict] = []

    def _journal_uuid(self) -> str:
        return str((self.db.table(LOG_TABLE) or {}).get("uuid") or "")

    def leftover(self) -> list[dict]:
        """Events a killed writer left in the file (none when the file belongs to another journal table)."""
        if self.path is None or not self.path.exists() or self._file is not None:
            return list(self._rows)
        lines = self.path.read_text().split("\n")
        try:
            header = json.loads(lines[0])
        except ValueError:
            return []
        if header.get("journal") != self._journal_uuid():
            return []
        rows = []
        for line in lines[1:]:
            try:
                rows.append(json.loads(line))
            except ValueError:
                break  # the last line may be cut short by a kill: its statement never started
        return rows

    def replay(self) -> int:
        """Insert what a killed writer left in the file and remove it; returns how many events were missing."""
        if self.path is None or not self.path.exists():
            return 0
        rows = self.leftover()
        if rows:
            present = {r["id"] for r in self.db.rows(
                # (an Array(UUID) parameter binds as an empty array here: compare as text)
                f"SELECT toString(id) AS id FROM {LOG_TABLE} WHERE has({{ids:Array(String)}}, toString(id))",
                {"ids": [r["id"] for r in rows]})}
            rows = [r for r in rows if r["id"] not in present]
            self.db.insert_rows(LOG_TABLE, rows)
        self.path.unlink()
        return len(rows)

    def start(self) -> None:
        """Under the migration lock: replay leftovers, then hold this run's events in the file."""
        self.replay()
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w")
        self._file.write(json.dumps({"journal": self._journal_uuid(), "pid": os.getpid()}) + "\n")
        self._file.flush()
        self._rows = []

    def write(self, rows: list[dict]) -> None:
        """Record journal events: in one INSERT (atomic: a MergeTree part), or appended to the run's write-ahead
        file. Values travel as JSONEachRow data, never spliced into SQL."""
        if not rows:
            return
        if self._file is None:
            self.db.insert_rows(LOG_TABLE, rows)
            return
        self._file.write("".join(json.dumps(r, default=str) + "\n" for r in rows))
        self._file.flush()  # before the statement it records runs
        self._rows.extend(rows)

    def finish(self) -> None:
        """Move this run's events into the journal in one INSERT and remove the file."""
        if self._file is None:
            return
        self._file.close()
        self._file = None
        rows, self._rows = self._rows, []
        self.db.insert_rows(LOG_TABLE, rows)
        self.path.unlink()

    def abandon(self) -> None:
        """Stop writing without flushing (the journal is unreachable): the next writer replays the file."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self._rows = []
