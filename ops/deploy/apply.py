"""Deploys as releases on a target over ssh and rsync: plan, then apply, verify, and roll back when unhealthy.

On the target (see ``ops.deploy.helper`` for the layout): ``releases/<UTC time>-<sha>/`` per deploy, a ``current``
symlink switched atomically, ``shared/`` for ``.env`` and ``var/`` (logs, pid files, the embedded database), and
virtualenvs keyed by the target's Python and requirements.txt, built there and reused while those are unchanged.

A deploy is seven steps, in the order that leaves the running release alone until the switch:

1. **preflight and lock**: validate the target, read the work tree (``git ls-files``; a dirty tree refuses unless
   allowed), one ssh round trip gathers the target's facts, then the deploy lock (refused with its holder named; a
   holder that is provably gone is stale and taken over). The same commit already current and healthy: a no-op that
   only re-verifies health.
2. **sync**: rsync of the tracked files into a new release, unchanged files hard-linked from ``current``.
3. **provision**: links to ``shared/`` and the venv (built only when missing), ``.env`` created if missing (never
   overwritten), its key names reported against ``config/.env.example``.
4. **migrate**: ``db.setup`` + ``db.migrate`` of the new release (refuses while a migration is dirty).
5. **test**: the new release's smoke check (imports, configuration, database, migrations, pipelines) and
   ``inv test --smoke``.
6. **switch and schedule**: pause cron (the project's entries removed), let running chops processes finish (up to
   ``deploy.drain_timeout``), stop the rest (``proc.kill --all --grace``), switch ``current``, install the entries
   again from ``current``.
7. **verify**: ``proc.check`` on the target. Unhealthy: switch back, restore the previous entries, mark the release
   BAD, exit 1.

Every deploy that held the lock appends one JSON line to ``audit.log`` on the target. Remote commands are built
with :func:`shlex.quote` per argument; ``.env`` values never leave the target (only key names do).

Besides the library, ``python -m ops.deploy.apply smoke|pause`` runs on the target inside a release.
"""

from __future__ import annotations

import dataclasses
import difflib
import getpass
import hashlib
import ipaddress
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ops import ROOT
from ops.core.errors import BadInput, ChopsError, ConfigError, WorkFailed
from ops.core import pidfile

