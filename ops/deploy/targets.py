"""Where a deploy goes: the targets of ``config/deploy.toml`` and ``--host``, validated before anything is contacted.

Every value that ends up on an ssh or rsync command line (host, user, port, path) is checked here against a strict
pattern, so a name with spaces or shell characters is refused as bad input (exit 2) with nothing changed.

A target of the file may be a fleet: several hosts (``hosts``, each a name or a table of its own keys), grouped in
roles (``[targets.NAME.roles.ROLE]``), rolled out as :func:`resolve_fleet` describes (``parallel``, ``canary``,
``rollback_on_failure``) with ``before`` and ``after`` hooks; ``ops.deploy.fleet`` runs the rollout.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import ipaddress
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass
from enum import StrEnum
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
    roles: tuple[str, ...] = ()  # the roles of config/deploy.toml that list this host
    # "user" and/or "port" when ssh decides them (~/.ssh/config, else its own default): left off ssh's command line,
    # so ssh applies its config itself; ``user`` and ``port`` then hold what it will use (``ssh -G``), for messages
    implicit: tuple[str, ...] = ()

    @property
    def login(self) -> str | None:
        """The user named on ssh's command line: None when ssh decides it."""
        return None if "user" in self.implicit else self.user

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.login else self.host

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
    if not _HOSTNAME.fullmatch(text):  # fullmatch: ``$`` alone would let a trailing newline through
        raise BadInput(f"host {text!r} is not a host name or an IP address (letters, digits, '-' and '.' only; "
                       "no spaces or shell characters)")
    return text


def validate_user(user: Any) -> str:
    text = str(user if user is not None else "")
    if not _USER.fullmatch(text):
        raise BadInput(f"user {text!r} is not a valid user name ([a-z_][a-z0-9_-]*, at most 32 characters; "
                       "no spaces or shell characters)")
    return text


def validate_port(port: Any) -> int:
    try:
        if not re.fullmatch(r"[0-9]{1,5}", str(port)):  # no sign, no spaces, no trailing newline
            raise ValueError
        n = int(str(port))
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
    if not _PATH.fullmatch(stripped) or "//" in stripped:
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


_HOST_KEYS = {"host", "user", "port", "path", "environment", "cron"}  # a host's own keys (a table in ``hosts``)
_ROLE_KEYS = {"hosts", "user", "port", "path", "environment", "cron"}  # [targets.NAME.roles.ROLE]
_ROLLOUT_KEYS = {"parallel", "canary", "rollback_on_failure", "before", "after"}
_TARGET_KEYS = {"host", "hosts", "user", "port", "path", "environment", "cron", "roles", *_ROLLOUT_KEYS}
_HOOK_KEYS = {"local", "remote", "roles", "timeout"}


class Where(StrEnum):
    """Where a hook runs."""

    LOCAL = "local"  # on this machine, in the project's directory
    REMOTE = "remote"  # on each host of the target, in <path>/current (before the first deploy: in <path>)


@dataclass(frozen=True)
class Hook:
    """A command a rollout runs before it changes anything (``before``) or once it ended (``after``). Arguments,
    never a shell line: each is quoted on its way to a host."""

    where: Where
    argv: tuple[str, ...]
    roles: tuple[str, ...] = ()  # remote: only the hosts of these roles (none: every host)
    timeout: float = 300.0

    def label(self) -> str:
        return f"{self.where}: {shlex.join(self.argv)}" + (f" (roles {', '.join(self.roles)})" if self.roles else "")

    def as_dict(self) -> dict[str, Any]:
        return {"where": str(self.where), "argv": list(self.argv), "roles": list(self.roles), "timeout": self.timeout}


@dataclass(frozen=True)
class Group:
    """The hosts of one target of config/deploy.toml (or those given with --host) and how they roll out: a canary
    batch of ``canary`` hosts first, then batches of ``parallel`` hosts deployed at once."""

    name: str  # "" for --host
    targets: tuple[Target, ...]
    parallel: int = 1
    canary: int = 1
    rollback_on_failure: bool = True
    before: tuple[Hook, ...] = ()
    after: tuple[Hook, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "hosts": [t.host for t in self.targets], "parallel": self.parallel,
                "canary": self.canary, "rollback_on_failure": self.rollback_on_failure,
                "before": [h.as_dict() for h in self.before], "after": [h.as_dict() for h in self.after]}


