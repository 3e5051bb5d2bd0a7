"""A yoyo-migrations backend for ClickHouse, over ``clickhouse_connect.dbapi``.

yoyo keeps what it is good at: reading migration directories, ``-- depends:``, rollback files, ordering
(``to_apply`` / ``to_rollback``), marking and unmarking. This backend overrides only ClickHouse's gaps, one
comment each, and stores yoyo's bookkeeping in one append-only journal table, ``_chops_migration_log``, with an
explicit engine and microsecond UTC timestamps. chops' own migrator (``ops.migrations.migrator``) writes its per-statement
events into the same table, so "applied", "dirty" and "drifted" are all read from one place.

It runs on the connection chops already has (``ops.clickhouse.connect``): the embedded engine and servers alike.
Plain yoyo works on it too::

    backend = ClickHouseBackend(connect(settings))
    with backend.lock():
        backend.apply_migrations(backend.to_apply(read_migrations("migrations")))
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from datetime import datetime, timezone

from yoyo.backends.base import DatabaseBackend

from ops.core.errors import LockTimeout

LOG_TABLE = "_chops_migration_log"
LOCK_TABLE = "_chops_migration_lock"
VERSION_TABLE = "_chops_migration_version"
SCHEMA_VERSION = 1


_last_stamp: datetime | None = None


def utc_now_text() -> str:
    """Now, as text DateTime64(6, 'UTC') parses exactly, strictly increasing within this process, so journal
    events written in one INSERT keep their order. (clickhouse-connect's binding of a datetime drops the
    microseconds, hence text.)"""
    global _last_stamp
    from datetime import timedelta

    now = datetime.now(timezone.utc)
    if _last_stamp is not None and now <= _last_stamp:
        now = _last_stamp + timedelta(microseconds=1)
    _last_stamp = now
    return now.strftime("%Y-%m-%d %H:%M:%S.%f")


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
        "created_at_utc DateTime64(6, 'UTC')"
        f") ENGINE = {engine} ORDER BY (migration_id, created_at_utc, statement)"
        # small parts in one file each: an append of a few events costs half as much (measured on chDB)
        " SETTINGS min_bytes_for_full_part_storage = 10485760"
    )


# Hashes of the migrations whose latest completed operation applied (or marked) them, oldest first.
APPLIED_SQL = (
    f"SELECT migration_hash FROM (SELECT migration_hash, argMax(operation, (created_at_utc, statement)) AS op, "
    f"max(created_at_utc) AS at FROM {LOG_TABLE} WHERE event = 'done' GROUP BY migration_hash) "
    "WHERE op IN ('apply', 'mark') ORDER BY at"
)


class ClickHouseBackend(DatabaseBackend):
    driver_module = "clickhouse_connect.dbapi"
    migration_table = LOG_TABLE
    log_table = LOG_TABLE
    lock_table = LOCK_TABLE
    version_table = VERSION_TABLE

    # ClickHouse has no information_schema.tables scoped to the connection's database.
    list_tables_sql = "SELECT name FROM system.tables WHERE database = currentDatabase()"
    # ClickHouse has no mutable bookkeeping row to insert, update or delete: every yoyo write is an event.
    applied_migrations_sql = APPLIED_SQL
    mark_migration_sql = (
        f"INSERT INTO {LOG_TABLE} (id, attempt_id, migration_id, migration_hash, operation, event, "
        "username, hostname, pid, command, created_at_utc) VALUES (generateUUIDv4(), '', :migration_id, "
        ":migration_hash, 'mark', 'done', currentUser(), hostName(), 0, 'yoyo', :when)"
    )
    unmark_migration_sql = (
        f"INSERT INTO {LOG_TABLE} (id, attempt_id, migration_id, migration_hash, operation, event, "
        "username, hostname, pid, command, created_at_utc) SELECT generateUUIDv4(), '', any(migration_id), "
        ":migration_hash, 'unmark', 'done', currentUser(), hostName(), 0, 'yoyo', now64(6) "
        f"FROM {LOG_TABLE} WHERE migration_hash = :migration_hash"
    )
    log_migration_sql = (
        f"INSERT INTO {LOG_TABLE} (id, attempt_id, migration_id, migration_hash, operation, event, "
        "username, hostname, pid, command, created_at_utc) VALUES (:id, '', :migration_id, :migration_hash, "
        ":operation, 'log', :username, :hostname, 0, 'yoyo', :created_at_utc)"
    )

    def __init__(self, db, cluster: str | None = None, lock_timeout: float = 60.0):
        # yoyo's constructor parses a URI and opens its own connection; this one reuses chops' connection
        # (one embedded engine per process) and never caches per-URI state.
        self.db = db
        self.uri = db.target.url
        self.cluster = cluster if db.target.kind == "server" else None
        self.lock_timeout = lock_timeout
        self.DatabaseError = self.driver.DatabaseError
        self._connection = self.connect(db)
        self.init_connection(self._connection)
        # ClickHouse DDL is never transactional (yoyo's probe would create and drop a table to find out).
        self.has_transactional_ddl = False
        self._in_transaction = False
        self._is_locked = False
        self._internal_schema_updated = False

    def connect(self, db):
        # The DB-API connection wraps the client chops already opened instead of creating another.
        from clickhouse_connect.dbapi.connection import Connection

        conn = Connection.__new__(Connection)
        conn.client = db.client
        conn.timezone = None
        return conn

    def copy(self):
        # yoyo opens a connection per migration (~32 ms each on chDB); a view on this one is enough.
        return _SharedView(self)

    def init_database(self):
        self.ensure_internal_schema_updated()

    def ensure_internal_schema_updated(self):
        # yoyo's internal tables have no ENGINE and second-precision timestamps: ours are explicit.
        if self._internal_schema_updated:
            return
        replicated = bool(self.cluster)
        self.db.command(log_table_sql(self.cluster, replicated))
        self._internal_schema_updated = True

    def journal_exists(self) -> bool:
        return bool(self.db.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() "
                                   "AND name = {t:String}", {"t": LOG_TABLE}))

    def get_applied_migration_hashes(self):
        # Reading must not create bookkeeping tables (yoyo's version does): a dry run changes nothing.
        if not self._internal_schema_updated and not self.journal_exists():
            return []
        return [row[0] for row in self.execute(self.format_sql(self.applied_migrations_sql)).fetchall()]

    def begin(self):
        # ClickHouse has no transactions; a literal BEGIN is a syntax error.
        self._in_transaction = True

    def commit(self):
        # ClickHouse has no transactions: every statement is committed as it runs.
        self._in_transaction = False

    def rollback(self):
        # ClickHouse has no transactions: nothing to roll back.
        self._in_transaction = False

    def savepoint(self, id):
        # ClickHouse has no savepoints.
        pass

    def savepoint_release(self, id):
        # ClickHouse has no savepoints.
        pass

    def savepoint_rollback(self, id):
        # ClickHouse has no savepoints.
        pass

    @contextmanager
    def disable_transactions(self):
        # Nothing to disable: there are no transactions.
        yield

    def execute(self, sql, params=None):
        # Without parameters clickhouse-connect rewrites %% to %, which would change a migration's literals;
        # datetimes are bound as text (see utc_now_text).
        from yoyo import utils

        if params:
            params = {k: (v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v)
                      for k, v in params.items()}
        sql, queryparams = utils.change_param_style(self.driver.paramstyle, sql, params)
        cursor = self.cursor()
        cursor.execute(sql, queryparams or None, pyformat_encoded=bool(queryparams))
        return cursor

    # --- the lock: yoyo's relies on a primary-key violation that ClickHouse never raises -------------------------

    def holder(self) -> dict | None:
        """Who holds the migration lock (host, pid, command, since), or None."""
        comment = self.db.scalar(
            "SELECT comment FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
            {"t": LOCK_TABLE},
        )
        if comment is None:
            return None
        try:
            return json.loads(comment)
        except ValueError:
            return {"host": "?", "pid": 0, "command": "?", "since": "?"}

    @contextmanager
    def lock(self, timeout=None):
        # CREATE TABLE succeeds for exactly one caller (TABLE_ALREADY_EXISTS for the rest): a real mutex.
        if self._is_locked:
            yield
            return
        from ops.core.process import command_line

        timeout = self.lock_timeout if timeout is None else timeout
        me = {"host": socket.gethostname(), "pid": os.getpid(), "command": command_line(),
              "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}
        comment = json.dumps(me).replace("\\", "\\\\").replace("'", "\\'")
        on_cluster = f" ON CLUSTER `{self.cluster}`" if self.cluster else ""
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                self.db.command(f"CREATE TABLE {LOCK_TABLE}{on_cluster} (held UInt8) ENGINE = Memory "
                                f"COMMENT '{comment}'")
                break
            except Exception as exc:
                if "already exists" not in str(exc).lower() and "TABLE_ALREADY_EXISTS" not in str(exc):
                    raise
            holder = self.holder()
            if holder and is_stale(holder):
                # Its holder is provably gone (this host, pid dead or reused); a migration it left half done
                # is marked dirty in the journal, so breaking the lock cannot let work be lost or repeated.
                from ops.core.output import info

                info(f"breaking the stale migration lock of {describe(holder)}: that process is no longer running")
                self.break_lock()
                continue
            if time.monotonic() >= deadline:
                raise LockTimeout(f"the migration lock is still held by {describe(holder)} after {timeout:g}s",
                                  hint="if that process is gone, run: inv db.break-lock")
            if not told:
                from ops.core.output import info

                info(f"waiting for the migration lock: held by {describe(holder)} (timeout {timeout:g}s)")
                told = True
            time.sleep(0.2)
        self._is_locked = True
        try:
            yield
        finally:
            self._is_locked = False
            self.break_lock()

    def break_lock(self):
        on_cluster = f" ON CLUSTER `{self.cluster}`" if self.cluster else ""
        self.db.command(f"DROP TABLE IF EXISTS {LOCK_TABLE}{on_cluster} SYNC")


class _SharedView:
    """What ``copy()`` returns: the same backend, used as a context manager that does not close it."""

    def __init__(self, backend):
        self._backend = backend

    def __enter__(self):
        return self._backend

    def __exit__(self, *exc):
        return False

    def __getattr__(self, name):
        return getattr(self._backend, name)


def describe(holder: dict | None) -> str:
    if not holder:
        return "another process"
    return f"pid {holder.get('pid')} ({holder.get('command')}) on {holder.get('host')} since {holder.get('since')}"


def is_stale(holder: dict) -> bool:
    """A holder on this host whose process is gone, or whose pid now belongs to a process started later."""
    from ops.core.process import Holder

    record = Holder.from_dict(holder)
    return record is not None and record.gone()


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
        return str(self.db.scalar("SELECT toString(uuid) FROM system.tables WHERE database = currentDatabase() "
                                  "AND name = {t:String}", {"t": LOG_TABLE}) or "")

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
