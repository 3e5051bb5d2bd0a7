"""Where the database is: ``clickhouse.url`` (or the embedded default) parsed into a :class:`Target`.

Settings validate the URL while they load, so this is core, below the ClickHouse layer that opens it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ops.core.errors import BadInput, ConfigError

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
