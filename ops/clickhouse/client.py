"""The ClickHouse layer: the only place a clickhouse-connect client is created.

Two engines, one client library:

* **embedded** (default): a chDB engine on disk at ``<paths.var>/clickhouse``. A data path can be opened by one
  process at a time, and a process can hold one path at a time. chops therefore takes an OS file lock beside
  the data path (``clickhouse.lock``) and *waits* for it, saying once who holds it; past
  ``clickhouse.lock_timeout`` it fails naming the holder. Cron runs, backfills and CLI commands queue instead
  of crashing.
* **server**: ``http(s)://user:password@host:port/database``.

ClickHouse settings (``[clickhouse.settings]``, ``[clickhouse.merge_tree]``, ``[clickhouse.server_settings]`` and
the URL's parameters, gathered by :func:`ops.core.urls.target`):

* query settings are client settings of every client made here: sent with every statement, on either engine;
* the embedded engine's MergeTree and server settings are a ClickHouse configuration file written beside the data
  path (``<paths.var>/clickhouse.config.xml``) and passed as chDB's ``config-file`` start-up argument. Measured
  on chDB 4.4 (ClickHouse 26.9): a ``config-file`` with ``<merge_tree>`` sets ``system.merge_tree_settings`` and
  top-level elements set ``system.server_settings``; a server setting also works as a bare connection-string
  argument (``?background_pool_size=16``) but a MergeTree one is silently ignored there, as is any unknown name,
  and so is a config file that does not exist. So chops writes the file under the engine lock before the engine
  starts and, once started, checks that ClickHouse knows every name (an unknown MergeTree name would otherwise
  surface only at the next ``CREATE TABLE``; an unknown server name never);
* a server's MergeTree and server settings are its own configuration: a client cannot set them. chops says so,
  once per process, for each configured one whose value the server does not have.

``clickhouse_connect`` is imported lazily (it costs a quarter of a second), so ``inv --list`` stays fast.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from ops import ROOT
from ops.clickhouse.engine_config import (config_path, engine_config, known_settings, not_applied, setting_text,
                                          write_config)
from ops.core.errors import BadInput, ConfigError, DatabaseError, WorkFailed
from ops.core.locks import DISK_FULL, FREE_SPACE, FileLock
from ops.core.urls import Target, target, validate_identifier

# --- the process's embedded engine: one path per process ---------------------------------------------------------

# The embedded engine's spare memory is given back once the process holds this much more than after the last time
# (``Database.release_memory_if_grown``; ``clickhouse.memory_release_mb`` sets it): a 1M-row day of the example
# pipelines grows it by 100-180 MB per statement, a 200-row day by nothing measurable.
RELEASE_GROWTH = 32 << 20
RELEASE_FOUND_LITTLE = 8 << 20  # a purge that gives back less found what is held in use


class _Engine:
    """The one embedded data path this process holds: its lock and the clients opened on it."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.lock = None
        self.clients: list = []
        self.purge_works = True
        self.resident_after_release = 0  # this process's resident bytes after the last release (0: none yet)
        self.release_growth = RELEASE_GROWTH  # clickhouse.memory_release_mb, in bytes; 0 = never
        self.config: str | None = None  # the configuration file's text the engine starts with; None = no file

    def open(self, path: Path, timeout: float, config: str | None = None) -> Path:
        """Hold the engine at ``path``; returns its resolved path, which keys the lock and names it to chDB (the
        same database through a symlink is the same database: it waits for the lock instead of failing at once)."""
        real = path.resolve()
        if self.path == real:
            if config != self.config:
                raise WorkFailed(f"the embedded database {_short(path)} is already open in this process with other "
                                 "engine settings (clickhouse.merge_tree, clickhouse.server_settings)",
                                 hint="they apply when the engine starts: open it in a process of its own")
            return real
        self.close()
        _check_writable(path)
        lock = FileLock(real.parent / f"{real.name}.lock", f"the embedded database {_short(path)}", timeout)
        lock.acquire()
        self.path, self.lock, self.config = real, lock, config
        try:
            write_config(config_path(real), config)  # under the lock: no other chops process starts it now
        except OSError as exc:
            self.close()
            raise WorkFailed(f"cannot write {_short(config_path(real))}: {exc.strerror}", hint=FREE_SPACE) from None
        return real

    def options(self) -> dict[str, str] | None:
        """chDB's start-up arguments for the open path: the configuration file, when there is one."""
        return {"config-file": str(config_path(self.path))} if self.config is not None else None

    def close(self) -> None:
        for client in self.clients:
            try:
                client.close()
            except Exception:  # closing is best effort; the lock release below is what matters
                pass
        self.clients = []
        if self.lock is not None:
            self.lock.release()
        self.path, self.lock, self.config = None, None, None