@dataclass(frozen=True)
class Fleet:
    """Every host a command acts on, by target, in order."""

    groups: tuple[Group, ...]

    @property
    def targets(self) -> list[Target]:
        return [t for g in self.groups for t in g.targets]


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
    if not isinstance(data.get("targets", {}), dict):
        raise ConfigError(f"{TARGETS_FILE}: targets must be a table ([targets.NAME])")
    for name, body in [("defaults", data.get("defaults", {})), *data.get("targets", {}).items()]:
        if not isinstance(body, dict):
            raise ConfigError(f"{TARGETS_FILE}: {name} must be a table")
        known_keys = _TARGET_KEYS - {"roles"} if name == "defaults" else _TARGET_KEYS
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


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _host_entry(name: str, item: Any, overrides: dict[str, Any],
                roles: tuple[str, ...]) -> tuple[Any, dict[str, Any], tuple[str, ...]]:
    """A host of a target: a name, or a table of that host's own keys (host, user, port, path, environment, cron)."""
    if not isinstance(item, dict):
        return item, dict(overrides), roles
    extra = sorted(set(item) - _HOST_KEYS)
    if extra:
        raise ConfigError(f"{TARGETS_FILE}: unknown key {extra[0]!r} in a host of {name} "
                          f"(known: {', '.join(sorted(_HOST_KEYS))})")
    if "host" not in item:
        raise ConfigError(f"{TARGETS_FILE}: a host table of {name} has no host key")
    return item["host"], {**overrides, **{k: v for k, v in item.items() if k != "host"}}, roles


def _host_entries(name: str, body: dict[str, Any]) -> list[tuple[Any, dict[str, Any], tuple[str, ...]]]:
    """The hosts of target ``name``, in order: ``host`` or ``hosts``, then those of each role."""
    listed, one = body.get("hosts"), body.get("host")
    if listed is not None and one is not None:
        raise ConfigError(f"{TARGETS_FILE}: target {name} has both host and hosts")
    entries = [_host_entry(name, item, {}, ()) for item in _listed(listed if listed is not None else one)]
    roles = body.get("roles") or {}
    if not isinstance(roles, dict):
        raise ConfigError(f"{TARGETS_FILE}: roles of {name} must be tables ([targets.{name}.roles.ROLE])")
    for role, rbody in roles.items():
        if not _NAME.match(role) or not isinstance(rbody, dict):
            raise ConfigError(f"{TARGETS_FILE}: role {role!r} of {name} must be a table named with letters, digits, "
                              "'.', '_' or '-'")
        extra = sorted(set(rbody) - _ROLE_KEYS)
        if extra:
            raise ConfigError(f"{TARGETS_FILE}: unknown key {extra[0]!r} in role {role} of {name} "
                              f"(known: {', '.join(sorted(_ROLE_KEYS))})")
        if not rbody.get("hosts"):
            raise ConfigError(f"{TARGETS_FILE}: role {role} of {name} names no host")
        overrides = {k: v for k, v in rbody.items() if k != "hosts"}
        entries += [_host_entry(name, item, overrides, (role,)) for item in _listed(rbody["hosts"])]
    if not entries:
        raise ConfigError(f"{TARGETS_FILE}: target {name} names no host")
    return entries


