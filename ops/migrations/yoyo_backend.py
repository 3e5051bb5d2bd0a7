"""A yoyo-migrations backend for ClickHouse, over ``clickhouse_connect.dbapi``, and the migration lock.

yoyo keeps what it is good at: reading migration directories, ``-- depends:``, rollback files, ordering
(``to_apply`` / ``to_rollback``, and :func:`in_order` for chops' own migrator), marking and unmarking. This backend
overrides only ClickHouse's gaps, one comment each, and stores yoyo's bookkeeping in chops' append-only journal
table, ``_chops_migration_log`` (``ops.migrations.journal``: explicit engine, microsecond UTC timestamps), where the
migrator writes its per-statement events too. What yoyo calls applied is what the journal's one fold says
(``ops.migrations.journal.fold``), not a second definition in SQL.

It runs on the connection chops already has (``ops.clickhouse.connect``): the embedded engine and servers alike.
Plain yoyo works on it too::

    backend = ClickHouseBackend(connect(settings))
    with backend.lock():
        backend.apply_migrations(backend.to_apply(read_migrations("migrations")))

The lock is a table, ``_chops_migration_lock``, whose COMMENT is its holder's :class:`~ops.core.process.Holder`
record (JSON with host, pid, command, since, …).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from datetime import datetime
from typing import Iterable, Mapping

from yoyo.backends.base import DatabaseBackend
from yoyo.migrations import get_migration_hash
from yoyo.topologicalsort import CycleError, topological_sort
from yoyo.utils import change_param_style

from ops.clickhouse.client import sql_string
from ops.core.errors import BadInput, LockTimeout
from ops.core.output import info
from ops.core.process import Holder
from ops.core.timefmt import stamp_micro
from ops.migrations.journal import (LOG_TABLE, PendingEvents, completed_applied, evolve_sql, fold, log_table_sql,
                                    read_events)

__all__ = ["LOCK_TABLE", "LOG_TABLE", "ClickHouseBackend", "describe", "in_order"]

LOCK_TABLE = "_chops_migration_lock"
VERSION_TABLE = "_chops_migration_version"
SCHEMA_VERSION = 1


def in_order(ids: Iterable[str], depends: Mapping[str, Iterable[str]]) -> list[str]:
    """yoyo's order (the topological sort its ``to_apply`` and ``to_rollback`` use): ``ids`` as given (file
    order), each after the ones among them it depends on. A cycle is bad input."""
    ids = list(ids)
    among = set(ids)
    try:
        return list(topological_sort(ids, {i: set(depends.get(i, ())) & among for i in ids}))
    except CycleError as exc:
        raise BadInput(f"dependency cycle among migrations: {', '.join(exc.args[1])}") from None


def ordered_files(files: list) -> list:
    """Migration files in yoyo's order: file order, each after the ones among them it depends on."""
    by_id = {f.id: f for f in files}
    return [by_id[mid] for mid in in_order([f.id for f in files], {f.id: f.depends for f in files})]


class ClickHouseBackend(DatabaseBackend):
    driver_module = "clickhouse_connect.dbapi"
    migration_table = LOG_TABLE
    log_table = LOG_TABLE
    lock_table = LOCK_TABLE
    version_table = VERSION_TABLE

    # ClickHouse has no information_schema.tables scoped to the connection's database.
    list_tables_sql = "SELECT name FROM system.tables WHERE database = currentDatabase()"
    # ClickHouse has no mutable bookkeeping row to insert, update or delete: every yoyo write is an event (and
    # what is applied is read by get_applied_migration_hashes, from the journal's fold, not by SQL of its own).
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
        # A journal an older chops made lacks the columns added since: add them (old events read as "").
        present = {r["name"] for r in self.db.rows(
            "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {t:String}",
            {"t": LOG_TABLE})}
        if (alter := evolve_sql(self.cluster, present)) is not None:
            self.db.command(alter)
        self._internal_schema_updated = True

    def journal_exists(self) -> bool:
        """Whether the journal table is there (known without a query once this backend has created it)."""
        return self._internal_schema_updated or self.db.has_table(LOG_TABLE)

    def applied_ids(self) -> list[str]:
        """The migrations whose latest completed operation in the journal applied or marked them, oldest first:
        the journal's fold (``ops.migrations.journal``) over the table's events and a killed run's events still in
        its write-ahead file, as chops' migrator reads them."""
        if not self.journal_exists():
            return []  # reading must not create bookkeeping tables (yoyo's version does): a dry run changes nothing
        return completed_applied(fold(read_events(self.db, PendingEvents(self.db).leftover())))

    def get_applied_migration_hashes(self):
        # One truth: yoyo's applied list is the journal's fold, not an SQL query of its own.
        return [get_migration_hash(mid) for mid in self.applied_ids()]

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
        # datetimes are bound as text (see ops.migrations.journal).
        if params:
            params = {k: (stamp_micro(v) if isinstance(v, datetime) else v) for k, v in params.items()}
        sql, queryparams = change_param_style(self.driver.paramstyle, sql, params)
        cursor = self.cursor()
        cursor.execute(sql, queryparams or None, pyformat_encoded=bool(queryparams))
        return cursor

    # --- the lock: yoyo's relies on a primary-key violation that ClickHouse never raises -------------------------

    def holder(self) -> dict | None:
        """Who holds the migration lock (a :class:`~ops.core.process.Holder` record: host, pid, command, since, …),
        or None."""
        lock = self.db.table(LOCK_TABLE)
        if lock is None:
            return None
        try:
            return json.loads(lock["comment"])
        except ValueError:
            return {"host": "?", "pid": 0, "command": "?", "since": "?"}

    @contextmanager
    def lock(self, timeout=None):
        # CREATE TABLE succeeds for exactly one caller (TABLE_ALREADY_EXISTS for the rest): a real mutex.
        if self._is_locked:
            yield
            return
        timeout = self.lock_timeout if timeout is None else timeout
        comment = sql_string(json.dumps(Holder.me().as_dict()))
        on_cluster = f" ON CLUSTER `{self.cluster}`" if self.cluster else ""
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                self.db.command(f"CREATE TABLE {LOCK_TABLE}{on_cluster} (held UInt8) ENGINE = Memory "
                                f"COMMENT {comment}")
                break
            except Exception as exc:
                if "already exists" not in str(exc).lower() and "TABLE_ALREADY_EXISTS" not in str(exc):
                    raise
            holder = self.holder()
            if (record := Holder.from_dict(holder)) is not None and record.gone():
                # Its holder is provably gone (this host, pid dead or reused); a migration it left half done
                # is marked dirty in the journal, so breaking the lock cannot let work be lost or repeated.
                info(f"breaking the stale migration lock of {describe(holder)}: that process is no longer running")
                self.break_lock()
                continue
            if time.monotonic() >= deadline:
                raise LockTimeout(f"the migration lock is still held by {describe(holder)} after {timeout:g}s",
                                  hint="if that process is gone, run: inv db.break-lock")
            if not told:
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
    """A lock holder (a :class:`~ops.core.process.Holder` record) in words:
    ``pid 12 (inv db.migrate) on host since …``."""
    record = Holder.from_dict(holder)
    return record.describe() if record else "another process"