_engine = _Engine()
atexit.register(_engine.close)


def resident_bytes() -> int:
    """This process's resident memory in bytes: ``/proc/self/statm`` on Linux, else the peak so far (``ru_maxrss``),
    which grows when the resident memory does."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def engine_waited() -> bool:
    """Whether this process waited for another one to let go of the embedded engine before it could open it."""
    return bool(_engine.lock is not None and _engine.lock.waited)


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _check_writable(path: Path) -> None:
    """The data path exists and this user can write there: BadInput (exit 2) when it cannot be, WorkFailed (exit 1)
    when the disk is full."""
    def refused(what: str, exc: OSError) -> Exception:
        if exc.errno in DISK_FULL:
            return WorkFailed(f"data path {_short(path)} {what}: {exc.strerror}", hint=FREE_SPACE)
        return BadInput(f"data path {_short(path)} {what}: {exc.strerror}")

    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise refused("cannot be created", exc) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise BadInput(f"data path {_short(path)} is not writable by this user")
    probe = path / f".chops-write-test.{os.getpid()}"  # two processes may probe at once (before the lock)
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        probe.unlink(missing_ok=True)
        raise refused("is not writable", exc) from None


# --- the embedded engine's own settings (ops/clickhouse/engine_config.py): checked once it started ---------------

def _check_engine_settings(client, tgt: Target) -> None:
    """After the engine started: every configured name is one ClickHouse knows. Reading a MergeTree setting fails
    for an unknown name or a bad value (measured), which would otherwise surface only at the next CREATE TABLE; an
    unknown server setting is ignored by ClickHouse without a word."""
    if tgt.merge_tree:
        try:
            known_settings(client, "merge_tree_settings", tgt.merge_tree)
        except Exception as exc:
            raise ConfigError(f"clickhouse.merge_tree: ClickHouse refused the MergeTree settings: {first_line(exc)}",
                              hint="check them with: inv config") from None
    if not tgt.server_settings:
        return
    try:
        known = known_settings(client, "server_settings", tgt.server_settings)
    except Exception as exc:
        raise _wrap(exc, "SELECT FROM system.server_settings") from exc
    unknown = sorted(set(tgt.server_settings) - set(known))
    if unknown:
        raise ConfigError(f"clickhouse.server_settings: ClickHouse has no server setting {', '.join(unknown)} "
                          "(see system.server_settings)", hint="check them with: inv config")


_warned: set[str] = set()


def _warn_server_engine_settings(client, tgt: Target) -> None:
    """On a server: say, once per process, which configured MergeTree/server settings it does not have."""
    for group, table, what in (("merge_tree", "merge_tree_settings", "<merge_tree>"),
                               ("server_settings", "server_settings", "the top level")):
        wanted = tgt.settings_group(group)
        if not wanted or group in _warned:
            continue
        _warned.add(group)
        try:
            missing = not_applied(wanted, known_settings(client, table, wanted))
        except Exception:  # an old server without system.server_settings, or no right to read it
            missing = {name: None for name in wanted}
        for name, has in missing.items():
            print(f"warning: clickhouse.{group}.{name} = {setting_text(wanted[name])} is not applied to the server "
                  f"at {tgt.url} ({'it has ' + has if has is not None else 'not readable there'}): a client cannot "
                  f"set it; put it in {what} of the server's configuration", file=sys.stderr, flush=True)


def close_engine() -> None:
    """Close every client of the embedded engine and release its lock (also done at exit)."""
    _engine.close()


# --- the Database handle ---------------------------------------------------------------------------------------------

def first_line(exc: Exception) -> str:
    """ClickHouse's message of an error, without its code prefix and stack trace, on one line, whole (the part
    that names the fix is often at the end: see :func:`brief` for a short form)."""
    text = str(exc).strip()
    m = re.search(r"Code: \d+\. DB::Exception: (.*?)(?: Stack trace:|$)", text, re.S)
    text = m.group(1) if m else text
    return " ".join(text.split())


# A sentence ends at . ! or ? followed by space and a capital, a quote or a bracket ("system.one" does not end one).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(`'\"])")
# Sentences of a ClickHouse message that say how to fix it (kept by brief() after the first one).
_FIX = re.compile(r"\bmaybe you meant\b|\bdid you mean\b|\bset\s+['`\"]?\w+\s*=|\bsettings?\s+['`\"]?[a-z]\w*_\w+"
                  r"|\bif you want\b|\byou can\b|\bconsider\b|\bexpected one of\b|\btry\b", re.I)
_CODE_NAME = re.compile(r"\s*\(([A-Z][A-Z0-9_]+)\)(?:\s*\(version [^)]*\))?\.?$")


def brief(message: str, limit: int = 300) -> str:
    """A ClickHouse message (as :func:`first_line` gives it) short enough for a one-line error: its first sentence,
    the sentences that say how to fix it (a setting to set, "Maybe you meant", "Expected one of"), and its error
    name; a sentence longer than ``limit`` is cut at a word, never inside one, and the cut says ``...``."""
    text = " ".join(message.split())
    code = _CODE_NAME.search(text)
    if code:
        text = text[: code.start()]
    sentences = _SENTENCE_END.split(text.strip()) if text.strip() else []
    shown = [_cut(s, limit) for i, s in enumerate(sentences) if i == 0 or _FIX.search(s)]
    return (" ".join(shown) + (f" ({code.group(1)})" if code else "")).strip()


def _cut(text: str, limit: int) -> str:
    """``text`` up to ``limit`` characters, ended at a word boundary with ``...`` when it was longer."""
    if len(text) <= limit:
        return text
    head = text[: limit + 1].rsplit(" ", 1)[0].rstrip(" ,;:")
    return f"{head} ..."


class Database:
    """A connection to one database: thin over a clickhouse-connect client, errors made readable."""

    def __init__(self, client, target: Target, created: bool = False):
        self.client = client
        self.target = target
        self.created = created

    @property
    def name(self) -> str:
        return self.target.database

    def command(self, sql: str, parameters: dict | None = None, settings: dict | None = None) -> Any:
        try:
            return self.client.command(sql, parameters=_used(sql, parameters), settings=settings)
        except Exception as exc:
            raise _wrap(exc, sql) from exc

    def query(self, sql: str, parameters: dict | None = None, settings: dict | None = None):
        """Run a SELECT; returns clickhouse-connect's QueryResult (``result_rows``, ``column_names``)."""
        try:
            return self.client.query(sql, parameters=_used(sql, parameters), settings=settings)
        except Exception as exc:
            raise _wrap(exc, sql) from exc

    def rows(self, sql: str, parameters: dict | None = None) -> list[dict[str, Any]]:
        result = self.query(sql, parameters)
        return [dict(zip(result.column_names, row)) for row in result.result_rows]

    def scalar(self, sql: str, parameters: dict | None = None) -> Any:
        result = self.query(sql, parameters)
        return result.result_rows[0][0] if result.result_rows else None

    def insert(self, table: str, rows: Sequence[Sequence[Any]], column_names: Iterable[str]) -> None:
        try:
            self.client.insert(table, rows, column_names=list(column_names))
        except Exception as exc:
            raise _wrap(exc, f"INSERT INTO {table}") from exc

    def insert_rows(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Insert dicts as one JSONEachRow block: one atomic INSERT, values sent as data rather than SQL."""
        import json

        if not rows:
            return
        payload = "\n".join(json.dumps(row, default=str) for row in rows).encode()
        try:
            self.client.raw_insert(table, list(rows[0]), payload, fmt="JSONEachRow")
        except Exception as exc:
            raise _wrap(exc, f"INSERT INTO {table}") from exc

    def load_file(self, table: str, path: Path, fmt: str, columns: Sequence[str] | None = None,
                  settings: dict[str, int] | None = None) -> None:
        """Have ClickHouse parse a file into ``table``. The embedded engine reads it from disk itself
        (``INSERT … FROM INFILE``: the bytes never pass through Python); a server gets the file's bytes over HTTP,
        and so does the engine for a path with a glob character in it, which ``FROM INFILE`` would expand."""
        if self.target.kind == "embedded" and not INFILE_GLOB.search(str(path)):
            self.command(infile_sql(table, path, fmt, columns, settings))
            return
        data = Path(path).read_bytes()
        try:
            self.client.raw_insert(table, list(columns) if columns else None, data, fmt=fmt, settings=settings)
        except Exception as exc:
            raise _wrap(exc, f"INSERT INTO {table}") from exc

    def release_memory(self) -> None:
        """Embedded engine: give the memory its allocator keeps for reuse back to the system (``SYSTEM JEMALLOC
        PURGE``, well under a millisecond). Without it a backfill's resident memory grows day after day: after two
        days of a million rows, 265 MB were held, 98 MB after a purge (measured). A server manages its own.

        What a purge leaves is what the engine uses, the mark :meth:`release_memory_if_grown` measures growth from:
        the lowest seen, unless this purge found little to give back (then what is held is in use, by a cache or a
        background merge, and the mark is here). So a purge that ran while a merge held 85 MB (measured, right after
        a million-row swap) does not let the next statement start 85 MB higher unnoticed."""
        if self.target.kind != "embedded" or not _engine.purge_works:
            return
        before = resident_bytes()
        try:
            self.client.command("SYSTEM JEMALLOC PURGE")
        except Exception:  # an engine built without jemalloc: nothing to give back
            _engine.purge_works = False
        after = resident_bytes()
        if not _engine.resident_after_release or before - after < RELEASE_FOUND_LITTLE:
            _engine.resident_after_release = after
        else:
            _engine.resident_after_release = min(_engine.resident_after_release, after)

    @property
    def releases_memory(self) -> bool:
        """Whether this connection gives the engine's spare memory back (the embedded engine, unless
        ``clickhouse.memory_release_mb`` is 0)."""
        return self.target.kind == "embedded" and _engine.purge_works and _engine.release_growth > 0

    def release_memory_if_grown(self, growth: int | None = None) -> bool:
        """Embedded engine: :meth:`release_memory` when this process (the engine runs in it) holds ``growth`` bytes
        (default: ``clickhouse.memory_release_mb``; 0 never) more than the engine was found to use. Asking costs one
        read of ``/proc/self/statm`` (microseconds), so it can be asked before every build, around every file and
        after every partition: small days never pay for a purge, and a big day's next statement starts from what
        the engine needs, not from the last one's peak. True if it released."""
        if self.target.kind != "embedded" or not _engine.purge_works:
            return False
        growth = _engine.release_growth if growth is None else growth
        if growth <= 0 or resident_bytes() - _engine.resident_after_release < growth:
            return False
        self.release_memory()
        return True

    def exists(self) -> bool:
        return bool(self.scalar("SELECT count() FROM system.databases WHERE name = {db:String}", {"db": self.name}))

    # --- the catalog: what chops asks about its own tables, asked here only ------------------------------------

    def has_table(self, name: str) -> bool:
        """Whether table ``name`` exists in this database."""
        return bool(self.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() "
                                "AND name = {t:String}", {"t": name}))

    def table(self, name: str) -> dict[str, Any] | None:
        """``name``'s catalog row (engine, partition_key, comment, uuid as text), or None when it does not exist."""
        found = self.rows("SELECT engine, partition_key, comment, toString(uuid) AS uuid FROM system.tables "
                          "WHERE database = currentDatabase() AND name = {t:String}", {"t": name})
        return found[0] if found else None

    def tables(self, prefix: str = "") -> list[str]:
        """The names of this database's tables that start with ``prefix``, sorted."""
        return [r["name"] for r in self.rows(
            "SELECT name FROM system.tables WHERE database = currentDatabase() AND startsWith(name, {p:String}) "
            "ORDER BY name", {"p": prefix})]

    def partition_rows(self, table: str, day=None) -> dict[str, int]:
        """Rows per partition id of ``table`` from its active parts (no scan); only ``day``'s partition when given
        (``partitionId({day:Date})``, the id of a table partitioned by day)."""
        where = " AND partition_id = partitionId({d:Date})" if day is not None else ""
        params: dict[str, Any] = {"t": table}
        if day is not None:
            params["d"] = day
        parts = self.rows("SELECT partition_id, sum(rows) AS rows FROM system.parts WHERE database = currentDatabase() "
                          f"AND table = {{t:String}} AND active{where} GROUP BY partition_id", params)
        return {r["partition_id"]: int(r["rows"]) for r in parts}

    def partition_rows_of(self, tables: Iterable[str]) -> dict[str, dict[str, int]]:
        """:meth:`partition_rows` of each of ``tables``, in one query (a backfill's plan asks once, not per table)."""
        out: dict[str, dict[str, int]] = {t: {} for t in tables}
        for r in self.rows("SELECT table, partition_id, sum(rows) AS rows FROM system.parts WHERE database = "
                           "currentDatabase() AND has({t:Array(String)}, table) AND active GROUP BY table, partition_id",
                           {"t": list(out)}):
            out[r["table"]][r["partition_id"]] = int(r["rows"])
        return out

    def close(self) -> None:
        _close_client(self.client)