def _count(value: Any, key: str, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{TARGETS_FILE}: {key} of {name} must be a whole number, at least {minimum}; got {value!r}")
    return value


def _hooks(name: str, key: str, value: Any) -> tuple[Hook, ...]:
    """``before``/``after``: a list of ``{ local = COMMAND }`` or ``{ remote = COMMAND, roles = [...] }``, COMMAND
    a string (split like a shell would, but never run by one) or a list of arguments."""
    where = f"{TARGETS_FILE}: {key} of {name}"
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list of hooks, e.g. [{{ local = \"make notify\" }}]")
    hooks = []
    for item in value:
        places = [k for k in ("local", "remote") if isinstance(item, dict) and k in item]
        if len(places) != 1 or set(item) - _HOOK_KEYS:
            raise ConfigError(f"{where}: each hook is {{ local = COMMAND }} or {{ remote = COMMAND }} "
                              f"(optional: roles, timeout); got {item!r}")
        command = item[places[0]]
        try:
            argv = shlex.split(command) if isinstance(command, str) else list(command)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: cannot read the command {command!r}: {exc}") from None
        if not argv or not all(isinstance(a, str) and a and not set(a) & {"\n", "\r", "\0"} for a in argv):
            raise ConfigError(f"{where}: a hook's command must be non-empty text without newlines; got {command!r}")
        roles = item.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) and _NAME.match(r) for r in roles) or (
                roles and places[0] == "local"):
            raise ConfigError(f"{where}: roles of a hook must be a list of role names, and only for a remote hook")
        timeout = item.get("timeout", 300)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigError(f"{where}: timeout must be a positive number of seconds; got {timeout!r}")
        hooks.append(Hook(Where(places[0]), tuple(argv), tuple(roles), float(timeout)))
    return tuple(hooks)


def _group_settings(name: str, body: dict[str, Any]) -> dict[str, Any]:
    label = name or "[defaults]"
    rollback = body.get("rollback_on_failure", True)
    if not isinstance(rollback, bool):
        raise ConfigError(f"{TARGETS_FILE}: rollback_on_failure of {label} must be true or false")
    return {"parallel": _count(body.get("parallel", 1), "parallel", label, 1),
            "canary": _count(body.get("canary", 1), "canary", label, 0), "rollback_on_failure": rollback,
            "before": _hooks(label, "before", body.get("before")), "after": _hooks(label, "after", body.get("after"))}


def ssh_settings(host: str, config_file: str | None = None) -> dict[str, str]:
    """What ssh's own configuration (``ssh -G``: ~/.ssh/config, or ``config_file``) says for ``host``: user, port,
    hostname, identityfile, proxyjump, … (keys in lower case; nothing when ssh cannot tell). Connects nowhere."""
    argv = ["ssh", *(["-F", config_file] if config_file else []), "-G", "--", host]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return {}
    found: dict[str, str] = {}
    for line in out.stdout.splitlines() if out.returncode == 0 else []:
        key, _, value = line.partition(" ")
        found.setdefault(key.lower(), value)
    return found


def _login(host: str, value: dict[str, Any], fallback: dict[str, Any], ssh_config: str | None
           ) -> tuple[str, int, tuple[str, ...]]:
    """The user and port of a host, and which of them ssh decides: the command line or the target's own entry, else
    what ~/.ssh/config says (``ssh -G``), else [defaults] of config/deploy.toml, else ssh's own defaults (this user's
    name, port 22)."""
    if value["user"] is not None and value["port"] is not None:
        return value["user"], value["port"], ()
    said = ssh_settings(host, ssh_config)
    me, implicit = user_name(), []
    user, port = value["user"], value["port"]
    if user is None:
        ssh_user = said.get("user") or me
        if ssh_user != me or fallback.get("user") is None:  # ~/.ssh/config names a user, or nothing else does
            user = ssh_user
            implicit.append("user")
        else:
            user = fallback["user"]
    if port is None:
        ssh_port = said.get("port") or "22"
        if ssh_port != "22" or fallback.get("port") is None:
            port = ssh_port
            implicit.append("port")
        else:
            port = fallback["port"]
    return user, port, tuple(implicit)


def _make_target(name: str, host: Any, body: dict[str, Any], roles: tuple[str, ...], flags: dict[str, Any],
                 root: Path, fallback: dict[str, Any], ssh_config: str | None = None) -> Target:
    """One validated host; ``flags`` (the command line's user, port, path, environment, cron) win over the file;
    ``fallback`` ([defaults] of the file) comes after ~/.ssh/config for the user and the port."""
    value = {k: flags[k] if flags.get(k) is not None else body.get(k) for k in ("user", "port", "path", "environment",
                                                                             "cron")}
    if value["path"] is None:
        raise BadInput(f"no deploy path for {host}", hint=f"--path /srv/chops, or path in [defaults] of {TARGETS_FILE}")
    host = validate_host(host)
    user, port, implicit = _login(host, value, fallback, ssh_config)
    return Target(host=host, user=validate_user(user), port=validate_port(port),
                  path=validate_path(value["path"]), environment=validate_environment(value["environment"], root),
                  cron=bool(value["cron"] if value["cron"] is not None else True), name=name, roles=roles,
                  implicit=implicit)


def refuse_root(targets: Iterable[Target], allow_root: bool) -> None:
    """Deploying as root (the user ssh will log in as, whoever chose it) is bad input unless ``allow_root``."""
    for target in targets:
        if target.user == "root" and not allow_root:
            said = " (from ~/.ssh/config or ssh's default)" if "user" in target.implicit else ""
            raise BadInput(f"deploying to {target.host} as root{said} is refused: releases, cron entries and processes "
                           "would all run as root", hint="--user the account that owns the deploy path, or set "
                                                         "deploy.allow_root = true")


def resolve_fleet(hosts: Iterable[str] | str | None = None, target_names: Iterable[str] | str | None = None,
                  user: str | None = None, port: Any = None, path: str | None = None,
                  environment: str | None = None, cron: bool | None = None, limit: Iterable[str] | str | None = None,
                  root: Path = ROOT, ssh_config: str | None = None) -> Fleet:
    """The hosts to act on, by target, in order, validated: named targets of config/deploy.toml (their hosts and roles,
    how they roll out, their hooks) and/or ``hosts`` with the file's [defaults]; ``user``/``port``/``path``/
    ``environment`` given here win over the file; ``limit`` keeps only the hosts (or roles) it names. A user or port
    neither given nor in the target's entry is what ~/.ssh/config (``ssh_config``: another file) says, else the
    file's [defaults]. Reads config/deploy.toml and asks ``ssh -G``; raises BadInput before anything is contacted."""
    config = read_targets(root)
    fallback = {k: config["defaults"].get(k) for k in ("user", "port")}
    defaults = {"path": None, "environment": "prod", "cron": True,
                **{k: v for k, v in config["defaults"].items() if k not in fallback}}
    hosts, names = _split(hosts), _split(target_names)
    if not hosts and not names:
        raise BadInput("name a host or a target", hint="--host NAME (or make deploy HOST=NAME), or --target NAME "
                                                        f"from {TARGETS_FILE}")
    flags = {"user": user, "port": port, "path": path, "environment": environment, "cron": cron}
    wanted: list[tuple[str, dict[str, Any], list[tuple[Any, dict[str, Any], tuple[str, ...]]], dict[str, Any]]] = []
    for name in names:
        if not _NAME.match(name) or name not in config["targets"]:
            known = sorted(config["targets"])
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            raise BadInput(f"unknown deploy target {name!r}",
                           hint=f"did you mean {', '.join(close)}?" if close
                           else f"known in {TARGETS_FILE}: {', '.join(known) or 'none'}")
        body = {**defaults, **config["targets"][name]}
        wanted.append((name, body, _host_entries(name, body), _group_settings(name, body)))
    if hosts:
        wanted.append(("", defaults, [(host, {}, ()) for host in hosts], _group_settings("", defaults)))
    seen: dict[Target, int] = {}  # a host (without its roles) -> its index in out
    out: list[Target] = []
    groups = []
    for name, body, entries, rollout in wanted:
        mine = []
        for host, overrides, roles in entries:
            target = _make_target(name, host, {**body, **overrides}, roles, flags, root, fallback, ssh_config)
            key = dataclasses.replace(target, roles=(), name="", implicit=())
            if key in seen:  # listed again (another role, another target): one host, its roles merged
                i = seen[key]
                more = tuple(r for r in roles if r not in out[i].roles)
                out[i] = dataclasses.replace(out[i], roles=out[i].roles + more)
                continue
            seen[key] = len(out)
            out.append(target)
            mine.append(len(out) - 1)
        groups.append((name, rollout, mine))
    fleet = Fleet(tuple(Group(name, tuple(out[i] for i in mine), **rollout) for name, rollout, mine in groups if mine))
    return limit_fleet(fleet, limit)


def limit_fleet(fleet: Fleet, limit: Iterable[str] | str | None) -> Fleet:
    """Only the hosts ``limit`` names, by host name or role; a name that is neither is bad input."""
    names = _split(limit)
    if not names:
        return fleet
    hosts = [t.host for t in fleet.targets]
    roles = sorted({r for t in fleet.targets for r in t.roles})
    unknown = [n for n in names if n not in hosts and n not in roles]
    if unknown:
        raise BadInput(f"--limit {unknown[0]}: not a host or a role of the chosen targets",
                       hint=f"hosts: {', '.join(hosts)}" + (f"; roles: {', '.join(roles)}" if roles else ""))
    groups = []
    for g in fleet.groups:
        kept = tuple(t for t in g.targets if t.host in names or set(t.roles) & set(names))
        if kept:
            groups.append(dataclasses.replace(g, targets=kept))
    return Fleet(tuple(groups))


def resolve_targets(hosts: Iterable[str] | str | None = None, target_names: Iterable[str] | str | None = None,
                    user: str | None = None, port: Any = None, path: str | None = None,
                    environment: str | None = None, cron: bool | None = None, root: Path = ROOT,
                    ssh_config: str | None = None) -> list[Target]:
    """The hosts to deploy to, in order (:func:`resolve_fleet` without the rollout)."""
    return resolve_fleet(hosts, target_names, user=user, port=port, path=path, environment=environment, cron=cron,
                         root=root, ssh_config=ssh_config).targets


def project_id(path: str) -> str:
    """The cron project id of a deploy at ``path``: ``ops.pipelines.cron.project_id`` of a release there (the hash of
    ``<path>/current``), so the target's entries can be found without running its code."""
    return hashlib.sha256(f"{path}/current".encode()).hexdigest()[:10]

