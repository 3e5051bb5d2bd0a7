"""How a deploy reaches a target: ssh and rsync command lines (every argument quoted, host keys checked, one shared
connection per target), the stdlib helper sent over ssh, and ``inv TASK --json`` of a release on the target.

Two protocols, no others: :meth:`Remote.helper` runs ``ops.deploy.helper`` (standard library only) on the target's
Python; :meth:`Remote.inv_json` runs a task of a release, whose JSON answer is its whole stdout (progress goes to
stderr). ssh's own failures become one line naming the fix (:func:`ssh_failure`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ops.core.errors import BadInput, ChopsError, ConfigError, WorkFailed
from ops.core.threads import stop_point
from ops.deploy.helper import BOOT
from ops.deploy.targets import Target

_PYTHON = re.compile(r"^[A-Za-z0-9._/+-]+$")

Notify = Callable[[str], None]  # where progress lines go (stderr, one line each)


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
    allow_root: bool = False
    ssh_config: str = ""  # ssh's client configuration (-F); empty: ~/.ssh/config

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
                   bwlimit=settings.get("deploy.bwlimit"), python=python, allow_root=settings.get("deploy.allow_root"),
                   ssh_config=ssh_config_file(settings))


def ssh_config_file(settings) -> str:
    """The ssh client configuration deploys use (deploy.ssh_config; empty: ssh's own, ~/.ssh/config)."""
    path = _expand(settings.get("deploy.ssh_config"), settings.root)
    if path and not os.path.exists(path):
        raise ConfigError(f"{settings.sources.get('deploy.ssh_config', 'config')}: deploy.ssh_config {path} does not "
                          "exist", hint="name an ssh client config file, or leave it empty for ~/.ssh/config")
    return path


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
    argv = ["ssh", *(["-F", options.ssh_config] if options.ssh_config else []), "-o", "BatchMode=yes",
            "-o", "ControlMaster=auto", "-o", f"ControlPath={options.control_dir}/%C",
            "-o", f"ControlPersist={options.control_persist}",
            "-o", f"ConnectTimeout={options.connect_timeout:g}",
            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
            "-o", "StrictHostKeyChecking=" + ("accept-new" if options.accept_new_host_key else "yes")]
    if options.known_hosts:
        argv += ["-o", f"UserKnownHostsFile={options.known_hosts}"]
    if options.identity_file:
        argv += ["-i", options.identity_file, "-o", "IdentitiesOnly=yes"]
    # a port ssh decides (~/.ssh/config, or its default) is left out: ssh applies its config itself
    return argv + ([] if "port" in target.implicit else ["-p", str(target.port)])


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
    login = f"{target.login}@" if target.login else ""
    return argv + ["./", f"{login}{target.rsync_host}:{release_dir}/"]


def helper_program(command: str, args: Mapping[str, Any], watch: bool = True) -> str:
    """``ops.deploy.helper``'s source with a call of ``command`` appended: what the target's Python runs. ``watch``:
    the work ends when stdin closes (see :data:`ops.deploy.helper.BOOT`)."""
    source = (Path(__file__).parent / "helper.py").read_text(encoding="utf-8")
    source = source.split('\nif __name__ == "__main__":')[0]
    call = [command, json.dumps(dict(args), sort_keys=True)]
    return source + f"\n\nsys.exit(main({call!r}{', watch=True' if watch else ''}))\n"


def _feed(fd: int, data: bytes) -> None:
    """Write ``data`` to ``fd``, a descriptor of its own (a dup of the pipe's write end that stays open: the far end
    watches for its end), and close it: never another pipe's descriptor, even when the call it fed was interrupted
    and its pipe closed (the write then fails, and this ends)."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:  # the far end is gone: its exit status says why
        pass
    finally:
        os.close(fd)


def _start_feeder(write: int, data: bytes) -> None:
    """A thread writing ``data`` to a descriptor of its own, a dup of ``write`` (see :func:`_feed`)."""
    feed = os.dup(write)  # the feeder's own: closed by it, so its number is never another pipe's meanwhile
    try:
        threading.Thread(target=_feed, args=(feed, data), daemon=True).start()
    except RuntimeError:  # no thread (none could be made): its descriptor is still ours to close
        os.close(feed)
        raise


class Remote:
    """Commands on one target over one shared ssh connection."""

    def __init__(self, target: Target, options: SshOptions):
        if target.user == "root" and not options.allow_root:
            raise BadInput(f"deploying to {target.host} as root is refused: releases, cron entries and processes would "
                           "all run as root", hint="--user the account that owns the deploy path, or set "
                                                   "deploy.allow_root = true")
        self.target, self.options = target, options
        self.connected = False

    def argv(self, command: str) -> list[str]:
        return [*ssh_base(self.target, self.options), self.target.destination, "--", command]

    def run(self, command: str, input: str | bytes | None = None, timeout: float | None = None,
            what: str = "a command") -> subprocess.CompletedProcess:
        """``command`` on the target. Its stdin stays open while this waits (after ``input``): the helper started
        by :meth:`call` ends its work when it closes, so remote work never outlives this process."""
        stop_point()  # a fleet's host asked to stop (Ctrl-C, SIGTERM) stops here, before its next command
        timeout = timeout or self.options.command_timeout
        data = input.encode() if isinstance(input, str) else (input or b"")
        read, write = os.pipe()
        try:
            _start_feeder(write, data)
            done = subprocess.run(self.argv(command), stdin=read, capture_output=True, timeout=timeout, text=True,
                                  errors="replace")
        except FileNotFoundError:
            raise BadInput("ssh is not installed here", hint="apt-get install openssh-client") from None
        except subprocess.TimeoutExpired:
            raise WorkFailed(f"{what} on {self.target.host} did not finish within {timeout:g}s") from None
        finally:
            os.close(read)  # a feeder still writing (ssh ended without reading it all) fails, closes its own and ends
            os.close(write)
        if done.returncode == 255:
            raise ssh_failure(self.target, self.options, as_text(done.stderr), preflight=not self.connected)
        self.connected = True
        return done

    def call(self, command: str, args: Mapping[str, Any], timeout: float | None = None,
             what: str = "") -> subprocess.CompletedProcess:
        """``ops.deploy.helper COMMAND`` on the target's Python (``python3 -c BOOT N``: the program and its arguments
        are the first N bytes of stdin, so nothing of them is in the target's process list)."""
        program = helper_program(command, args).encode()
        return self.run(quote_command([self.options.python, "-c", BOOT, len(program)]), input=program,
                        timeout=timeout, what=what or f"the deploy helper ({command})")

    def helper(self, command: str, timeout: float | None = None, **args: Any) -> dict[str, Any]:
        """Run ``ops.deploy.helper COMMAND`` on the target's Python; its JSON answer."""
        done = self.call(command, args, timeout=timeout)
        try:
            answer = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            err = last_line(done.stderr) or f"exit {done.returncode}"
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
        return self.call("exec", {"cwd": directory, "argv": ["./.venv/bin/inv", *args], "env": env}, timeout=timeout,
                         what=what or f"inv {' '.join(args)}")

    def inv_json(self, directory: str, environment: str, task: str, *args: str, timeout: float | None = None,
                 extra_env: Mapping[str, str] | None = None,
                 check: bool = True) -> tuple[subprocess.CompletedProcess, Any]:
        """``inv TASK ARGS --json`` of the release in ``directory``: the finished command and the task's answer, its
        whole stdout read as one JSON document. With ``check`` (the default) a non-zero exit or an answer that is not
        one JSON document is a WorkFailed naming the task; without it the answer is None then, for the caller to
        judge (a health check that did not run, a status that could not be read)."""
        done = self.inv(directory, environment, task, *args, "--json", timeout=timeout, extra_env=extra_env, what=task)
        if check:
            need_ok(done, task, self.target.host)
        try:
            return done, json_answer(done, task, self.target.host)
        except WorkFailed:
            if check:
                raise
            return done, None

    def close(self) -> None:
        """End the shared connection (it would otherwise linger ``control_persist`` seconds). Never fails: a
        connection it cannot end times out by itself."""
        if not self.connected:
            return
        try:
            subprocess.run([*ssh_base(self.target, self.options), "-O", "exit", self.target.destination],
                           capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            pass
        self.connected = False


def need_ok(done: subprocess.CompletedProcess, what: str, host: str) -> subprocess.CompletedProcess:
    """``done``, or a WorkFailed naming ``what`` and the last line it wrote when it exited non-zero."""
    if done.returncode != 0:
        said = last_line(done.stderr) or last_line(done.stdout) or f"exit {done.returncode}"
        raise WorkFailed(f"{what} failed on {host}: {said}")
    return done


def json_answer(done: subprocess.CompletedProcess, what: str, host: str) -> Any:
    """What a task printed with ``--json``: its whole stdout, one JSON document (a task sends its progress to stderr).
    Anything else is a WorkFailed: stdout is never searched for something that looks like JSON."""
    out = as_text(done.stdout)
    try:
        return json.loads(out)
    except ValueError as exc:
        shown = " ".join(out.split())[:120] or "nothing"
        raise WorkFailed(f"{what} on {host} did not answer with one JSON document on stdout ({exc.msg} at "
                         f"character {exc.pos}; stdout: {shown}; stderr: {last_line(done.stderr) or 'nothing'})",
                         hint=f"{what} --json must print its JSON and nothing else on stdout") from None


def as_text(data: str | bytes | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def last_line(text: str | bytes | None) -> str:
    lines = [line.strip() for line in as_text(text).splitlines() if line.strip()]
    return lines[-1][:400] if lines else ""


def ssh_failure(target: Target, options: SshOptions, stderr: str, preflight: bool = True) -> ChopsError:
    """ssh's exit 255 as one line naming the fix. Before the first command got through it is bad input (exit 2:
    nothing was changed); later it is a failure of the work."""
    kind = BadInput if preflight else WorkFailed
    where = f"{target.host} port {target.port}"  # the port ssh uses (~/.ssh/config included: resolve_fleet)
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
        return kind(f"{where} cannot be reached: {last_line(stderr)}")
    if "Permission denied" in text:
        return kind(f"{target.user}@{target.host} refused our ssh key (permission denied)",
                    hint="check deploy.identity_file or your ssh agent, and that user's authorized_keys")
    lost = ("Connection closed", "closed by remote host", "Connection reset", "Broken pipe", "disconnect",
            "Timeout, server", "lost connection")
    if not text or any(words in text for words in lost):
        return kind(f"the ssh connection to {where} was lost (ssh exit 255: {last_line(stderr) or 'no message'})",
                    hint="check the network and that sshd still runs there; inv deploy.status shows what the "
                         "target was left with")
    return kind(f"ssh to {where} failed (ssh exit 255: connection refused or lost, authentication or host key): "
                f"{last_line(stderr)}")