# FROM INFILE expands these in the file name (measured: 'x*.csv' loads every x….csv beside it).
INFILE_GLOB = re.compile(r"[*?{}\[\]]")


def sql_string(value: str) -> str:
    """A ClickHouse string literal, for the few places that take no query parameter (``FROM INFILE``)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def infile_sql(table: str, path: Path | str, fmt: str, columns: Sequence[str] | None = None,
               settings: dict[str, int] | None = None) -> str:
    """``INSERT INTO table (columns) FROM INFILE 'path' SETTINGS … FORMAT fmt``, every name checked or quoted."""
    names = " (" + ", ".join(f"`{validate_identifier(c, 'column')}`" for c in columns) + ")" if columns else ""
    if INFILE_GLOB.search(str(path)):
        raise BadInput(f"FROM INFILE would expand the glob characters in {path}")
    clause = (" SETTINGS " + ", ".join(f"{validate_identifier(k, 'setting')} = {_number(v)}" for k, v in settings.items())
              if settings else "")
    return (f"INSERT INTO `{validate_identifier(table, 'table')}`{names} FROM INFILE {sql_string(str(path))}{clause} "
            f"FORMAT {validate_identifier(fmt, 'format')}")


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadInput(f"a setting in SQL text must be a number, got {value!r}")
    return repr(value)


def _used(sql: str, parameters: dict | None) -> dict | None:
    """Only the parameters the SQL binds as ``{name:Type}``. Given none, clickhouse-connect would format the
    text client-side with ``%`` and trip over a literal ``%`` (``n % 7``); so none is passed as None."""
    if not parameters:
        return None
    used = {k: v for k, v in parameters.items() if "{" + k + ":" in sql}
    return used or None


def _wrap(exc: Exception, sql: str) -> Exception:
    from clickhouse_connect.driver import exceptions as cc

    if isinstance(exc, cc.OperationalError):
        return WorkFailed(f"cannot reach ClickHouse: {first_line(exc)}")
    if isinstance(exc, cc.Error):
        return DatabaseError(f"ClickHouse refused `{_abbrev(sql)}`: {first_line(exc)}")
    return exc


def _abbrev(sql: str, n: int = 80) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= n else flat[: n - 3] + "..."


def connect(settings, database: str | None = None, *, create: bool = False, admin: bool = False) -> Database:
    """A :class:`Database` on the configured engine.

    ``database`` overrides the configured one (tests use a database each). The database must exist unless
    ``create`` is set (``db.setup`` creates it; ``Database.created`` then says whether it did); a missing
    database is a clear error naming ``inv db.setup``. ``admin`` returns a handle whose queries run in the
    ``default`` database and checks nothing (to drop or inspect the configured one).
    """
    tgt = target(settings)
    if database:
        tgt = Target(**{**tgt.__dict__, "database": validate_identifier(database, "database")})
    client = _open_client(settings, tgt, database=None)
    if admin:
        return Database(client, tgt)
    created = False
    try:
        exists = client.command("SELECT count() FROM system.databases WHERE name = {db:String}",
                                parameters={"db": tgt.database})
        if not int(exists):
            if not create:
                raise WorkFailed(f"database {tgt.database!r} does not exist at {tgt.url}", hint="run: inv db.setup")
            client.command(f"CREATE DATABASE IF NOT EXISTS `{tgt.database}` ENGINE = Atomic")
            created = True
    except Exception as exc:
        _close_client(client)
        if isinstance(exc, WorkFailed):
            raise
        raise _settings_error(exc) or _wrap(exc, "SELECT FROM system.databases") from exc
    client.database = tgt.database
    return Database(client, tgt, created=created)


def connect_existing(settings, wait: float) -> Database:
    """A connection for looking and cleaning up (health checks, the janitor, a deploy's smoke check): it never
    creates the data directory or the database, and waits at most ``wait`` seconds for an embedded engine that
    another chops process has open."""
    tgt = target(settings)
    if tgt.kind == "embedded" and not (tgt.path / "metadata").is_dir():
        try:
            shown = str(Path(tgt.path).relative_to(settings.root))
        except ValueError:
            shown = str(tgt.path)
        raise WorkFailed(f"there is no embedded database at {shown} yet", hint="run: inv db.setup")
    return connect(settings.with_overrides(clickhouse__lock_timeout=wait))


def _close_client(client) -> None:
    try:
        client.close()
    finally:
        if client in _engine.clients:
            _engine.clients.remove(client)


def _open_client(settings, tgt: Target, database: str | None):
    import clickhouse_connect
    from clickhouse_connect.driver import exceptions as cc

    if tgt.kind == "embedded":
        real = _engine.open(tgt.path, settings.get("clickhouse.lock_timeout"), engine_config(tgt.merge_tree,
                                                                                           tgt.server_settings))
        starting = not _engine.clients  # the engine starts with the first connection (again after the last closed)
        _engine.release_growth = int(settings.get("clickhouse.memory_release_mb")) << 20
        try:
            client = clickhouse_connect.get_client(dsn=f"chdb://{real}", database=database,
                                                   settings=dict(tgt.settings), chdb_options=_engine.options())
        except Exception as exc:
            if "Cannot lock file" in str(exc):
                raise WorkFailed(
                    f"the embedded database {_short(tgt.path)} is open in a process that is not chops",
                    hint="stop that process; chops queues only behind its own lock",
                ) from None
            raise _settings_error(exc) or _wrap(exc, "open embedded engine") from exc
        _engine.clients.append(client)
        if starting and (tgt.merge_tree or tgt.server_settings):
            try:
                _check_engine_settings(client, tgt)
            except Exception:
                _close_client(client)
                raise
        return client
    try:
        client = clickhouse_connect.get_client(
            host=tgt.host, port=tgt.port, secure=tgt.secure, username=tgt.username or "default",
            password=tgt.password or "", database=database or "default",
            connect_timeout=settings.get("clickhouse.connect_timeout"), settings=dict(tgt.settings),
        )
    except cc.Error as exc:
        raise _settings_error(exc) or WorkFailed(f"cannot reach ClickHouse at {tgt.url}: {first_line(exc)}",
                                                 hint="check CLICKHOUSE_URL with: inv config") from None
    _warn_server_engine_settings(client, tgt)
    return client


def _settings_error(exc: Exception) -> ConfigError | None:
    """The one-line error for settings ClickHouse refused while a client opened, or None for any other failure."""
    text = str(exc)
    if "UNKNOWN_SETTING" in text or "Unknown setting" in text:
        return ConfigError(f"clickhouse.settings: {first_line(exc)}",
                           hint="query settings go in [clickhouse.settings], MergeTree ones in "
                                "[clickhouse.merge_tree], server ones in [clickhouse.server_settings]; see: inv config")
    if "while parsing setting" in text or "Cannot parse" in text:
        return ConfigError(f"a ClickHouse setting has a value ClickHouse cannot read: {first_line(exc)}",
                           hint="check [clickhouse.settings], [clickhouse.server_settings] with: inv config")
    return None
