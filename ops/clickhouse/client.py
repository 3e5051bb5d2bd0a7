"""The ClickHouse layer: the only place a clickhouse-connect client is created.

Two engines, one client library:

* **embedded** (default): a chDB engine on disk at ``<paths.var>/clickhouse``. A data path can be opened by one
  process at a time, and a process can hold one path at a time. chops therefore takes an OS file lock beside
  the data path (``clickhouse.lock``) and *waits* for it, saying once who holds it; past
  ``clickhouse.lock_timeout`` it fails naming the holder. Cron runs, backfills and CLI commands queue instead
  of crashing.
* **server**: ``http(s)://user:password@host:port/database``.

``clickhouse_connect`` is imported lazily (it costs a quarter of a second), so ``inv --list`` stays fast.
"""

from __future__ import annotations

import atexit
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import quote, unquote, urlsplit

from ops.core.errors import BadInput, ConfigError, DatabaseError, WorkFailed

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


@dataclass(frozen=True)
class Target:
    """Where the database is: parsed from a URL or from the embedded default."""

    kind: str  # "embedded" | "server"
    database: str
    path: Path | None = None  # embedded: data directory
    host: str | None = None
    port: int | None = None
    secure: bool = False
    username: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        """The URL with the password masked: safe to print."""
        if self.kind == "embedded":
            return f"chdb://{self.path}"
        scheme = "https" if self.secure else "http"
        auth = f"{quote(self.username or '', safe='')}{':********' if self.password else ''}@" if self.username else ""
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.database}"


def parse_url(url: str, default_database: str = "default", where: str = "CLICKHOUSE_URL") -> Target:
    """Parse ``chdb:///abs/path[/?database=db]`` or ``http(s)://user:pass@host[:port][/db]``; one-line errors."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"{where}: malformed URL {mask_url(url)!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme == "chdb":
        if parts.netloc or not parts.path.startswith("/"):
            raise ConfigError(f"{where}: an embedded URL is chdb:///absolute/path, got {mask_url(url)!r}")
        database = _query_database(parts.query, where) or default_database
        return Target("embedded", validate_identifier(database, f"{where}: database", ConfigError), path=Path(parts.path))
    if scheme not in ("http", "https"):
        raise ConfigError(
            f"{where}: unknown scheme {parts.scheme or '(none)'!r} in {mask_url(url)!r} "
            "(use http://, https:// or chdb:///path)"
        )
    if not parts.hostname:
        raise ConfigError(f"{where}: no host in {mask_url(url)!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{where}: port must be a number from 1 to 65535 in {mask_url(url)!r}") from None
    secure = scheme == "https"
    path = parts.path.strip("/")
    if "/" in path:
        raise ConfigError(f"{where}: the URL path names one database, got {path!r}")
    database = unquote(path) or _query_database(parts.query, where) or default_database
    return Target(
        "server",
        validate_identifier(database, f"{where}: database", ConfigError),
        host=parts.hostname,
        port=port or (8443 if secure else 8123),
        secure=secure,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _query_database(query: str, where: str) -> str | None:
    from urllib.parse import parse_qs

    params = parse_qs(query)
    unknown = set(params) - {"database"}
    if unknown:
        raise ConfigError(f"{where}: unknown URL parameter(s) {', '.join(sorted(unknown))} (only database=)")
    return params.get("database", [None])[0]


def mask_url(url: str) -> str:
    """The URL with any password replaced by ********."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1********@", url)


def validate_identifier(name: str, what: str = "name", error: type = BadInput) -> str:
    if not IDENTIFIER.match(name or ""):
        raise error(f"{what} {name!r} is not a valid identifier (letters, digits and _; not starting with a digit)")
    return name


def target(settings) -> Target:
    """The database chops talks to under these settings."""
    url = settings.get("clickhouse.url")
    database = settings.get("clickhouse.database")
    if url:
        return parse_url(url, database, where=settings.sources["clickhouse.url"])
    return Target("embedded", validate_identifier(database, "clickhouse.database"),
                  path=settings.path("paths.var") / "clickhouse")


# --- the process's embedded engine: one path per process ---------------------------------------------------------

class _Engine:
    """The one embedded data path this process holds: its lock and the clients opened on it."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.lock = None
        self.clients: list = []
        self.purge_works = True

    def open(self, path: Path, timeout: float) -> None:
        from ops.core.locks import FileLock

        if self.path == path:
            return
        self.close()
        _check_writable(path)
        lock = FileLock(path.parent / f"{path.name}.lock", f"the embedded database {_short(path)}", timeout)
        lock.acquire()
        self.path, self.lock = path, lock

    def close(self) -> None:
        for client in self.clients:
            try:
                client.close()
            except Exception:  # closing is best effort; the lock release below is what matters
                pass
        self.clients = []
        if self.lock is not None:
            self.lock.release()
        self.path, self.lock = None, None


_engine = _Engine()
atexit.register(_engine.close)


def _short(path: Path) -> str:
    from ops import ROOT

    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _check_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"data path {_short(path)} cannot be created: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise BadInput(f"data path {_short(path)} is not writable by this user")
    probe = path / f".chops-write-test.{os.getpid()}"  # two processes may probe at once (before the lock)
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BadInput(f"data path {_short(path)} is not writable: {exc.strerror}") from None


def close_engine() -> None:
    """Close every client of the embedded engine and release its lock (also done at exit)."""
    _engine.close()


# --- the Database handle ---------------------------------------------------------------------------------------------

def first_line(exc: Exception) -> str:
    """ClickHouse's message of an error, without its code prefix and stack trace, on one line."""
    text = str(exc).strip()
    m = re.search(r"Code: \d+\. DB::Exception: (.*?)(?: Stack trace:|$)", text, re.S)
    text = m.group(1) if m else text
    return " ".join(text.split())[:500]


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
        days of a million rows, 265 MB were held, 98 MB after a purge (measured). A server manages its own."""
        if self.target.kind != "embedded" or not _engine.purge_works:
            return
        try:
            self.client.command("SYSTEM JEMALLOC PURGE")
        except Exception:  # an engine built without jemalloc: nothing to give back
            _engine.purge_works = False

    def exists(self) -> bool:
        return bool(self.scalar("SELECT count() FROM system.databases WHERE name = {db:String}", {"db": self.name}))

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
        raise _wrap(exc, "SELECT FROM system.databases") from exc
    client.database = tgt.database
    return Database(client, tgt, created=created)


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
        _engine.open(tgt.path, settings.get("clickhouse.lock_timeout"))
        try:
            client = clickhouse_connect.get_client(dsn=f"chdb://{tgt.path}", database=database)
        except Exception as exc:
            if "Cannot lock file" in str(exc):
                raise WorkFailed(
                    f"the embedded database {_short(tgt.path)} is open in a process that is not chops",
                    hint="stop that process; chops queues only behind its own lock",
                ) from None
            raise _wrap(exc, "open embedded engine") from exc
        _engine.clients.append(client)
        return client
    try:
        return clickhouse_connect.get_client(
            host=tgt.host, port=tgt.port, secure=tgt.secure, username=tgt.username or "default",
            password=tgt.password or "", database=database or "default",
            connect_timeout=settings.get("clickhouse.connect_timeout"),
        )
    except cc.Error as exc:
        raise WorkFailed(f"cannot reach ClickHouse at {tgt.url}: {first_line(exc)}",
                         hint="check CLICKHOUSE_URL with: inv config") from None
