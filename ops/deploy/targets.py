"""Where a deploy goes: the targets of ``config/deploy.toml`` and ``--host``, validated before anything is contacted.

Every value that ends up on an ssh or rsync command line (host, user, port, path) is checked here against a strict
pattern, so a name with spaces or shell characters is refused as bad input (exit 2) with nothing changed.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ops import ROOT
from ops.core.errors import BadInput, ConfigError
from ops.core.process import user_name
from ops.core.settings import environments

TARGETS_FILE = "config/deploy.toml"
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_PATH = re.compile(r"^/[A-Za-z0-9._/+@-]+$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Target:
    """One host to deploy to, validated."""

    host: str
    user: str
    port: int
    path: str
    environment: str
    cron: bool = True
    name: str = ""  # the target's name in config/deploy.toml; "" for --host

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}"

    @property
    def rsync_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}{self.path}"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def validate_host(host: Any) -> str:
    text = str(host if host is not None else "")
    if not text:
        raise BadInput("no host given", hint="--host NAME, or --target NAME from config/deploy.toml")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not _HOSTNAME.match(text):
        raise BadInput(f"host {text!r} is not a host name or an IP address (letters, digits, '-' and '.' only; "
                       "no spaces or shell characters)")
    return text


def validate_user(user: Any) -> str:
    text = str(user if user is not None else "")
    if not _USER.match(text):
        raise BadInput(f"user {text!r} is not a valid user name ([a-z_][a-z0-9_-]*, at most 32 characters; "
                       "no spaces or shell characters)")
    return text


def validate_port(port: Any) -> int:
    try:
        n = int(str(port).strip())
    except (TypeError, ValueError):
        raise BadInput(f"port must be a whole number, got {port!r}") from None
    if not 1 <= n <= 65535:
        raise BadInput(f"port must be between 1 and 65535, got {n}")
    return n


def validate_path(path: Any) -> str:
    text = str(path if path is not None else "")
    if not text.startswith("/"):
        raise BadInput(f"deploy path {text!r} must be absolute (e.g. /srv/chops)")
    stripped = text.rstrip("/")
    if not stripped:
        raise BadInput("deploy path '/' is refused: give a directory of its own (e.g. /srv/chops)")
    if not _PATH.match(stripped) or "//" in stripped:
        raise BadInput(f"deploy path {text!r} may hold only letters, digits and . _ - + @ /")
    if any(part in (".", "..") for part in stripped.split("/")):
        raise BadInput(f"deploy path {text!r} must not contain '.' or '..' components")
    return stripped


def validate_environment(environment: Any, root: Path = ROOT) -> str:
    text = str(environment or "")
    known = environments(root)
    if text not in known:
        raise BadInput(f"unknown environment {text!r} for the target (known: {', '.join(known)})",
                       hint=f"create config/{text}.toml, or set environment in {TARGETS_FILE}")
    return text


def read_targets(root: Path = ROOT) -> dict[str, Any]:
    """config/deploy.toml as data: ``{"defaults": {...}, "targets": {name: {...}}}`` (both may be empty)."""
    path = root / TARGETS_FILE
    if not path.exists():
        return {"defaults": {}, "targets": {}}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{TARGETS_FILE}: invalid TOML: {exc}") from None
    unknown = sorted(set(data) - {"defaults", "targets"})
    if unknown:
        raise ConfigError(f"{TARGETS_FILE}: unknown section [{unknown[0]}] (known: defaults, targets)")
    known_keys = {"host", "hosts", "user", "port", "path", "environment", "cron"}
    if not isinstance(data.get("targets", {}), dict):
        raise ConfigError(f"{TARGETS_FILE}: targets must be a table ([targets.NAME])")
    for name, body in [("defaults", data.get("defaults", {})), *data.get("targets", {}).items()]:
        if not isinstance(body, dict):
            raise ConfigError(f"{TARGETS_FILE}: {name} must be a table")
        extra = sorted(set(body) - known_keys)
        if extra:
            raise ConfigError(f"{TARGETS_FILE}: unknown key {extra[0]!r} in {name} (known: {', '.join(sorted(known_keys))})")
    return {"defaults": data.get("defaults", {}), "targets": data.get("targets", {})}


def _split(values: Iterable[str] | str | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for raw in values:
        for part in (p.strip() for p in str(raw).split(",")):
            if part and part not in out:
                out.append(part)
    return out


def resolve_targets(hosts: Iterable[str] | str | None = None, target_names: Iterable[str] | str | None = None,
                    user: str | None = None, port: Any = None, path: str | None = None,
                    environment: str | None = None, cron: bool | None = None, root: Path = ROOT) -> list[Target]:
    """The hosts to deploy to, in order, validated: named targets of config/deploy.toml and/or ``hosts`` with the
    file's [defaults]; ``user``/``port``/``path``/``environment`` given here win over the file. Pure apart from
    reading config/deploy.toml; raises BadInput before anything is contacted."""
    config = read_targets(root)
    defaults = {"user": user_name(), "port": 22, "path": None, "environment": "prod", "cron": True,
                **config["defaults"]}
    hosts, names = _split(hosts), _split(target_names)
    if not hosts and not names:
        raise BadInput("name a host or a target", hint="--host NAME (or make deploy HOST=NAME), or --target NAME "
                                                        f"from {TARGETS_FILE}")
    chosen: list[tuple[str, str, dict[str, Any]]] = []
    for name in names:
        if not _NAME.match(name) or name not in config["targets"]:
            known = sorted(config["targets"])
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            raise BadInput(f"unknown deploy target {name!r}",
                           hint=f"did you mean {', '.join(close)}?" if close
                           else f"known in {TARGETS_FILE}: {', '.join(known) or 'none'}")
        body = {**defaults, **config["targets"][name]}
        listed = body.pop("hosts", None)
        one = body.pop("host", None)
        if listed is not None and one is not None:
            raise ConfigError(f"{TARGETS_FILE}: target {name} has both host and hosts")
        for host in (listed if isinstance(listed, list) else [listed] if listed else [one] if one else []):
            chosen.append((name, host, body))
        if not (listed or one):
            raise ConfigError(f"{TARGETS_FILE}: target {name} names no host")
    base = {k: v for k, v in defaults.items() if k not in ("host", "hosts")}
    for host in hosts:
        chosen.append(("", host, base))
    out: list[Target] = []
    for name, host, body in chosen:
        the_path = path if path is not None else body.get("path")
        if the_path is None:
            raise BadInput(f"no deploy path for {host}", hint=f"--path /srv/chops, or path in [defaults] of {TARGETS_FILE}")
        target = Target(
            host=validate_host(host),
            user=validate_user(user if user is not None else body.get("user")),
            port=validate_port(port if port is not None else body.get("port", 22)),
            path=validate_path(the_path),
            environment=validate_environment(environment if environment is not None else body.get("environment"), root),
            cron=bool(cron if cron is not None else body.get("cron", True)),
            name=name,
        )
        if target not in out:
            out.append(target)
    return out


def project_id(path: str) -> str:
    """The cron project id of a deploy at ``path``: ``ops.pipelines.cron.project_id`` of a release there (the hash of
    ``<path>/current``), so the target's entries can be found without running its code."""
    return hashlib.sha256(f"{path}/current".encode()).hexdigest()[:10]