STEPS = ("preflight and lock", "sync", "provision", "migrate", "test", "switch and schedule", "verify")
TARGETS_FILE = "config/deploy.toml"
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_PATH = re.compile(r"^/[A-Za-z0-9._/+@-]+$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_PYTHON = re.compile(r"^[A-Za-z0-9._/+-]+$")

Notify = Callable[[str], None]


# --- targets ----------------------------------------------------------------------------------------------------------

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
    from ops.core.settings import environments

    text = str(environment or "")
    known = environments(root)
    if text not in known:
        raise BadInput(f"unknown environment {text!r} for the target (known: {', '.join(known)})",
                       hint=f"create config/{text}.toml, or set environment in {TARGETS_FILE}")
    return text


def read_targets(root: Path = ROOT) -> dict[str, Any]:
    """config/deploy.toml as data: ``{"defaults": {...}, "targets": {name: {...}}}`` (both may be empty)."""
    import tomllib

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
    defaults = {"user": getpass.getuser(), "port": 22, "path": None, "environment": "prod", "cron": True,
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


# --- the local tree ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """What a deploy ships: the tracked files of the work tree at a commit."""

    root: Path
    commit: str
    revision: str  # what REVISION holds: the short sha, plus -dirty-<hash> for a dirty tree
    dirty: tuple[str, ...]
    files: tuple[str, ...]
    requirements: bytes

    @property
    def short(self) -> str:
        return self.commit[:12]


def _git(root: Path, *args: str, binary: bool = False) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=not binary, timeout=60)
    except FileNotFoundError:
        raise BadInput("git is not installed; a deploy ships the files git tracks", hint="apt-get install git") from None


def read_source(root: Path = ROOT, allow_dirty: bool = False) -> Source:
    """The commit and tracked files of the work tree at ``root``. A tree with uncommitted changes to tracked files
    is refused unless ``allow_dirty`` (untracked files are never shipped)."""
    head = _git(root, "rev-parse", "--verify", "HEAD")
    if head.returncode != 0:
        raise BadInput(f"{root} is not a git checkout with a commit; a deploy ships `git ls-files` of a commit")
    commit = head.stdout.strip()
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    dirty = tuple(line[3:] for line in status.stdout.splitlines() if line.strip())
    if dirty and not allow_dirty:
        shown = ", ".join(dirty[:3]) + (f" and {len(dirty) - 3} more" if len(dirty) > 3 else "")
        raise BadInput(f"the work tree has uncommitted changes ({shown}); a deploy ships a commit",
                       hint="commit them, or pass --allow-dirty to ship the work tree as it is")
    listed = _git(root, "ls-files", "-z", "--stage", binary=True)
    files = []
    for record in listed.stdout.split(b"\0"):
        if not record:
            continue
        meta, _, name = record.partition(b"\t")
        if meta.split()[0] == b"160000":
            continue  # a submodule: not a file of this tree
        path = name.decode("utf-8", errors="surrogateescape")
        if os.path.lexists(root / path):
            files.append(path)
    revision = commit[:12]
    if dirty:
        diff = _git(root, "diff", "HEAD", "--binary", binary=True).stdout
        revision += "-dirty-" + hashlib.sha256(diff).hexdigest()[:8]
    requirements_path = root / "requirements.txt"
    requirements = requirements_path.read_bytes() if requirements_path.exists() else b""
    return Source(root=root, commit=commit, revision=revision, dirty=dirty, files=tuple(sorted(files)),
                  requirements=requirements)


def manifest(source: Source) -> dict[str, str]:
    """{path: sha256} of every regular file shipped (what ``deploy.plan`` compares with the target's current)."""
    out = {}
    for name in source.files:
        full = source.root / name
        if full.is_symlink() or not full.is_file():
            continue
        out[name] = hashlib.sha256(full.read_bytes()).hexdigest()
    return out


def release_name(source: Source, existing: Iterable[str], now: datetime | None = None) -> str:
    """``<UTC time>-<sha12>`` (``-dirty`` for a dirty tree), unique among ``existing``."""
    now = now or datetime.now(timezone.utc)
    base = f"{now:%Y%m%dT%H%M%SZ}-{source.short}" + ("-dirty" if source.dirty else "")
    taken = set(existing)
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def venv_key(python: Mapping[str, Any], requirements: bytes) -> str:
    """The virtualenv for this Python (version, implementation, machine, interpreter) and requirements.txt."""
    ident = " ".join(str(python.get(k, "")) for k in ("implementation", "version", "machine", "executable"))
    return hashlib.sha256(ident.encode() + b"\0" + requirements).hexdigest()[:16]


def project_id(path: str) -> str:
    """The cron project id of a deploy at ``path``: ``ops.pipelines.cron.project_id`` of a release there (the hash of
    ``<path>/current``), so the target's entries can be found without running its code."""
    return hashlib.sha256(f"{path}/current".encode()).hexdigest()[:10]


# --- ssh --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SshOptions:
    connect_timeout: float = 10.0
    command_timeout: float = 1800.0
    known_hosts: str = ""
    identity_file: str = ""
    accept_new_host_key: bool = False
    control_dir: str = ""
    control_persist: int = 60
    bwlimit: int = 0
    python: str = "python3"

    @classmethod
    def from_settings(cls, settings, accept_new_host_key: bool = False) -> "SshOptions":
        python = settings.get("deploy.python")
        if not _PYTHON.match(python):
            raise ConfigError(f"{settings.sources.get('deploy.python', 'config')}: deploy.python {python!r} is not a "
                              "program name or path")
        return cls(connect_timeout=settings.get("deploy.connect_timeout"),
                   command_timeout=settings.get("deploy.command_timeout"),
                   known_hosts=_expand(settings.get("deploy.known_hosts"), settings.root),
                   identity_file=_expand(settings.get("deploy.identity_file"), settings.root),
                   accept_new_host_key=accept_new_host_key or settings.get("deploy.accept_new_host_key"),
                   control_dir=control_dir(), control_persist=settings.get("deploy.control_persist"),
                   bwlimit=settings.get("deploy.bwlimit"), python=python)


def _expand(value: str, root: Path) -> str:
    if not value:
        return ""
    path = Path(os.path.expanduser(value))
    return str(path if path.is_absolute() else root / path)


def control_dir() -> str:
    """A directory of this user's own for ssh's connection-sharing sockets (short: a socket path has ~100 bytes)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    path = os.path.join(base, f"chops-ssh-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise WorkFailed(f"{path} is not a private directory of this user; refusing to put ssh sockets in it",
                         hint=f"remove it (rm -r {path}) and deploy again")
    return path


def ssh_base(target: Target, options: SshOptions) -> list[str]:
    """The ssh command line up to the destination: batch mode, connection sharing, host keys checked."""
    argv = ["ssh", "-o", "BatchMode=yes",
            "-o", "ControlMaster=auto", "-o", f"ControlPath={options.control_dir}/%C",
            "-o", f"ControlPersist={options.control_persist}",
            "-o", f"ConnectTimeout={options.connect_timeout:g}",
            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
            "-o", "StrictHostKeyChecking=" + ("accept-new" if options.accept_new_host_key else "yes")]
    if options.known_hosts:
        argv += ["-o", f"UserKnownHostsFile={options.known_hosts}"]
    if options.identity_file:
        argv += ["-i", options.identity_file, "-o", "IdentitiesOnly=yes"]
    return argv + ["-p", str(target.port)]


def quote_command(argv: Iterable[Any]) -> str:
    """One shell command line from arguments, each quoted."""
    return " ".join(shlex.quote(str(a)) for a in argv)


def in_dir(directory: str, argv: Iterable[Any], env: Mapping[str, str] | None = None) -> str:
    """``cd DIR && env K=V … ARGV`` as one quoted command line."""
    assignments = [f"{k}={v}" for k, v in (env or {}).items()]
    return f"cd {shlex.quote(directory)} && " + quote_command(["env", *assignments, *argv] if assignments else argv)


def rsync_argv(target: Target, options: SshOptions, release_dir: str, link_dest: str | None,
               dry_run: bool = False) -> list[str]:
    """rsync of the file list on stdin (NUL-separated) into ``release_dir``, hard-linking what ``link_dest`` has."""
    argv = ["rsync", "--recursive", "--links", "--perms", "--times", "--chmod=go-w", "--from0", "--files-from=-",
            "--itemize-changes", "--timeout=120", "-e", quote_command(ssh_base(target, options))]
    if link_dest:
        argv.append(f"--link-dest={link_dest}")
    if options.bwlimit:
        argv.append(f"--bwlimit={options.bwlimit}")
    if dry_run:
        argv.append("--dry-run")
    return argv + ["./", f"{target.user}@{target.rsync_host}:{release_dir}/"]


def helper_program(command: str, args: Mapping[str, Any]) -> str:
    """``ops.deploy.helper``'s source with a call of ``command`` appended: what the target's Python runs."""
    source = (Path(__file__).parent / "helper.py").read_text(encoding="utf-8")
    source = source.split('\nif __name__ == "__main__":')[0]
    return source + f"\n\nsys.exit(main({[command, json.dumps(dict(args), sort_keys=True)]!r}))\n"


class Remote:
    """Commands on one target over one shared ssh connection."""

    def __init__(self, target: Target, options: SshOptions):
        self.target, self.options = target, options
        self.connected = False

    def argv(self, command: str) -> list[str]:
        return [*ssh_base(self.target, self.options), self.target.destination, "--", command]

    def run(self, command: str, input: str | bytes | None = None, timeout: float | None = None,
            what: str = "a command") -> subprocess.CompletedProcess:
        timeout = timeout or self.options.command_timeout
        try:
            done = subprocess.run(self.argv(command), input=input, capture_output=True, timeout=timeout,
                                  text=not isinstance(input, bytes), stdin=None if input is not None else subprocess.DEVNULL)
        except FileNotFoundError:
            raise BadInput("ssh is not installed here", hint="apt-get install openssh-client") from None
        except subprocess.TimeoutExpired:
            raise WorkFailed(f"{what} on {self.target.host} did not finish within {timeout:g}s") from None
        if done.returncode == 255:
            raise ssh_failure(self.target, self.options, _text(done.stderr), preflight=not self.connected)
        self.connected = True
        return done

    def helper(self, command: str, timeout: float | None = None, **args: Any) -> dict[str, Any]:
        """Run ``ops.deploy.helper COMMAND`` on the target's Python; its JSON answer."""
        # The program and its arguments travel on stdin (``python3 -``): no command-line length limit, nothing
        # of them in the target's process list.
        program = helper_program(command, args)
        done = self.run(quote_command([self.options.python, "-"]), input=program, timeout=timeout,
                        what=f"the deploy helper ({command})")
        try:
            answer = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            err = _last_line(done.stderr) or f"exit {done.returncode}"
            if "not found" in err and self.options.python in err:
                raise WorkFailed(f"{self.options.python} is not installed on {self.target.host}; deploys need it",
                                 hint="apt-get install python3 python3-venv there, or set deploy.python") from None
            raise WorkFailed(f"the deploy helper ({command}) failed on {self.target.host}: {err}") from None
        if "error" in answer and len(answer) == 1:
            raise WorkFailed(f"the deploy helper ({command}) failed on {self.target.host}: {answer['error']}")
        return answer

    def inv(self, directory: str, environment: str, *args: str, timeout: float | None = None,
            extra_env: Mapping[str, str] | None = None, what: str = "") -> subprocess.CompletedProcess:
        """``inv ARGS`` of the release in ``directory`` (its own venv), in the target's environment."""
        env = {"CHOPS_ENV": environment, **(extra_env or {})}
        return self.run(in_dir(directory, ["./.venv/bin/inv", *args], env), timeout=timeout,
                        what=what or f"inv {' '.join(args)}")

    def python(self, directory: str, environment: str, *args: str, timeout: float | None = None,
               what: str = "") -> subprocess.CompletedProcess:
        return self.run(in_dir(directory, ["./.venv/bin/python", *args], {"CHOPS_ENV": environment}),
                        timeout=timeout, what=what or "python")

    def close(self) -> None:
        """End the shared connection (it would otherwise linger ``control_persist`` seconds)."""
        subprocess.run([*ssh_base(self.target, self.options), "-O", "exit", self.target.destination],
                       capture_output=True, timeout=10)


def _text(data: str | bytes | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def _last_line(text: str | bytes | None) -> str:
    lines = [line.strip() for line in _text(text).splitlines() if line.strip()]
    return lines[-1][:400] if lines else ""


def ssh_failure(target: Target, options: SshOptions, stderr: str, preflight: bool = True) -> ChopsError:
    """ssh's exit 255 as one line naming the fix. Before the first command got through it is bad input (exit 2:
    nothing was changed); later it is a failure of the work."""
    kind = BadInput if preflight else WorkFailed
    where = f"{target.host} port {target.port}"
    known = options.known_hosts or "~/.ssh/known_hosts"
    text = " ".join(stderr.split())
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        return kind(f"the host key of {where} has CHANGED from the one in {known}; refusing to connect",
                    hint=f"if the host was reinstalled, remove the old key: ssh-keygen -R '[{target.host}]:{target.port}' "
                         f"-f {known}")
    if "Host key verification failed" in text or "host key is known" in text:
        return kind(f"the host key of {where} is not in {known}; refusing to connect to an unknown host",
                    hint=f"check its fingerprint and add it (ssh-keyscan -p {target.port} {target.host} >> {known}), "
                         "or pass --accept-new-host-key")
    if "timed out" in text or "Connection timed out" in text:
        return kind(f"{where} did not answer within {options.connect_timeout:g}s (deploy.connect_timeout)",
                    hint="is the host up, and sshd listening on that port?")
    if "Connection refused" in text:
        return kind(f"{where} refused the connection: no ssh server listens there", hint="check --host and --port")
    if "Could not resolve hostname" in text or "Name or service not known" in text:
        return kind(f"cannot resolve the host name {target.host}", hint="check --host")
    if "No route to host" in text or "Network is unreachable" in text:
        return kind(f"{where} cannot be reached: {_last_line(stderr)}")
    if "Permission denied" in text:
        return kind(f"{target.user}@{target.host} refused our ssh key (permission denied)",
                    hint="check deploy.identity_file or your ssh agent, and that user's authorized_keys")
    return kind(f"ssh to {where} failed: {_last_line(stderr) or 'exit 255'}")


# --- facts and the lock -------------------------------------------------------------------------------------------------

def _create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def holder_record(action: str, release: str | None = None) -> dict[str, Any]:
    """Who is deploying: the lock's content."""
    from ops.core.process import command_line

    return {"id": uuid.uuid4().hex, "action": action, "user": getpass.getuser(), "host": socket.gethostname(),
            "pid": os.getpid(), "create_time": _create_time(os.getpid()), "command": command_line(),
            "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), "release": release}


def describe_holder(holder: Mapping[str, Any]) -> str:
    if not holder:
        return "nobody"
    if "unreadable" in holder:
        return "an unreadable lock file"
    what = f" ({holder.get('action', 'deploy')} of {holder['release']})" if holder.get("release") else ""
    return (f"{holder.get('user', '?')}@{holder.get('host', '?')} pid {holder.get('pid', '?')}{what} "
            f"since {holder.get('since', '?')}: {holder.get('command', '?')}")


def lock_state(holder: Mapping[str, Any] | None, stale_after: float, here: str | None = None,
               alive: Callable[[int, float | None], bool] | None = None) -> tuple[str, str]:
    """``free``, ``held`` or ``stale``, with the reason. Stale: the holder ran on this host and is gone (its pid
    dead or reused), or the lock is older than ``stale_after`` seconds. Another host's live-looking holder is held."""
    if not holder:
        return "free", "nobody holds it"
    here = here or socket.gethostname()
    alive = alive or _alive
    age = holder.get("age")
    if "unreadable" not in holder and holder.get("host") == here:
        try:
            pid = int(holder.get("pid"))
        except (TypeError, ValueError):
            pid = 0
        if pid <= 0 or not alive(pid, holder.get("create_time")):
            return "stale", f"its holder, pid {holder.get('pid')} on {here}, is gone"
    if age is not None and age > stale_after:
        return "stale", f"it is {age / 3600:.1f} h old (deploy.stale_lock_after is {stale_after / 3600:g} h)"
    return "held", describe_holder(holder)


def _alive(pid: int, create_time: float | None) -> bool:
    started = _create_time(pid)
    if started is None:
        return False
    return create_time is None or abs(started - float(create_time)) < 0.05


@dataclass
class Facts:
    """What the target says about itself (``deploy_remote facts``)."""

    raw: dict[str, Any]

    @property
    def current(self) -> str | None:
        return self.raw.get("current")

    @property
    def releases(self) -> list[dict[str, Any]]:
        return self.raw.get("releases", [])

    def release(self, name: str | None) -> dict[str, Any] | None:
        return next((r for r in self.releases if r["name"] == name), None)

    @property
    def current_revision(self) -> str | None:
        found = self.release(self.current)
        return found["revision"] if found else None

    @property
    def python(self) -> dict[str, Any]:
        return self.raw.get("python") or {}

    def venv_ready(self, key: str) -> bool:
        return any(v["key"] == key and v["complete"] for v in self.raw.get("venvs", []))


def gather(remote: Remote, tag: bool = True, audit: int = 0, manifest: bool = False,
           holder: dict[str, Any] | None = None, takeover: str | None = None) -> Facts:
    """The target's facts in one round trip; with ``holder``, the deploy lock is tried first in the same trip."""
    t = remote.target
    args: dict[str, Any] = {"path": t.path, "python": remote.options.python, "tag": project_id(t.path) if tag else None,
                            "audit": audit, "manifest": manifest}
    if holder is not None:
        args.update(holder=holder, takeover=takeover, need_crontab=t.cron)
    return Facts(remote.helper("facts", timeout=remote.options.connect_timeout + 120, **args))


def check_target(facts: Facts, target: Target, options: SshOptions) -> None:
    """Refuse (bad input, nothing changed) a target that cannot take a deploy."""
    raw = facts.raw
    where = f"{target.destination}:{target.path}"
    if not raw.get("exists") and not raw.get("parent_exists"):
        raise BadInput(f"{where}: the parent directory {os.path.dirname(target.path)} does not exist on the target",
                       hint="create it there (owned by the deploy user), or choose another --path")
    if not raw.get("writable"):
        directory = target.path if raw.get("exists") else os.path.dirname(target.path)
        raise BadInput(f"{where}: {directory} is not writable by {target.user}",
                       hint=f"chown {target.user} {directory} on the target, or choose another --path")
    if not raw.get("rsync"):
        raise BadInput(f"rsync is not installed on {target.host}", hint="apt-get install rsync there")
    python = raw.get("python") or {}
    if "error" in python:
        raise BadInput(f"{target.host}: {python['error']}", hint="install python3 and python3-venv there, or set "
                                                                 "deploy.python")
    if not python.get("venv"):
        raise BadInput(f"{target.host}: {options.python} cannot create virtualenvs (no ensurepip)",
                       hint="apt-get install python3-venv there")
    if target.cron and not (raw.get("crontab") or {}).get("available"):
        raise BadInput(f"{target.host} runs cron for this target, but the crontab command is not installed there",
                       hint=f"apt-get install cron there, or set cron = false for it in {TARGETS_FILE}")


def acquire(remote: Remote, holder: dict[str, Any], stale_after: float, options: SshOptions,
            notify: Notify) -> tuple[Facts, dict[str, Any] | None]:
    """Check the target and take the deploy lock, reading its facts in the same round trip (under the lock). A target
    that cannot take a deploy is refused before anything is created; a live holder is refused with its name; a
    stale one is taken over (and returned)."""
    facts = gather(remote, holder=holder)
    check_target(facts, remote.target, options)
    answer = facts.raw["lock_result"]
    if answer["acquired"]:
        return facts, None
    current = answer["holder"]
    state, reason = lock_state(current, stale_after)
    if state != "stale":
        raise WorkFailed(f"{remote.target.host} is being deployed by {describe_holder(current)}; nothing was changed",
                         hint=f"wait for it; if it is gone: inv deploy.unlock --host {remote.target.host}")
    facts = gather(remote, holder=holder, takeover=current.get("id"))
    if not facts.raw["lock_result"]["acquired"]:
        raise WorkFailed(f"{remote.target.host} is being deployed by "
                         f"{describe_holder(facts.raw['lock_result']['holder'])}",
                         hint="someone took the stale lock first; wait for them")
    notify(f"      took over a stale deploy lock: {reason} ({describe_holder(current)})")
    return facts, current


# --- the plan ------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """What a deploy to one target will do: plain data, computed from the source and the target's facts."""

    target: Target
    revision: str
    commit: str
    release: str | None  # the new release; None for a no-op
    current: str | None
    current_revision: str | None
    action: str  # deploy | no-op | reverify
    venv: str
    venv_ready: bool
    current_venv: str | None
    env: dict[str, Any]
    lock: dict[str, Any]
    dirty: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)  # deploy.plan only: files, migrations, cron

    @property
    def dependencies_change(self) -> bool:
        return self.current_venv != self.venv

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["target"] = self.target.as_dict()
        d["dependencies_change"] = self.dependencies_change
        return d


def env_report(target_keys: Iterable[str] | None, example: Mapping[str, bool] | None,
               current_example: Mapping[str, bool] | None) -> dict[str, Any]:
    """Key names only: ``missing`` (required by .env.example, not set on the target), ``added`` (new in this
    release's .env.example and not set), ``extra`` (set on the target, not in .env.example)."""
    keys = set(target_keys or ())
    example = dict(example or {})
    before = set(current_example or ()) if current_example is not None else None
    return {"exists": target_keys is not None, "set": len(keys),
            "missing": sorted(k for k, required in example.items() if required and k not in keys),
            "added": sorted(k for k in example if before is not None and k not in before and k not in keys),
            "extra": sorted(k for k in keys if k not in example)}


def example_keys_local(root: Path) -> dict[str, bool]:
    from ops.deploy.helper import example_keys

    return example_keys(str(root / "config" / ".env.example")) or {}


def make_plan(target: Target, source: Source, facts: Facts, stale_after: float, force: bool = False,
              now: datetime | None = None, here: str | None = None,
              alive: Callable[[int, float | None], bool] | None = None) -> Plan:
    """The plan for one target. Pure given the facts: a no-op when the same revision is current and healthy, a
    re-verification when it is current but not known healthy (a deploy died after its switch), else a new release."""
    key = venv_key(facts.python, source.requirements)
    current = facts.current
    cur = facts.release(current)
    state, reason = lock_state(facts.raw.get("lock"), stale_after, here, alive)
    if cur and cur["revision"] == source.revision and not force:
        action = "no-op" if cur.get("healthy") and state != "stale" else "reverify"
        release = None
    else:
        action, release = "deploy", release_name(source, [r["name"] for r in facts.releases], now)
    return Plan(target=target, revision=source.revision, commit=source.commit, release=release, current=current,
                current_revision=cur["revision"] if cur else None, action=action, venv=key,
                venv_ready=facts.venv_ready(key), current_venv=cur["venv"] if cur else None,
                env=env_report(facts.raw.get("env", {}).get("keys"), example_keys_local(source.root),
                               facts.raw.get("env_example_current") if current else None),
                lock={"state": state, "reason": reason, "holder": facts.raw.get("lock")}, dirty=source.dirty)


def file_changes(local: Mapping[str, str], remote: Mapping[str, str] | None) -> dict[str, list[str]]:
    """Which files a deploy would add, change and remove compared with the target's current release. Pure."""
    remote = dict(remote or {})
    return {"added": sorted(set(local) - set(remote)),
            "changed": sorted(p for p in local if p in remote and local[p] != remote[p]),
            "removed": sorted(set(remote) - set(local))}


def migration_ids(root: Path, settings) -> list[str]:
    directory = root / settings.get("migrations.dir")
    return sorted(p.stem for p in directory.glob("*.sql") if not p.stem.endswith(".rollback"))


def pending_migrations(local_ids: Iterable[str], status_rows: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The migrations this tree has that the target's database has not applied, and any dirty one. Pure."""
    rows = status_rows or []
    applied = {r["id"] for r in rows if r.get("state") in ("applied", "drifted")}
    return {"pending": [i for i in local_ids if i not in applied],
            "dirty": sorted(r["id"] for r in rows if r.get("state") == "dirty")}


def source_settings(root: Path, target: Target):
    """The settings of the tree at ``root`` in the target's environment, without this machine's .env."""
    from ops.core.settings import load_settings

    return load_settings(root, environ={"CHOPS_ENV": target.environment,
                                        "CHOPS_ENV_FILE": str(root / ".no-such-env-file")})


def target_settings(local, target: Target):
    """``local`` (see :func:`source_settings`) as the target's ``current`` would see them (paths under it), for
    rendering its cron entries here. Values set only in the target's .env are not known here."""
    current = Path(target.path) / "current"
    return dataclasses.replace(local, root=current, env_file=current / ".env")


def cron_plan(root: Path, target: Target, crontab_text: str | None):
    """The crontab change the pipelines of the tree at ``root`` would make on the target (``ops.pipelines.cron.Plan``)."""
    from crontab import CronTab

    from ops.pipelines import cron
    from ops.pipelines.definition import load_pipelines

    local = source_settings(root, target)
    there = target_settings(local, target)
    tab = CronTab(tab=crontab_text or "")
    if not target.cron:
        return cron.unschedule(there, {}, all=True, crontab=tab)
    return cron.plan(there, load_pipelines(local), all=True, crontab=tab,
                     bin_dir=Path(target.path) / "current" / ".venv" / "bin")


def plan_details(settings, remote: Remote, plan: Plan, source: Source, facts: Facts) -> dict[str, Any]:
    """The rest of ``deploy.plan``: file changes, dependencies, pending migrations and the cron diff."""
    details: dict[str, Any] = {"files": file_changes(manifest(source), facts.raw.get("manifest")),
                               "dependencies": {"venv": plan.venv, "current_venv": plan.current_venv,
                                                "change": plan.dependencies_change,
                                                "venv_on_target": plan.venv_ready}}
    local_ids = migration_ids(source.root, source_settings(source.root, plan.target))
    if plan.current:
        done = remote.inv(f"{plan.target.path}/current", plan.target.environment, "db.status", "--json",
                          extra_env={"CHOPS_CLICKHOUSE__LOCK_TIMEOUT": "10"}, timeout=120, what="db.status")
        try:
            rows = json.loads(done.stdout)
            details["migrations"] = pending_migrations(local_ids, rows)
        except ValueError:
            details["migrations"] = {"pending": None, "dirty": [], "error": _last_line(done.stderr) or "unknown"}
    else:
        details["migrations"] = {"pending": local_ids, "dirty": [], "note": "no release on the target yet"}
    try:
        lines = (facts.raw.get("crontab") or {}).get("lines") or []
        cp = cron_plan(source.root, plan.target, "".join(line + "\n" for line in lines))
        details["cron"] = {"summary": cp.summary(), "diff": cp.diff(), "changed": cp.changed,
                           "runs_cron": plan.target.cron}
    except ChopsError as exc:
        details["cron"] = {"error": exc.line(), "runs_cron": plan.target.cron}
    from ops.deploy.helper import prune_plan

    found = list(facts.releases)
    if plan.release:
        found.append({"name": plan.release, "complete": True, "healthy": "yes", "bad": None, "venv": plan.venv,
                      "revision": plan.revision})
    details["prune"] = prune_plan(sorted(found, key=lambda r: r["name"]), plan.release or plan.current,
                                  settings.get("deploy.keep_releases"))
    return details


# --- apply ----------------------------------------------------------------------------------------------------------------

@dataclass
class Step:
    number: int
    name: str
    status: str = "pending"  # ok | skipped | failed
    seconds: float = 0.0
    detail: str = ""


class Steps:
    """Step n of N, each timed, one line per step on stderr."""

    def __init__(self, names: Iterable[str], notify: Notify, prefix: str = ""):
        self.items = [Step(i + 1, n) for i, n in enumerate(names)]
        self.notify, self.prefix = notify, prefix
        self.started = time.monotonic()

    def __getitem__(self, name: str) -> Step:
        return next(s for s in self.items if s.name == name)

    def run(self, name: str, body: Callable[[], str]) -> str:
        step = self[name]
        began = time.monotonic()
        try:
            step.detail = body() or ""
            step.status = "ok"
            return step.detail
        except BaseException as exc:
            step.status = "failed"
            step.detail = exc.line() if isinstance(exc, ChopsError) else (str(exc) or type(exc).__name__)
            raise
        finally:
            step.seconds = round(time.monotonic() - began, 2)
            mark = "" if step.status == "ok" else " FAILED"
            if not (step.status == "failed" and isinstance(sys.exc_info()[1], BadInput)):  # its one line says it all
                self.notify(f"{self.prefix}[{step.number}/{len(self.items)}] {step.name}{mark}: {step.detail} "
                            f"({step.seconds:.1f}s)")

    def skip(self, names: Iterable[str], why: str) -> None:
        names = list(names)
        for name in names:
            self[name].status, self[name].detail = "skipped", why
        if names:
            first, last = self[names[0]].number, self[names[-1]].number
            span = f"{first}-{last}" if last != first else f"{first}"
            self.notify(f"{self.prefix}[{span}/{len(self.items)}] {', '.join(names)}: skipped, {why}")

    def as_list(self) -> list[dict[str, Any]]:
        return [{"step": s.name, "status": s.status, "seconds": s.seconds, "detail": s.detail} for s in self.items]

    @property
    def seconds(self) -> float:
        return round(time.monotonic() - self.started, 2)


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def _audit(action: str, plan_or_target, result: str, steps: Steps | None, frm: str | None, to: str | None,
           revision: str | None = None, error: str | None = None, note: str | None = None) -> dict[str, Any]:
    target = plan_or_target.target if isinstance(plan_or_target, Plan) else plan_or_target
    return {"at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), "who": who(), "action": action,
            "host": target.host, "from": frm, "to": to, "revision": revision, "result": result,
            "seconds": steps.seconds if steps else None,
            "steps": [f"{s.name}:{s.status}:{s.seconds:g}" for s in steps.items] if steps else [],
            "error": error, "note": note}


def _need_ok(done: subprocess.CompletedProcess, what: str, host: str) -> subprocess.CompletedProcess:
    if done.returncode != 0:
        raise WorkFailed(f"{what} failed on {host}: {_last_line(done.stderr) or _last_line(done.stdout) or f'exit {done.returncode}'}")
    return done


def _json_out(done: subprocess.CompletedProcess) -> Any:
    """The JSON a command printed on stdout (the last JSON document when it printed several)."""
    text = _text(done.stdout).strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    decoder, at, last = json.JSONDecoder(), 0, None
    while at < len(text):
        start = min((i for i in (text.find("{", at), text.find("[", at)) if i >= 0), default=-1)
        if start < 0:
            break
        try:
            last, at = decoder.raw_decode(text, start)
        except ValueError:
            at = start + 1
    return last


def health(remote: Remote, target: Target) -> dict[str, Any]:
    """``proc.check --json`` of ``current`` on the target: the verdict, and the failed checks' reasons."""
    done = remote.inv(f"{target.path}/current", target.environment, "proc.check", "--json", timeout=600,
                      what="proc.check")
    verdict = _json_out(done) if done.stdout else None
    if not isinstance(verdict, dict) or "healthy" not in verdict:
        return {"healthy": False, "failed": [f"proc.check did not run: {_last_line(done.stderr) or done.returncode}"],
                "summary": "proc.check did not run", "checks": []}
    failed = [f"{c['name']}: {c['reason']}" for c in verdict.get("checks", []) if c.get("status") == "fail"]
    healthy = bool(verdict["healthy"]) and done.returncode == 0
    summary = (f"{'healthy' if healthy else 'UNHEALTHY'}: {verdict.get('passed', 0)} passed, "
               f"{verdict.get('warnings', 0)} warning(s), {verdict.get('failed', 0)} failed")
    return {"healthy": healthy, "failed": failed, "summary": summary, "checks": verdict.get("checks", [])}


@dataclass
class Outcome:
    target: Target
    action: str
    result: str  # deployed | no-op | reverified | failed | rolled back
    release: str | None
    previous: str | None
    steps: list[dict[str, Any]]
    seconds: float
    health: dict[str, Any] | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["target"] = self.target.as_dict()
        return d


class Deployer:
    """Applies a plan to one target. ``deploy()`` returns an Outcome or raises (after cleaning up) with the lock
    released and an audit line written."""

    def __init__(self, settings, target: Target, source: Source, options: SshOptions, notify: Notify,
                 force: bool = False, prefix: str = ""):
        self.settings, self.target, self.source, self.options = settings, target, source, options
        self.notify, self.force = notify, force
        self.remote = Remote(target, options)
        self.steps = Steps(STEPS, notify, prefix)
        self.holder: dict[str, Any] | None = None
        self.plan: Plan | None = None
        self.facts: Facts | None = None
        self.notes: list[str] = []
        self.paused = False  # the project's cron entries were removed and not yet installed again
        self.switched = False
        self.cron_touched = False  # entries were removed or replaced: a rollback installs the previous ones again
        self.mark_bad_on_abort = True  # a rollback never marks the release it rolls back to
        self.action = "deploy"

    # the seven steps ------------------------------------------------------------------------------------------------

    def preflight(self) -> str:
        t = self.target
        self.holder = holder_record("deploy")
        self.facts, took = acquire(self.remote, self.holder, self.settings.get("deploy.stale_lock_after"),
                                   self.options, self.notify)
        if took is not None:
            self.notes.append(f"took over the stale lock of {describe_holder(took)}")
        self.plan = make_plan(t, self.source, self.facts, float("inf"), force=self.force)
        if took is not None and self.plan.action == "no-op":
            self.plan = dataclasses.replace(self.plan, action="reverify")
        p = self.plan
        if p.release:  # say in the lock what is being deployed (the holder is us: replaced in place)
            self.holder["release"] = p.release
            self.remote.helper("lock", path=t.path, holder=self.holder, takeover=self.holder["id"])
        if p.action == "deploy":
            deps = "dependencies unchanged" if not p.dependencies_change else (
                "new dependencies: venv ready" if p.venv_ready else "new dependencies: venv to build")
            return (f"{t.label()}: {p.current or 'no release yet'} -> {p.release} "
                    f"({p.revision}{', dirty tree' if p.dirty else ''}); {deps}")
        return f"{t.label()}: {p.revision} is already current ({p.current})"

    def sync(self) -> str:
        p, t = self.plan, self.target
        release_dir = f"{t.path}/releases/{p.release}"
        link_dest = f"{t.path}/releases/{p.current}/" if p.current else None
        files = b"\0".join(f.encode("utf-8", errors="surrogateescape") for f in self.source.files) + b"\0"
        argv = rsync_argv(t, self.options, release_dir, link_dest)
        try:
            done = subprocess.run(argv, cwd=self.source.root, input=files, capture_output=True,
                                  timeout=self.options.command_timeout)
        except FileNotFoundError:
            raise WorkFailed("rsync is not installed here", hint="apt-get install rsync") from None
        except subprocess.TimeoutExpired:
            raise WorkFailed(f"rsync to {t.host} did not finish within {self.options.command_timeout:g}s") from None
        if done.returncode != 0:
            raise WorkFailed(f"rsync to {t.host} failed (exit {done.returncode}): {_last_line(done.stderr)}")
        sent = sum(1 for line in _text(done.stdout).splitlines() if line[:2] in (">f", "<f"))
        total = len(self.source.files)
        linked = f", {total - sent} hard-linked from {p.current}" if p.current else ""
        return f"{total} files: {sent} sent{linked}"

    def provision(self) -> str:
        p, t = self.plan, self.target
        answer = self.remote.helper("prepare", path=t.path, release=p.release, revision=p.revision, venv=p.venv,
                                    files=list(self.source.files))
        parts = []
        if answer["venv_ready"]:
            parts.append(f"venv {p.venv} reused")
        else:
            self.notify(f"{self.steps.prefix}      building the virtualenv {p.venv} on {t.host} "
                        "(python -m venv + pip install -r requirements.txt; a few minutes at most)")
            built = self.remote.helper("venv", timeout=self.options.command_timeout, path=t.path, venv=p.venv,
                                       release=p.release, python=self.options.python)
            if built.get("failed"):
                raise WorkFailed(f"building the virtualenv on {t.host} failed (exit {built.get('exit')}): "
                                 f"{' / '.join(built.get('tail') or [])}", hint=f"the whole log: {built.get('log')}")
            parts.append(f"venv {p.venv} built in {built['seconds']:.0f}s")
        env = env_report(answer.get("env_keys"), answer.get("example"), self.facts.raw.get("env_example_current")
                         if p.current else None)
        self.plan = dataclasses.replace(p, env=env)
        bits = [f"{env['set']} key(s) set"]
        if answer.get("env_created"):
            bits.append("created empty (mode 0600)")
        if answer.get("env_mode_fixed"):
            bits.append(f"mode {answer['env_mode_fixed']} -> 0600")
        if env["missing"]:
            bits.append("MISSING required: " + ", ".join(env["missing"]))
            self.notes.append(f"{t.host}: .env lacks required keys {', '.join(env['missing'])}")
        if env["added"]:
            bits.append("new in .env.example: " + ", ".join(env["added"]))
        if env["extra"]:
            bits.append("not in .env.example: " + ", ".join(env["extra"]))
        parts.append("shared/.env: " + "; ".join(bits))
        return "; ".join(parts)

    def release_dir(self) -> str:
        return f"{self.target.path}/releases/{self.plan.release}"

    def migrate(self) -> str:
        t = self.target
        _need_ok(self.remote.inv(self.release_dir(), t.environment, "db.setup", "--json", what="db.setup"),
                 "db.setup", t.host)
        done = _need_ok(self.remote.inv(self.release_dir(), t.environment, "db.migrate", "--json", what="db.migrate"),
                        "db.migrate", t.host)
        out = _json_out(done)
        applied = out.get("applied") if isinstance(out, dict) else None
        if isinstance(applied, list):
            return f"{len(applied)} migration(s) applied" + (f": {', '.join(map(str, applied))}" if applied else "")
        return _last_line(done.stderr) or "migrations up to date"

    def test(self) -> str:
        t = self.target
        done = _need_ok(self.remote.python(self.release_dir(), t.environment, "-m", "ops.deploy.apply", "smoke",
                                           what="the smoke check"), "the smoke check", t.host)
        smoke = _json_out(done) or []
        tests = _need_ok(self.remote.inv(self.release_dir(), t.environment, "test", "--smoke", what="inv test --smoke"),
                         "inv test --smoke", t.host)
        summary = next((line for line in reversed(_text(tests.stdout).splitlines()) if " passed" in line), "passed")
        return f"{len(smoke)} smoke checks passed; inv test --smoke: {summary.strip()}"

    def pause(self, directory: str) -> str:
        """Remove the project's cron entries and let running chops processes finish; stop the rest."""
        t = self.target
        timeout = self.settings.get("deploy.drain_timeout")
        done = _need_ok(self.remote.python(directory, t.environment, "-m", "ops.deploy.apply", "pause", str(timeout),
                                           "1" if (self.facts.raw.get("crontab") or {}).get("available") else "0",
                                           timeout=timeout + 120, what="pausing cron"), "pausing cron", t.host)
        self.paused = self.cron_touched = True
        answer = _json_out(done) or {}
        words = [f"cron paused ({answer.get('unscheduled', 0)} entries removed)"]
        running = answer.get("running") or []
        if answer.get("waited"):
            words.append(f"waited {answer['waited']:.0f}s for running chops processes")
        if running:
            grace = self.settings.get("deploy.kill_grace")
            self.notify(f"{self.steps.prefix}      {len(running)} chops process(es) still running after "
                        f"{timeout}s: proc.kill --all --grace {grace}")
            _need_ok(self.remote.inv(directory, t.environment, "proc.kill", "--all", "--grace", str(grace),
                                     what="proc.kill"), "proc.kill", t.host)
            words.append(f"stopped {len(running)} with proc.kill")
        return ", ".join(words)

    def schedule(self) -> str:
        """Install the entries of ``current`` (or remove them all for a target that does not run cron)."""
        t = self.target
        if not (self.facts.raw.get("crontab") or {}).get("available"):
            return "no crontab on the target"
        task = "pipeline.schedule" if t.cron else "pipeline.unschedule"
        done = _need_ok(self.remote.inv(f"{t.path}/current", t.environment, task, "--all", "--json", what=task),
                        task, t.host)
        self.paused = False
        out = _json_out(done) or {}
        return f"cron: {out.get('summary', 'done')}" if t.cron else "cron: this target runs no cron entries"

    def switch_and_schedule(self) -> str:
        t, p = self.target, self.plan
        paused = self.pause(self.release_dir())
        answer = self.remote.helper("switch", path=t.path, release=p.release)
        if not answer.get("switched"):
            raise WorkFailed(f"switching current on {t.host} failed: {answer.get('error')}")
        self.switched = True
        return f"{paused}; current -> {p.release}; {self.schedule()}"

    def verify(self) -> dict[str, Any]:
        result = health(self.remote, self.target)
        self.steps["verify"].detail = result["summary"]
        if not result["healthy"]:
            raise Unhealthy(result)
        return result

    # the whole --------------------------------------------------------------------------------------------------------

    def deploy(self) -> Outcome:

        t = self.target
        pidfile.working(self.settings, "deploy", f"{t.host} (preflight)")
        try:
            self.steps.run(STEPS[0], self.preflight)
        except BaseException:
            self._release_quietly(None, "failed")
            raise
        p = self.plan
        pidfile.working(self.settings, "deploy", f"{t.host} {p.release or p.current}")
        if p.action in ("no-op", "reverify"):
            return self._verify_only()
        try:
            self.steps.run("sync", self.sync)
            self.steps.run("provision", self.provision)
            self.steps.run("migrate", self.migrate)
            self.steps.run("test", self.test)
            self.steps.run("switch and schedule", self.switch_and_schedule)
            verdict = self._run_verify()
        except Unhealthy as bad:
            return self._roll_back(bad.result)
        except BaseException as exc:
            self._abort(exc)
            raise
        out = self.remote.helper("finish", path=t.path, id=self.holder["id"],
                                 marks=[{"release": p.release, "status": "healthy"}],
                                 keep=self.settings.get("deploy.keep_releases"),
                                 audit=_audit("deploy", p, "ok", self.steps, p.current, p.release, p.revision,
                                              note="; ".join(self.notes) or None))
        pruned = out.get("pruned", {})
        if pruned.get("releases") or pruned.get("venvs"):
            self.notify(f"{self.steps.prefix}      removed old releases: {', '.join(pruned['releases']) or 'none'}; "
                        f"old venvs: {', '.join(pruned['venvs']) or 'none'}")
        return Outcome(t, "deploy", "deployed", p.release, p.current, self.steps.as_list(), self.steps.seconds,
                       verdict, notes=self.notes)

    def _run_verify(self) -> dict[str, Any]:
        holder: list[dict[str, Any]] = []
        try:
            self.steps.run("verify", lambda: holder.append(self.verify()) or self.steps["verify"].detail)
        except Unhealthy:
            raise
        return holder[0]

    def _verify_only(self) -> Outcome:
        p, t = self.plan, self.target
        why = f"{p.revision} is already current" if p.action == "no-op" else \
            f"{p.revision} is current but was not verified healthy"
        skipped = list(STEPS[1:6]) if p.action == "no-op" else list(STEPS[1:5])
        self.steps.skip(skipped, why)
        try:
            if p.action == "reverify":
                self.steps.run("switch and schedule", lambda: "current already -> " + p.current + "; " + self.schedule())
            verdict = self._run_verify()
        except Unhealthy as bad:
            self.remote.helper("finish", path=t.path, id=self.holder["id"],
                               audit=_audit("deploy", p, "unhealthy", self.steps, p.current, p.current, p.revision,
                                            error="; ".join(bad.result["failed"])))
            raise WorkFailed(f"{t.host}: {p.current} is current and UNHEALTHY: {'; '.join(bad.result['failed'])}",
                             hint=f"inv deploy.status --host {t.host}; inv deploy.rollback --host {t.host}") from None
        except BaseException as exc:
            self._release_quietly(self.steps.as_list(), "failed", error=_error_line(exc))
            raise
        result = "no-op" if p.action == "no-op" else "reverified"
        self.remote.helper("finish", path=t.path, id=self.holder["id"],
                           marks=[{"release": p.current, "status": "healthy"}],
                           keep=self.settings.get("deploy.keep_releases"),
                           audit=_audit("deploy", p, result, self.steps, p.current, p.current, p.revision,
                                        note="; ".join(self.notes) or None))
        return Outcome(t, "deploy", result, p.current, p.current, self.steps.as_list(), self.steps.seconds, verdict,
                       notes=self.notes)

    def _roll_back(self, verdict: dict[str, Any]) -> Outcome:
        """The new release is unhealthy after the switch: back to the previous one, its cron entries again, the new
        one marked BAD. Raises WorkFailed (exit 1) once done."""
        p, t = self.plan, self.target
        reason = "; ".join(verdict["failed"]) or verdict["summary"]
        self.notify(f"{self.steps.prefix}      {p.release} is unhealthy: {reason}")
        self.notify(f"{self.steps.prefix}      rolling back to {p.current or 'no release'}")
        restored = self._restore()
        self.remote.helper("finish", path=t.path, id=self.holder["id"],
                           marks=[{"release": p.release, "status": "bad", "reason": f"failed its health check: {reason}"}],
                           keep=self.settings.get("deploy.keep_releases"),
                           audit=_audit("deploy", p, "rolled back", self.steps, p.current, p.release, p.revision,
                                        error=f"unhealthy: {reason}", note=restored))
        raise WorkFailed(f"{t.host}: {p.release} failed its health check ({reason}); rolled back: {restored}",
                         hint=f"the release is marked BAD; inv deploy.status --host {t.host}")

    def _restore(self) -> str:
        """Switch back to the previous release (none: no current) and put its cron entries back."""
        p, t = self.plan, self.target
        done = []
        if self.switched:
            if p.current is None and (self.facts.raw.get("crontab") or {}).get("available"):
                # no previous release: remove the entries while current still names this one (their project id)
                self.remote.inv(f"{t.path}/current", t.environment, "pipeline.unschedule", "--all", what="unschedule")
                self.paused = False
            answer = self.remote.helper("switch", path=t.path, release=p.current)
            self.switched = False
            done.append(f"current -> {answer.get('to') or 'none (there was no release before)'}")
        if self.cron_touched and p.current:
            try:
                done.append(self.schedule().replace("cron:", "cron restored:"))
            except ChopsError as exc:
                done.append(f"cron NOT restored ({exc.line()}): run inv pipeline.schedule --all in {t.path}/current")
        elif p.current is None:
            done.append("no cron entries (there was no release before)")
        return "; ".join(done) or "nothing to undo"

    def _abort(self, exc: BaseException) -> None:
        """A step failed or was interrupted before the health check: undo what was done, mark the release BAD,
        audit, unlock. Best effort: the original error is what the user sees."""
        p, t = self.plan, self.target
        error = _error_line(exc)
        restored = None
        try:
            if self.switched or self.cron_touched:
                restored = self._restore()
        except BaseException as again:  # noqa: BLE001 - reported, the original error wins
            restored = f"could not restore: {_error_line(again)}"
        self.notify(f"{self.steps.prefix}      deploy of {p.release} stopped: {error}"
                    + (f"; {restored}" if restored else "; current was not touched"))
        try:
            self.remote.helper("finish", path=t.path, id=self.holder["id"],
                               marks=[{"release": p.release, "status": "bad", "reason": error}]
                               if p.release and self.mark_bad_on_abort else [],
                               keep=self.settings.get("deploy.keep_releases"),
                               audit=_audit(self.action, p, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                                            self.steps, p.current, p.release, p.revision, error=error, note=restored))
        except BaseException:  # noqa: BLE001
            self.notify(f"{self.steps.prefix}      could not release the deploy lock on {t.host}: "
                        f"run inv deploy.unlock --host {t.host}")

    def _release_quietly(self, steps, result: str, error: str | None = None) -> None:
        if not self.holder or not self.remote.connected:
            return
        try:
            self.remote.helper("unlock", path=self.target.path, id=self.holder["id"])
        except BaseException:  # noqa: BLE001
            pass


class Unhealthy(Exception):
    def __init__(self, result: dict[str, Any]):
        super().__init__(result["summary"])
        self.result = result


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, ChopsError):
        return exc.line()
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``inv proc.kill`` of a deploy): cleaned up like Ctrl-C: cron restored, release marked, lock freed."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def deploy(settings, targets: list[Target], source: Source, options: SshOptions, notify: Notify,
           force: bool = False) -> list[Outcome]:
    """Deploy to each target in turn; stop at the first that fails (its error says what was deployed before)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return _deploy_all(settings, targets, source, options, notify, force)
        finally:
            signal.signal(signal.SIGTERM, previous)
    return _deploy_all(settings, targets, source, options, notify, force)


def _deploy_all(settings, targets: list[Target], source: Source, options: SshOptions, notify: Notify,
                force: bool) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for i, target in enumerate(targets):
        prefix = f"{target.host}: " if len(targets) > 1 else ""
        try:
            outcome = Deployer(settings, target, source, options, notify, force, prefix).deploy()
        except ChopsError as exc:
            if outcomes or i + 1 < len(targets):
                done = ", ".join(o.target.host for o in outcomes) or "none"
                rest = ", ".join(t.host for t in targets[i + 1:]) or "none"
                exc.message += f" [deployed before it: {done}; not attempted: {rest}]"
            raise
        outcomes.append(outcome)
    return outcomes


def plan(settings, target: Target, source: Source, options: SshOptions, force: bool = False) -> Plan:
    """Everything a deploy would do to ``target``, changing nothing."""
    remote = Remote(target, options)
    facts = gather(remote, manifest=True)
    check_target(facts, target, options)
    the_plan = make_plan(target, source, facts, settings.get("deploy.stale_lock_after"), force=force)
    return dataclasses.replace(the_plan, details=plan_details(settings, remote, the_plan, source, facts))


# --- rollback, status, unlock ---------------------------------------------------------------------------------------------

def choose_rollback(facts: Facts, to: str | None) -> dict[str, Any]:
    """The release to roll back to: ``to``, or the newest healthy release before ``current`` (else the newest
    complete one that is not BAD). Pure given the facts."""
    current = facts.current
    if to:
        found = facts.release(to)
        if found is None:
            names = [r["name"] for r in facts.releases]
            close = difflib.get_close_matches(to, names, n=3, cutoff=0.5)
            raise BadInput(f"no release {to!r} on the target",
                           hint=f"did you mean {', '.join(close)}?" if close else f"releases: {', '.join(names) or 'none'}")
        if not found["complete"]:
            raise BadInput(f"release {to} is incomplete (its sync never finished); it cannot be current")
        if to == current:
            raise BadInput(f"release {to} is already current")
        return found
    if current is None:
        raise BadInput("the target has no current release to roll back from")
    older = [r for r in facts.releases if r["name"] < current and r["complete"] and not r["bad"]]
    healthy = [r for r in older if r["healthy"]]
    if not older:
        raise BadInput(f"there is no earlier release to roll back to (current: {current})",
                       hint="inv deploy.status shows the releases")
    return (healthy or older)[-1]


def rollback(settings, target: Target, options: SshOptions, notify: Notify, to: str | None = None) -> Outcome:
    """Make an earlier release current again: pause cron, switch, schedule from it, verify. Unhealthy: switch back."""

    remote = Remote(target, options)
    steps = Steps(("preflight and lock", "switch and schedule", "verify"), notify)
    state: dict[str, Any] = {}

    def preflight() -> str:
        facts = gather(remote)
        if not facts.raw.get("exists") or not facts.releases:
            raise BadInput(f"nothing is deployed at {target.destination}:{target.path}")
        choose_rollback(facts, to)  # bad input is refused before the lock
        state["holder"] = holder_record("rollback")
        facts, took = acquire(remote, state["holder"], settings.get("deploy.stale_lock_after"), options, notify)
        chosen = choose_rollback(facts, to)
        state.update(facts=facts, to=chosen, took=took)
        if chosen.get("bad"):
            notify(f"      note: {chosen['name']} was marked BAD: {chosen['bad']}")
        pidfile.working(settings, "deploy", f"{target.host} rollback to {chosen['name']}")
        return f"{target.label()}: current {facts.current} -> {chosen['name']} ({chosen['revision']})"

    try:
        steps.run("preflight and lock", preflight)
    except BaseException:
        if "holder" in state and remote.connected:
            try:
                remote.helper("unlock", path=target.path, id=state["holder"]["id"])
            except BaseException:  # noqa: BLE001
                pass
        raise
    facts, chosen = state["facts"], state["to"]
    fake_source = Source(ROOT, chosen["revision"] or "", chosen["revision"] or "", (), (), b"")
    d = Deployer(settings, target, fake_source, options, notify)
    d.remote, d.facts, d.holder, d.steps = remote, facts, state["holder"], steps
    d.mark_bad_on_abort, d.action = False, "rollback"
    d.plan = Plan(target, chosen["revision"], chosen["revision"], chosen["name"], facts.current,
                  facts.current_revision, "rollback", chosen["venv"] or "", True, None, {}, {})

    def switch() -> str:
        paused = d.pause(f"{target.path}/releases/{chosen['name']}")
        answer = remote.helper("switch", path=target.path, release=chosen["name"])
        if not answer.get("switched"):
            raise WorkFailed(f"switching current on {target.host} failed: {answer.get('error')}")
        d.switched = True
        return f"{paused}; current -> {chosen['name']}; {d.schedule()}"

    try:
        steps.run("switch and schedule", switch)
        verdict = d._run_verify()
    except Unhealthy as bad:
        reason = "; ".join(bad.result["failed"]) or bad.result["summary"]
        restored = d._restore()
        remote.helper("finish", path=target.path, id=d.holder["id"],
                      audit=_audit("rollback", target, "failed", steps, facts.current, chosen["name"],
                                   chosen["revision"], error=f"unhealthy: {reason}", note=restored))
        raise WorkFailed(f"{target.host}: {chosen['name']} is unhealthy ({reason}); switched back: {restored}") from None
    except BaseException as exc:
        d._abort(exc)
        raise
    remote.helper("finish", path=target.path, id=d.holder["id"],
                  marks=[{"release": chosen["name"], "status": "healthy"}],
                  audit=_audit("rollback", target, "ok", steps, facts.current, chosen["name"], chosen["revision"]))
    return Outcome(target, "rollback", "rolled back", chosen["name"], facts.current, steps.as_list(), steps.seconds,
                   verdict)


def status(settings, target: Target, options: SshOptions, audit: int = 10, with_health: bool = True) -> dict[str, Any]:
    """Releases, the lock, the last deploys from the audit log and the health of ``current``. Changes nothing."""
    remote = Remote(target, options)
    facts = gather(remote, audit=audit)
    state, reason = lock_state(facts.raw.get("lock"), settings.get("deploy.stale_lock_after"))
    out = {"target": target.as_dict(), "current": facts.current, "current_revision": facts.current_revision,
           "releases": facts.releases, "lock": {"state": state, "reason": reason, "holder": facts.raw.get("lock")},
           "audit": facts.raw.get("audit", []), "cron_entries": len((facts.raw.get("crontab") or {}).get("lines", [])),
           "health": None}
    if with_health and facts.current:
        out["health"] = health(remote, target)
    return out


def unlock(settings, target: Target, options: SshOptions, force: bool = False) -> dict[str, Any]:
    """Remove the deploy lock. A holder that is provably alive (this host, its pid running) needs ``force``."""
    remote = Remote(target, options)
    facts = gather(remote, tag=False)
    holder = facts.raw.get("lock")
    if not holder:
        return {"released": False, "holder": None, "state": "free"}
    state, reason = lock_state(holder, settings.get("deploy.stale_lock_after"))
    if state == "held" and holder.get("host") == socket.gethostname() and not force:
        raise WorkFailed(f"the deploy lock on {target.host} is held by a running deploy: {reason}",
                         hint="wait for it, stop it, or pass --force")
    answer = remote.helper("unlock", path=target.path, id=holder.get("id"), force=force,
                           audit=_audit("unlock", target, "ok", None, None, None,
                                        note=f"removed the lock of {describe_holder(holder)} ({state}: {reason})"))
    if not answer["released"]:
        raise WorkFailed(f"the deploy lock on {target.host} changed meanwhile: now {describe_holder(answer['holder'])}",
                         hint="run inv deploy.status and decide again")
    return {"released": True, "holder": holder, "state": state, "reason": reason}


# --- on the target, inside a release: python -m ops.deploy.apply smoke|pause ---------------------------------------------------

def smoke(settings) -> list[dict[str, Any]]:
    """The quick check of a new release before the switch: every ops module imports, the configuration loads,
    the database answers, every migration of this release is applied, every pipeline loads."""
    import importlib
    import pkgutil

    import ops
    from ops.runtime import proc
    from ops.migrations.migrator import Migrations
    from ops.pipelines.definition import load_pipelines

    out = []

    def check(name: str, body: Callable[[], str]) -> None:
        try:
            out.append({"check": name, "ok": True, "detail": body()})
        except Exception as exc:  # noqa: BLE001 - each failure is reported by name
            out.append({"check": name, "ok": False, "detail": _error_line(exc)})

    def imports() -> str:
        names = [m.name for m in pkgutil.walk_packages(ops.__path__, "ops.")]
        for name in names:
            importlib.import_module(name)
        return f"{len(names)} modules"

    check("imports", imports)
    check("configuration", lambda: f"environment {settings.env}, {len(settings.values)} keys")
    db_holder: list = []

    def database() -> str:
        db = proc.connect(settings)
        db_holder.append(db)
        return f"reachable: {db.scalar('SELECT version()')}"

    check("database", database)
    if db_holder:
        def migrations() -> str:
            rows = Migrations(settings, db_holder[0]).status()
            off = [f"{r['id']} {r['state']}" for r in rows if r["state"] != "applied"]
            if off:
                raise WorkFailed("not applied: " + ", ".join(off))
            return f"all {len(rows)} applied"

        check("migrations", migrations)
        db_holder[0].close()

    def pipelines() -> str:
        registry = load_pipelines(settings)
        if registry.errors:
            raise WorkFailed("; ".join(sorted(registry.errors.values())))
        return f"{len(registry.pipelines)} pipelines load"

    check("pipelines", pipelines)
    return out


def pause(settings, timeout: float, unschedule: bool, poll: float = 0.5) -> dict[str, Any]:
    """Remove this project's cron entries, then wait up to ``timeout`` seconds for running chops processes to end.
    Returns how many entries were removed and which processes still run."""
    from ops.pipelines import cron
    from ops.runtime import proc

    removed = 0
    if unschedule:
        cron.mark_paused(settings, by="a deploy")  # before the entries go: a deploy killed now is still seen
        p = cron.unschedule(settings, {}, all=True)
        cron.apply(p)
        removed = len(p.of("remove"))
    started = time.monotonic()
    while True:
        running = [x.as_dict() for x in proc.processes(settings) if x.state == "running" and x.pid != os.getpid()]
        if not running or time.monotonic() - started >= timeout:
            break
        time.sleep(poll)
    return {"unscheduled": removed, "running": running, "waited": round(time.monotonic() - started, 1)}


def _main(argv: list[str]) -> int:
    from ops.core.settings import load_settings

    try:
        settings = load_settings()
        if argv[:1] == ["smoke"]:
            results = smoke(settings)
            print(json.dumps(results))
            failed = [f"{r['check']}: {r['detail']}" for r in results if not r["ok"]]
            if failed:
                print("smoke check failed: " + "; ".join(failed), file=sys.stderr)
                return 1
            return 0
        if argv[:1] == ["pause"] and len(argv) == 3:
            print(json.dumps(pause(settings, float(argv[1]), argv[2] == "1")))
            return 0
    except ChopsError as exc:
        print(exc.line(), file=sys.stderr)
        return exc.exit_code
    print("usage: python -m ops.deploy.apply smoke | pause TIMEOUT 0|1", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
