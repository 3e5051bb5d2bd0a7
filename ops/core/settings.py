"""Settings: config/default.toml, the environment's overlay, .env, then environment variables.

Precedence, lowest first:

1. ``config/default.toml``: every key, with its default;
2. ``config/<CHOPS_ENV>.toml``: the overlay of the environment (``dev`` unless ``CHOPS_ENV`` says otherwise);
3. ``.env`` at the project root (or ``CHOPS_ENV_FILE``): secrets, as ``NAME=value`` lines;
4. the process environment.

In ``.env`` and the environment a key is spelled ``CHOPS_<SECTION>__<KEY>`` (``CHOPS_CLICKHOUSE__LOCK_TIMEOUT``);
``CLICKHOUSE_URL`` is accepted as the conventional name of ``clickhouse.url``. Unknown keys, wrong types and
unknown environments are ``ConfigError``\\ s that name the file (or variable) and the key.

A few keys are *tables* of names chops does not know in advance (ClickHouse settings: ``[clickhouse.settings]``;
template variables of migrations: ``[migrations.variables]``). Each layer adds or replaces entries, one by one,
and every entry keeps its own source; in ``.env`` and the environment an entry is
``CHOPS_<SECTION>__<KEY>__<NAME>`` (``CHOPS_CLICKHOUSE__SETTINGS__MAX_THREADS=4``; names are lower-cased, as
ClickHouse's settings are, except template variables, which are upper-cased in every layer).

The result is one frozen :class:`Settings` that also remembers where every value came from.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from ops import ROOT
from ops.core.errors import ConfigError
from ops.core.urls import mask_url, parse_url

# Files in config/ that are not environment overlays.
NOT_ENVIRONMENTS = {"default", "deploy"}
# CHOPS_* variables that are not settings keys.
META_VARIABLES = {"CHOPS_ENV", "CHOPS_ENV_FILE", "CHOPS_DEBUG", "CHOPS_TEST_CLICKHOUSE_URL", "CHOPS_WIDTH"}
# Conventional names accepted besides CHOPS_<SECTION>__<KEY>.
ALIASES = {"CLICKHOUSE_URL": "clickhouse.url"}


@dataclass(frozen=True)
class Key:
    """One settings key: its type, and whether its value is a secret that is never printed.

    ``dict`` is a table of named scalars (str, int, float, bool) whose names chops does not know in advance."""

    type: type
    help: str
    secret: bool = False


# The schema: every key chops knows. default.toml must give each a value.
SCHEMA: dict[str, dict[str, Key]] = {
    "clickhouse": {
        "url": Key(str, "empty = embedded chDB engine at <paths.var>/clickhouse; or http(s)://user:pass@host:port/db", secret=True),
        "database": Key(str, "database used when the URL names none"),
        "lock_timeout": Key(float, "seconds to wait for the embedded engine held by another process"),
        "memory_release_mb": Key(int, "embedded engine: give its spare memory back once the process grew by this "
                                      "many MB since the last time (checked around file loads and after each "
                                      "partition); 0 = never (faster on big days, higher peak)"),
        "connect_timeout": Key(float, "seconds to wait when connecting to a server"),
        "cluster": Key(str, "cluster name: ON CLUSTER templating and Replicated bookkeeping on servers; empty = none"),
        "settings": Key(dict, "query settings sent with every statement (system.settings), e.g. max_threads = 4"),
        "merge_tree": Key(dict, "MergeTree settings of the embedded engine (system.merge_tree_settings); a server "
                                "takes them from its own configuration"),
        "server_settings": Key(dict, "server settings of the embedded engine (system.server_settings), e.g. "
                                     "background_pool_size; a server takes them from its own configuration"),
    },
    "migrations": {
        "dir": Key(str, "migration files, NNNN_name.sql + NNNN_name.rollback.sql (relative to the project root)"),
        "lock_timeout": Key(float, "seconds to wait for the migration lock held by another applier"),
        "variables": Key(dict, "template variables of migrations: {{.NAME}}, {{NAME}} and, in goose ENVSUB blocks, "
                               "${NAME}, filled when a migration is rendered (names are case-insensitive)"),
    },
    "pipelines": {
        "dir": Key(str, "pipeline modules, one per pipeline (relative to the project root)"),
    },
    "backfill": {
        "max_days": Key(int, "the most days one backfill may cover (--max-days overrides it explicitly)"),
        "parallel": Key(int, "partitions run at once by default"),
        "change_threshold": Key(float, "backfill.counts flags a day whose rows change by more than this fraction"),
    },
    "paths": {
        "var": Key(str, "runtime data: embedded database, logs, pid files (relative to the project root)"),
        "logs": Key(str, "log directory (relative to the project root); empty = <paths.var>/log"),
        "reports": Key(str, "test reports and benchmark results (relative to the project root)"),
    },
    "test": {
        "workers": Key(str, "pytest-xdist workers: 'auto', 'logical' or a number"),
        "coverage_min": Key(float, "coverage gate of make test-ci, percent; only ever raised"),
    },
    "alerts": {
        "on_failure": Key(str, "a shell command run when a run or backfill fails: the facts as JSON on stdin and "
                               "CHOPS_ALERT_* variables; empty = none (inv pipeline.alert-test tries it)"),
        "timeout": Key(float, "seconds the on_failure command may take before it is killed"),
        "mailto": Key(str, "MAILTO of this project's cron entries (cron mails their output there); empty = cron's default"),
    },
    "report": {
        "schedule": Key(str, "a cron expression: this project's cron entries run `inv report` then; empty = off"),
    },
    "proc": {
        "kill_grace": Key(int, "seconds inv proc.kill waits after SIGTERM before it sends SIGKILL"),
        "log_retention_days": Key(int, "inv proc.clean removes run and cron logs older than this many days; 0 keeps all"),
        "min_free_disk_percent": Key(float, "inv proc.check fails when the disk of var/ or the logs has less free space, percent"),
        "db_wait": Key(float, "seconds proc.check and proc.clean wait for an embedded database another chops process has open"),
    },
    "deploy": {
        "keep_releases": Key(int, "releases kept on a target (current and the last healthy one are always kept)"),
        "connect_timeout": Key(float, "seconds ssh waits for a target to answer (ConnectTimeout)"),
        "command_timeout": Key(float, "seconds one remote step may take (the first venv build is the longest)"),
        "stale_lock_after": Key(float, "seconds after which a deploy lock is stale whoever holds it"),
        "drain_timeout": Key(int, "seconds a deploy lets running chops processes finish before proc.kill"),
        "kill_grace": Key(int, "seconds proc.kill waits after SIGTERM during a deploy (proc.kill --grace)"),
        "known_hosts": Key(str, "ssh known_hosts file for deploy targets; empty = ssh's default (~/.ssh/known_hosts)"),
        "identity_file": Key(str, "ssh private key for deploy targets; empty = ssh's default keys and agent"),
        "ssh_config": Key(str, "ssh client config file for deploy targets; empty = ssh's default (~/.ssh/config)"),
        "accept_new_host_key": Key(bool, "accept and record the host key of a target never seen before (accept-new)"),
        "control_persist": Key(int, "seconds the shared ssh connection stays open after a command (ControlPersist)"),
        "bwlimit": Key(int, "rsync bandwidth limit in KiB/s; 0 = none"),
        "python": Key(str, "the target's Python that builds the virtualenvs and runs the deploy helper"),
        "db_wait": Key(int, "seconds a deploy's remote database commands wait for the embedded database's lock"),
        "allow_root": Key(bool, "allow deploying as root (refused by default)"),
    },
    "bench": {
        "rounds": Key(int, "runs per command; the median and the best are reported"),
        "max_inv_list_ratio": Key(float, "performance gate: `inv --list` / `python -c 'import invoke'`"),
        "max_inv_help_ratio": Key(float, "performance gate: `inv --help db.info` / `python -c 'import invoke'`"),
        "max_migrations_ratio": Key(float, "performance gate: 200 migrations through chops / the same DDL run directly"),
        "max_pipeline_run_ratio": Key(float, "performance gate: inv pipeline.run on 1M rows / the same files loaded directly"),
        "max_backfill_ratio": Key(float, "performance gate: 30-day backfill / the same statements run directly"),
        "max_backfill_scaling": Key(float, "performance gate: 30-day backfill time / (30/7 x the 7-day time)"),
        "max_backfill_rss_ratio": Key(float, "performance gate: backfill peak RSS / the direct loop's peak RSS"),
        "ci_benchmarks": Key(str, "comma-separated benchmarks that `make test-ci` gates (make bench runs them all)"),
    },
}


# The name of an entry of a table key: a ClickHouse setting name.
ENTRY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Tables whose entry names are kept upper-case, whichever layer sets them: template variables are spelled
# {{.APP_CLUSTER}} and CHOPS_MIGRATIONS__VARIABLES__APP_CLUSTER, and `app_cluster = ` in TOML is the same one.
UPPER_CASE_ENTRIES = frozenset({"migrations.variables"})


def _entry(value: Any, where: str, name: str) -> Any:
    """One entry of a table key: a scalar (TOML) or text (.env, the environment), kept as it is."""
    entry = name.rpartition(".")[2]
    if not ENTRY_NAME.match(entry):
        raise ConfigError(f"{where}: {name!r} is not a setting name (letters, digits and _)")
    if not isinstance(value, (str, int, float, bool)):
        raise ConfigError(f"{where}: {name} must be a string, number or boolean, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {name} must be a finite number, got {value!r}")
    return value


def _coerce(value: Any, key: Key, where: str, name: str) -> Any:
    """Check (TOML) or convert (strings from .env and the environment) one value to the key's type."""
    if key.type is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {name} must be a table [{name}] of name = value")
        return {entry: _entry(v, where, f"{name}.{entry}") for entry, v in value.items()}
    from_text = isinstance(value, str) and key.type is not str
    try:
        if key.type is bool:
            if isinstance(value, bool):
                return value
            if from_text and value.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if from_text and value.strip().lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if key.type is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int):
                return value
            if from_text:
                return int(value.strip())
            raise ValueError
        if key.type is float:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, (int, float)):
                number = float(value)
            elif from_text:
                number = float(value.strip())
            else:
                raise ValueError
            if not math.isfinite(number):  # a NaN timeout compares false with everything: it would wait for ever
                raise ConfigError(f"{where}: {name} must be a finite number, got {value!r}")
            return number
        if key.type is str and isinstance(value, str):
            return value
        raise ValueError
    except ValueError:
        shown = "(secret)" if key.secret else repr(value)
        raise ConfigError(f"{where}: {name} must be {key.type.__name__}, got {shown}") from None


def decode_utf8(data: bytes, shown: str, error: type = ConfigError) -> str:
    """``data`` (the bytes of file ``shown``) as text; bytes that are not UTF-8 are one line naming the file and
    the offset of the first bad byte (``error``, a ConfigError by default)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"{shown}: not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line})",
                    hint="save the file as UTF-8") from None


def _read_bytes(path: Path, shown: str) -> bytes:
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise ConfigError(f"{shown} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {exc.strerror}") from None


def _read_toml(path: Path, root: Path) -> dict[str, Any]:
    rel = _rel(path, root)
    text = decode_utf8(_read_bytes(path, rel), rel)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{rel}: invalid TOML: {exc}") from None


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _apply_toml(values: dict, sources: dict, data: dict, where: str) -> None:
    for section, body in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"{where}: unknown section [{section}] (known: {', '.join(SCHEMA)})")
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: {section} must be a table [{section}]")
        for name, value in body.items():
            key = SCHEMA[section].get(name)
            if key is None:
                raise ConfigError(f"{where}: unknown key {section}.{name} (known: {', '.join(SCHEMA[section])})")
            _set(values, sources, f"{section}.{name}", _coerce(value, key, where, f"{section}.{name}"), where)


def _set(values: dict, sources: dict, dotted: str, value: Any, where: str, entry: str | None = None) -> None:
    """Record a value and its source; a table's entries are added to (or replace) the ones below them, one by one,
    each with its own source (``clickhouse.settings.max_threads``)."""
    if entry is not None and dotted in UPPER_CASE_ENTRIES:
        entry = entry.upper()
    if entry is not None:
        values[dotted] = {**values.get(dotted, {}), entry: value}
        sources[f"{dotted}.{entry}"] = where
        sources.setdefault(dotted, where)
    elif isinstance(value, dict):
        for name, item in value.items():
            _set(values, sources, dotted, item, where, name)
        values.setdefault(dotted, {})
        sources.setdefault(dotted, where)
    else:
        values[dotted] = value
        sources[dotted] = where


def _table_entry(section: str, name: str) -> tuple[str, str] | None:
    """``(key, entry)`` when ``name`` spells an entry of a table key (``settings__max_threads``), else None."""
    head, sep, entry = name.partition("__")
    key = SCHEMA.get(section, {}).get(head)
    return (head, entry) if sep and key is not None and key.type is dict and entry else None


def _variable_key(var: str) -> str | None:
    """The dotted settings key a variable sets, or None when it is not a settings variable."""
    if var in ALIASES:
        return ALIASES[var]
    if not var.startswith("CHOPS_") or var in META_VARIABLES:
        return None
    section, sep, name = var[len("CHOPS_"):].lower().partition("__")
    return f"{section}.{name}" if sep else f"?{var}"


def _apply_variables(values: dict, sources: dict, variables: Mapping[str, str | None], where: str) -> None:
    for var, value in sorted(variables.items()):
        dotted = _variable_key(var)
        if dotted is None:
            continue
        section, _, name = dotted.partition(".")
        key = SCHEMA.get(section, {}).get(name)
        table_entry = _table_entry(section, name)
        if key is None and table_entry is None:
            raise ConfigError(
                f"{where}: unknown variable {var} (settings variables are CHOPS_<SECTION>__<KEY>, "
                f"e.g. CHOPS_CLICKHOUSE__LOCK_TIMEOUT)"
            )
        if key is not None and key.type is dict:
            raise ConfigError(f"{where}: {var}: {dotted} is a table; set one entry of it as {var}__<NAME>=value")
        if value is None:
            raise ConfigError(f"{where}: {var} has no value (write {var}=...)")
        label = f"{where} {var}" if where == "environment" else where
        source = f"{where} {var}" if where == "environment" else f"{where} ({var})"
        if table_entry is not None:
            table, entry = table_entry
            entry_value = _entry(value, label, f"{section}.{table}.{entry}")
            _set(values, sources, f"{section}.{table}", entry_value, source, entry)
        else:
            _set(values, sources, dotted, _coerce(value, key, label, var), source)


def environments(root: Path = ROOT) -> list[str]:
    """Environment names: one overlay file config/<name>.toml each."""
    return sorted(p.stem for p in (root / "config").glob("*.toml") if p.stem not in NOT_ENVIRONMENTS)


def read_env_file(path: Path, root: Path = ROOT) -> dict[str, str | None]:
    """Parse a .env file (python-dotenv); refuse one that others can read, as ssh refuses a private key, and
    one that is not a file (``CHOPS_ENV_FILE`` naming a directory) or not UTF-8."""
    if not path.exists():
        return {}
    shown = _rel(path, root)
    if not path.is_file():
        raise ConfigError(f"{shown} (the .env file; CHOPS_ENV_FILE) is not a file",
                          hint="point CHOPS_ENV_FILE at a NAME=value file, or unset it to use .env")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{shown} holds secrets but is readable by others (mode {mode:04o})",
            hint=f"run: chmod 600 {shown}",
        )
    from dotenv import dotenv_values

    return dict(dotenv_values(stream=io.StringIO(decode_utf8(_read_bytes(path, shown), shown))))


@dataclass(frozen=True)
class Settings:
    """The effective settings: ``settings.get('clickhouse.url')`` or ``settings.clickhouse['url']``."""

    env: str
    root: Path
    values: Mapping[str, Any] = field(repr=False)
    sources: Mapping[str, str] = field(repr=False)
    env_file: Path
    # Everything .env defines, for pipelines that need their own secrets; never shown.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)

    def get(self, dotted: str) -> Any:
        return self.values[dotted]

    def __getattr__(self, section: str) -> Mapping[str, Any]:
        if section in SCHEMA:
            return MappingProxyType({k: self.values[f"{section}.{k}"] for k in SCHEMA[section]})
        raise AttributeError(section)

    def path(self, dotted: str) -> Path:
        """A path setting, resolved against the project root. An empty paths.logs means <paths.var>/log."""
        if dotted == "paths.logs" and not self.values[dotted]:
            return self.path("paths.var") / "log"
        p = Path(self.values[dotted])
        return p if p.is_absolute() else self.root / p

    def with_overrides(self, **overrides: Any) -> "Settings":
        """A copy with some keys replaced (``clickhouse__url=...``); used by tests and by callers that pin a value.
        A table is replaced whole (``clickhouse__settings={...}``) or one entry at a time
        (``clickhouse__settings__max_threads=4``)."""
        values, sources = dict(self.values), dict(self.sources)
        for name, value in overrides.items():
            dotted = name.replace("__", ".", 1)
            section, _, key_name = dotted.partition(".")
            key = SCHEMA.get(section, {}).get(key_name)
            table_entry = _table_entry(section, key_name)
            if table_entry is not None:
                table, entry = table_entry
                _set(values, sources, f"{section}.{table}", _entry(value, "override", f"{section}.{table}.{entry}"),
                     "override", entry)
                continue
            if key is None:
                raise ConfigError(f"override: unknown key {dotted}")
            if key.type is dict:
                values.pop(dotted)
                for stale in [s for s in sources if s.startswith(f"{dotted}.")]:
                    del sources[stale]
                sources[dotted] = "override"
            _set(values, sources, dotted, _coerce(value, key, "override", dotted), "override")
        new = Settings(self.env, self.root, _frozen(values), MappingProxyType(sources), self.env_file, self.secrets)
        _validate(new)
        return new

    def describe(self) -> list[dict[str, Any]]:
        """Every key with its value (secrets masked) and where it came from; a table's entries one row each, those
        the URL carries included (they win over the table's)."""
        rows = []
        for section, keys in SCHEMA.items():
            for name, key in keys.items():
                dotted = f"{section}.{name}"
                if key.type is dict:
                    rows.extend(self._describe_table(dotted, key))
                    continue
                value = self.values[dotted]
                if key.secret and value:
                    value = mask_url(value) if "://" in str(value) else "********"
                rows.append({"key": dotted, "value": value, "source": self.sources[dotted], "help": key.help})
        return rows

    def _describe_table(self, dotted: str, key: Key) -> list[dict[str, Any]]:
        url = self.values["clickhouse.url"] if dotted.startswith("clickhouse.") else ""
        found = parse_url(url) if url else None
        carried = found.settings_group(dotted.partition(".")[2]) if found else {}
        server = found is not None and found.kind == "server"
        entries = {**{n: (v, self.sources[f"{dotted}.{n}"]) for n, v in self.values[dotted].items()},
                   **{n: (v, f"{self.sources['clickhouse.url']} (URL parameter)") for n, v in carried.items()}}
        if not entries:
            return [{"key": dotted, "value": {}, "source": self.sources[dotted], "help": key.help}]
        note = ("; not applied: a server takes it from its own configuration"
                if server and dotted in ENGINE_ONLY else "")
        return [{"key": f"{dotted}.{n}", "value": v, "source": source + note, "help": key.help}
                for n, (v, source) in sorted(entries.items())]


# Table keys that only the embedded engine applies (a server's own configuration sets them).
ENGINE_ONLY = ("clickhouse.merge_tree", "clickhouse.server_settings")


def _frozen(values: dict[str, Any]) -> MappingProxyType:
    """The values, tables included, as read-only mappings."""
    return MappingProxyType({k: MappingProxyType(dict(v)) if isinstance(v, (dict, MappingProxyType)) else v
                             for k, v in values.items()})


def _validate(settings: Settings) -> None:
    """Cross-field checks that need the whole picture (e.g. the URL's shape)."""
    url = settings.values["clickhouse.url"]
    if url:
        parse_url(url, where=settings.sources["clickhouse.url"])
    for key in ("clickhouse.lock_timeout", "clickhouse.memory_release_mb", "migrations.lock_timeout"):
        if settings.values[key] < 0:
            raise ConfigError(f"{settings.sources[key]}: {key} must be >= 0")
    cluster = settings.values["clickhouse.cluster"]
    if cluster and not re.match(r"^[A-Za-z0-9_.-]+$", cluster):
        raise ConfigError(f"{settings.sources['clickhouse.cluster']}: clickhouse.cluster {cluster!r} is not a cluster name")


def load_settings(root: Path = ROOT, environ: Mapping[str, str] | None = None) -> Settings:
    """Read config/, .env and the environment into one frozen Settings. Pure apart from reading files."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    config = root / "config"

    _apply_toml(values, sources, _read_toml(config / "default.toml", root), "config/default.toml")
    missing = [f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys if f"{s}.{k}" not in values]
    if missing:
        raise ConfigError(f"config/default.toml: missing keys {', '.join(missing)}")

    env = environ.get("CHOPS_ENV", "").strip() or "dev"
    known = environments(root)
    if env not in known or env in NOT_ENVIRONMENTS:
        raise ConfigError(
            f"unknown environment {env!r} (CHOPS_ENV): known are {', '.join(known)}",
            hint=f"create config/{env}.toml to add it",
        )
    _apply_toml(values, sources, _read_toml(config / f"{env}.toml", root), f"config/{env}.toml")

    env_file = Path(environ.get("CHOPS_ENV_FILE") or root / ".env")
    dotenv = read_env_file(env_file, root)
    _apply_variables(values, sources, dotenv, _rel(env_file, root))
    _apply_variables(values, sources, dict(environ), "environment")

    settings = Settings(
        env=env,
        root=root,
        values=_frozen(values),
        sources=MappingProxyType(sources),
        env_file=env_file,
        secrets=MappingProxyType({k: v for k, v in dotenv.items() if v is not None}),
    )
    _validate(settings)
    return settings
