"""Cron scheduling of pipelines: one tagged entry per scheduled pipeline in the user's crontab.

Each entry of this project ends in the tag ``# chops:<project-id>:<pipeline>``; the project id is a short hash
of the project root, so two checkouts on one machine never touch each other's entries. Everything else in the
crontab (other tools' entries, comments, variables, blank lines) is kept byte for byte: the crontab is edited
as text, line by line, and only lines carrying this project's tag are ever replaced or removed. (python-crontab
reads the crontab, but its ``write()`` re-renders every line: it collapses whitespace, moves comments, turns
``7`` into ``0`` and comments out lines it cannot parse — so it is never used to write.)

An entry runs the project's own runner in cron's bare environment (PATH=/usr/bin:/bin, cwd=$HOME)::

    cd '<root>' && mkdir -p '<logs>/cron' && '<venv>/bin/inv' pipeline.run '<name>' --date yesterday \
        --trigger cron >> '<logs>/cron/<name>.log' 2>&1 # chops:<project-id>:<name>

Nothing relies on PATH or the working directory: the interpreter is the venv's by absolute path (the venv that
runs this code), the runner loads settings and .env itself from the root, and takes its own locks.

:func:`plan` and :func:`unschedule` are pure over a CronTab read beforehand; :func:`apply` writes the result
(and refuses when the crontab changed in between). ``ops.pipelines.cron_doctor`` runs each command under cron's
environment with ``--dry-run``, which writes no data.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ops import ROOT
from ops.core.errors import BadInput, WorkFailed
from ops.core.timefmt import stamp

TAG_PREFIX = "chops"
INSTALL_HINT = "run: apt-get install cron"
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PIPELINE = re.compile(r"^[A-Za-z0-9_.-]+$")
# An enabled crontab entry ending in a chops tag: `<5 fields or @special> <command> # chops:<id>:<pipeline>`
_TAGGED = re.compile(
    r"^\s*(?P<schedule>@[A-Za-z]+|\S+\s+\S+\s+\S+\s+\S+\s+\S+)\s+(?P<command>.*?)"
    r"\s+#\s*(?P<comment>" + TAG_PREFIX + r":(?P<project>[0-9a-f]+):(?P<pipeline>[A-Za-z0-9_.-]+))\s*$"
)


# --- what an entry is ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One crontab entry of a pipeline: ``command`` is the shell command; ``line()`` the crontab line."""

    pipeline: str
    schedule: str
    command: str
    comment: str

    def line(self) -> str:
        # In a crontab an unescaped % ends the command (the rest is stdin), even inside quotes.
        return f"{self.schedule} {self.command.replace('%', chr(92) + '%')} # {self.comment}"


@dataclass(frozen=True)
class Installed:
    """An entry of this project found in a crontab: its line number (0-based) and its parts."""

    index: int
    line: str
    pipeline: str
    schedule: str
    command: str
    comment: str


@dataclass(frozen=True)
class Change:
    """What a plan does to one pipeline's entry: add, change, remove or unchanged."""

    action: str
    pipeline: str
    schedule: str
    command: str
    old: str | None = None  # the installed line
    new: str | None = None  # the line to install

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "pipeline": self.pipeline, "schedule": self.schedule,
                "command": self.command, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class Plan:
    """The crontab text before and after, and the change of each pipeline concerned."""

    changes: tuple[Change, ...]
    before: str
    after: str

    def of(self, action: str) -> list[Change]:
        return [c for c in self.changes if c.action == action]

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def summary(self) -> str:
        counts = [(len(self.of(a)), label) for a, label in
                  (("add", "added"), ("change", "changed"), ("remove", "removed"), ("unchanged", "unchanged"))]
        return ", ".join(f"{n} {label}" for n, label in counts)

    def diff(self) -> list[str]:
        """The difference as unified-diff lines (``-`` installed, ``+`` planned); empty when nothing changes."""
        return list(difflib.unified_diff(self.before.splitlines(), self.after.splitlines(),
                                         "crontab (installed)", "crontab (planned)", n=1, lineterm=""))

    def as_dict(self) -> dict[str, Any]:
        return {"changes": [c.as_dict() for c in self.changes], "changed": self.changed, "diff": self.diff(),
                "summary": self.summary()}


# --- rendering (pure) ------------------------------------------------------------------------------------------------

def deployed_root(root: Path | str) -> Path | None:
    """``<path>/current`` when ``root`` is a release of a deploy (``<path>/releases/<release>/`` beside a ``current``
    symlink, see ``ops.deploy.apply``), else None. Entries then point at ``current`` and keep one project id across
    releases, so the next release replaces them instead of adding its own."""
    root = Path(os.path.abspath(str(root)))
    if root.parent.name == "releases" and (root.parent.parent / "current").is_symlink():
        return root.parent.parent / "current"
    return None


def entry_root(settings) -> Path:
    """The directory entries ``cd`` into and the project id hashes: the checkout, or ``current`` of a deploy."""
    return deployed_root(settings.root) or Path(os.path.abspath(str(settings.root)))


def project_id(settings) -> str:
    """A short id of this checkout: two checkouts of chops on one machine tag their entries differently."""
    return hashlib.sha256(str(entry_root(settings)).encode()).hexdigest()[:10]


def tag(settings, pipeline: str) -> str:
    return f"{TAG_PREFIX}:{project_id(settings)}:{pipeline}"


def bin_dir_default() -> Path:
    """The bin directory of the virtualenv running this code (not resolved: the venv's python is a symlink); in a
    deployed release, ``current``'s (its ``.venv`` links to the venv of whichever release is current)."""
    deployed = deployed_root(ROOT)
    return deployed / ".venv" / "bin" if deployed else Path(os.path.abspath(sys.executable)).parent


def pipelines_by_name(pipelines) -> dict[str, Any]:
    """name -> pipeline from a Registry, a mapping or an iterable of pipeline objects."""
    if pipelines is None:
        return {}
    if hasattr(pipelines, "pipelines"):
        pipelines = pipelines.pipelines
    if isinstance(pipelines, Mapping):
        return dict(pipelines)
    return {p.name: p for p in pipelines}


def _no_newline(value: str, what: str) -> str:
    if "\n" in value or "\r" in value or "\0" in value:
        raise BadInput(f"{what} {value!r} contains a line break, which a crontab line cannot hold")
    return value


def _environment(settings, environment: Mapping[str, str] | None) -> dict[str, str]:
    """The variables set in front of the runner: the environment when not dev, a non-default .env, and extras."""
    env: dict[str, str] = {}
    if settings.env != "dev":
        env["CHOPS_ENV"] = settings.env
    env_file = getattr(settings, "env_file", None)
    if env_file is not None and os.path.abspath(str(env_file)) != os.path.abspath(str(Path(settings.root) / ".env")):
        env["CHOPS_ENV_FILE"] = os.path.abspath(str(env_file))
    for name, value in (environment or {}).items():
        if not _VARIABLE.match(name):
            raise BadInput(f"environment variable name {name!r} is not valid in a shell")
        env[name] = _no_newline(str(value), f"value of {name}")
    return env


def shell_only_variables(settings, environment: Mapping[str, str] | None = None) -> list[str]:
    """Settings variables taken from this shell's environment that a cron job would not see (CHOPS_ENV and a
    non-default CHOPS_ENV_FILE are passed on; the rest belongs in config/<env>.toml or .env)."""
    passed = set(environment or {})
    found = []
    for source in getattr(settings, "sources", {}).values():
        if source.startswith("environment "):
            variable = source.split(" ", 1)[1]
            if variable not in passed and variable not in found:
                found.append(variable)
    return sorted(found)


def log_path(settings, pipeline: str) -> Path:
    """Where a cron run of ``pipeline`` appends its output."""
    return settings.path("paths.logs") / "cron" / f"{pipeline}.log"


def _command(settings, name: str, day: str, env: Mapping[str, str], bin_dir: Path, dry_run: bool = False) -> str:
    q = shlex.quote
    root = _no_newline(str(entry_root(settings)), "project root")
    log = os.path.abspath(str(log_path(settings, name)))
    if os.path.abspath(str(settings.root)) != root and Path(log).is_relative_to(os.path.abspath(str(settings.root))):
        log = os.path.join(root, os.path.relpath(log, os.path.abspath(str(settings.root))))  # via current, too
    log = _no_newline(log, "log path")
    inv = _no_newline(os.path.abspath(str(Path(bin_dir) / "inv")), "inv path")
    assignments = "".join(f"{k}={q(v)} " for k, v in env.items())
    run = f"{assignments}{q(inv)} pipeline.run {q(name)} --date {q(day)} --trigger cron"
    # the log directory may have been wiped since scheduling: the redirection would fail and cron stay silent
    prefix = f"cd {q(root)} && mkdir -p {q(os.path.dirname(log))} && "
    if dry_run:
        return f"{prefix}{run} --dry-run 2>&1"
    return f"{prefix}{run} >> {q(log)} 2>&1"


def _schedule(p) -> str:
    expr = " ".join(str(p.schedule).split())
    if expr.startswith("@"):
        if not re.fullmatch(r"@[A-Za-z]+", expr):
            raise BadInput(f"pipeline {p.name}: invalid cron schedule {p.schedule!r}")
        return expr
    if len(expr.split()) != 5 or "#" in expr or "%" in expr:
        raise BadInput(f"pipeline {p.name}: invalid cron schedule {p.schedule!r} (five fields)")
    return expr


def _entry(settings, p, env: Mapping[str, str], bin_dir: Path) -> Entry:
    if not _PIPELINE.match(p.name or ""):
        raise BadInput(f"pipeline name {p.name!r} cannot be used in a cron tag")
    day = getattr(p, "cron_date", None) or "yesterday"
    return Entry(pipeline=p.name, schedule=_schedule(p), command=_command(settings, p.name, day, env, bin_dir),
                 comment=tag(settings, p.name))


def render(settings, pipelines, environment: Mapping[str, str] | None = None,
           bin_dir: Path | str | None = None) -> list[Entry]:
    """The entry of every scheduled pipeline, by name. Pure.

    ``environment``: extra variables set in front of the runner (``{"CHOPS_PATHS__VAR": "/srv/var"}``);
    ``bin_dir``: the virtualenv's bin directory (default: the one running this code).
    """
    env = _environment(settings, environment)
    bin_dir = Path(bin_dir) if bin_dir is not None else bin_dir_default()
    by_name = pipelines_by_name(pipelines)
    return [_entry(settings, by_name[n], env, bin_dir) for n in sorted(by_name) if by_name[n].schedule]


def doctor_command(settings, p, environment: Mapping[str, str] | None = None,
                   bin_dir: Path | str | None = None) -> str:
    """The cron command of ``p`` with ``--dry-run``, its output captured instead of appended to the log."""
    env = _environment(settings, environment)
    bin_dir = Path(bin_dir) if bin_dir is not None else bin_dir_default()
    day = getattr(p, "cron_date", None) or "yesterday"
    return _command(settings, p.name, day, env, bin_dir, dry_run=True)


# --- reading a crontab ----------------------------------------------------------------------------------------------

def user_crontab(user: bool | str = True):
    """The crontab of this user (``True``) or of ``user``: a python-crontab ``CronTab``."""
    from crontab import CronTab

    try:
        return CronTab(user=user)
    except FileNotFoundError:
        raise WorkFailed("the crontab command is not installed", hint=INSTALL_HINT) from None
    except IOError as exc:
        if "No crontab program" in str(exc):
            raise WorkFailed("the crontab command is not installed", hint=INSTALL_HINT) from None
        raise WorkFailed(f"cannot read the crontab: {_one_line(str(exc))}") from None


def _user_args(crontab) -> list[str]:
    return [arg for key, value in crontab.user_opt.items() for arg in (f"-{key}", str(value))]


def _run_crontab(crontab, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([crontab.cron_command, *args, *_user_args(crontab)], capture_output=True, text=True,
                              timeout=60)
    except FileNotFoundError:
        raise WorkFailed("the crontab command is not installed", hint=INSTALL_HINT) from None


def text_of(crontab) -> str:
    """The crontab's current text, exactly as installed (not python-crontab's re-rendering of it)."""
    if crontab.intab is not None:
        return crontab.intab
    if crontab.filen:
        path = Path(crontab.filen)
        return path.read_text(encoding="utf-8") if path.exists() else ""
    if crontab.user:
        done = _run_crontab(crontab, "-l")
        if done.returncode != 0:
            if "no crontab for" in done.stderr:
                return ""
            raise WorkFailed(f"cannot read the crontab: {_one_line(done.stderr)}")
        return done.stdout
    return ""


def installed(settings, text: str) -> list[Installed]:
    """This project's entries in a crontab text, in order. Commented-out entries are comments, not entries."""
    mine = project_id(settings)
    found = []
    for index, line in enumerate(_lines(text)):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _TAGGED.match(line)
        if not m or m.group("project") != mine or "=" in m.group("schedule").split()[0]:
            continue
        found.append(Installed(index, line, m.group("pipeline"), " ".join(m.group("schedule").split()),
                               m.group("command").replace("\\%", "%"), m.group("comment")))
    return found


def _lines(text: str) -> list[str]:
    """The lines of a crontab, split on \\n only (splitlines would also split, and so rewrite, other characters)."""
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


# --- planning (pure) ------------------------------------------------------------------------------------------------

def split_names(names: Iterable[str] | str | None) -> list[str]:
    if names is None:
        return []
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for raw in names:
        for n in str(raw).replace(",", " ").split():
            if n not in out:
                out.append(n)
    return out


def check_names(names: list[str], by_name: Mapping[str, Any], present: set[str], need_schedule: bool) -> None:
    for n in names:
        if n in by_name:
            if need_schedule and not by_name[n].schedule and n not in present:
                raise BadInput(f"pipeline {n} has no schedule; nothing to install",
                               hint=f"give it schedule='…' in {_module_file(by_name[n])}")
            continue
        if n in present:
            continue  # a pipeline that is gone, but still has an entry: it can be removed by name
        close = difflib.get_close_matches(n, sorted(set(by_name) | present), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(by_name)) or 'none'}"
        raise BadInput(f"unknown pipeline {n!r}", hint=hint)


def _module_file(p) -> str:
    module = getattr(p, "module", "") or ""
    return f"pipelines/{module.rsplit('.', 1)[-1]}.py" if module else "its module"


def _scope(names, everything: bool) -> list[str]:
    chosen = split_names(names)
    if chosen and everything:
        raise BadInput("name pipelines or use --all, not both")
    if not chosen and not everything:
        raise BadInput("name pipelines or use --all")
    return chosen


def _build(settings, before: str, wanted: dict[str, Entry], in_scope) -> Plan:
    """Edit ``before`` so that the in-scope entries of this project are exactly ``wanted``; all else is kept."""
    lines = _lines(before)
    changes: list[Change] = []
    placed: set[str] = set()
    drop: set[int] = set()
    for found in installed(settings, before):
        if not in_scope(found.pipeline):
            continue
        entry = wanted.get(found.pipeline)
        if entry is None or found.pipeline in placed:
            drop.add(found.index)
            changes.append(Change("remove", found.pipeline, found.schedule, found.command, old=found.line))
            continue
        placed.add(found.pipeline)
        new = entry.line()
        if found.line == new:
            changes.append(Change("unchanged", entry.pipeline, entry.schedule, entry.command, old=found.line, new=new))
        else:
            lines[found.index] = new
            changes.append(Change("change", entry.pipeline, entry.schedule, entry.command, old=found.line, new=new))
    kept = [line for i, line in enumerate(lines) if i not in drop]
    added = [wanted[n] for n in sorted(wanted) if n not in placed]
    for entry in added:
        changes.append(Change("add", entry.pipeline, entry.schedule, entry.command, new=entry.line()))
    if not drop and not added and not any(c.action == "change" for c in changes):
        after = before  # nothing to do: not even a missing final newline is added
    else:
        out = kept + [e.line() for e in added]
        after = "\n".join(out) + ("\n" if out and (before.endswith("\n") or added) else "")
    order = {"remove": 0, "change": 1, "add": 2, "unchanged": 3}
    changes.sort(key=lambda c: (c.pipeline, order[c.action]))
    return Plan(tuple(changes), before, after)


def plan(settings, pipelines, names: Iterable[str] | str | None = None, all: bool = False, crontab=None,
         environment: Mapping[str, str] | None = None, bin_dir: Path | str | None = None) -> Plan:
    """What scheduling ``names`` (or ``all``) would do to ``crontab`` (default: this user's). Pure given a crontab.

    Adds missing entries, changes those whose line differs, removes this project's entries of pipelines that are
    gone or no longer scheduled (with ``names``: only of those names), and reports the rest unchanged.
    """
    everything = all
    chosen = _scope(names, everything)
    errors = dict(getattr(pipelines, "errors", None) or {})
    if everything and errors:
        # an entry of a pipeline whose module is broken right now would look stale and be removed
        raise WorkFailed(f"{len(errors)} pipeline module(s) did not load, so --all cannot tell which entries are "
                         f"stale: {next(iter(errors.values()))}; nothing was changed",
                         hint="fix them (inv pipeline.list shows why), or name the pipelines to schedule")
    crontab = crontab if crontab is not None else user_crontab()
    before = text_of(crontab)
    by_name = pipelines_by_name(pipelines)
    present = {i.pipeline for i in installed(settings, before)}
    check_names(chosen, by_name, present, need_schedule=True)
    scope = set(chosen) if chosen else None
    entries = render(settings, {n: p for n, p in by_name.items() if scope is None or n in scope}, environment, bin_dir)
    wanted = {e.pipeline: e for e in entries}
    return _build(settings, before, wanted, lambda n: scope is None or n in scope)


def unschedule(settings, pipelines, names: Iterable[str] | str | None = None, all: bool = False,
               crontab=None) -> Plan:
    """What removing the entries of ``names`` (or every entry of this project, ``all``) would do. Pure given a
    crontab; :func:`apply` writes it."""
    everything = all
    chosen = _scope(names, everything)
    crontab = crontab if crontab is not None else user_crontab()
    before = text_of(crontab)
    present = {i.pipeline for i in installed(settings, before)}
    check_names(chosen, pipelines_by_name(pipelines), present, need_schedule=False)
    scope = set(chosen) if chosen else None
    return _build(settings, before, {}, lambda n: scope is None or n in scope)


def apply(plan: Plan, crontab=None) -> Plan:
    """Write ``plan.after`` to ``crontab`` (default: this user's), unless nothing changes.

    Refuses when the crontab is no longer what the plan was made from (someone edited it in between). A user
    crontab left empty is removed (``crontab -r``), as it was before chops added to it.
    """
    crontab = crontab if crontab is not None else user_crontab()
    if not plan.changed:
        return plan
    current = text_of(crontab)
    if current != plan.before:
        raise WorkFailed("the crontab changed since it was read; nothing was written", hint="run the command again")
    if crontab.intab is not None or not (crontab.filen or crontab.user):
        crontab.intab = plan.after  # an in-memory crontab (CronTab(tab=...)): what its write() would do
    elif crontab.filen:
        Path(crontab.filen).write_text(plan.after, encoding="utf-8")
    elif not plan.after:
        done = _run_crontab(crontab, "-r")
        if done.returncode != 0 and "no crontab for" not in done.stderr:
            raise WorkFailed(f"cannot remove the crontab: {_one_line(done.stderr)}")
    else:
        fd, path = tempfile.mkstemp(prefix="chops-crontab-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(plan.after)
            done = _run_crontab(crontab, path)
        finally:
            os.unlink(path)
        if done.returncode != 0:
            raise WorkFailed(f"crontab refused the new table: {_one_line(done.stderr)}; nothing was written")
    crontab.read(crontab.filen)
    return plan


# --- a deploy's pause --------------------------------------------------------------------------------------------------
# A deploy removes the project's entries while it switches releases and installs them again after. A deploy killed
# in between would leave no entries, which looks like a fresh install (a warning). So the pause is written down
# first, and health fails while it stands; `pipeline.schedule --all` (or `unschedule --all`) ends it.

def pause_file(settings) -> Path:
    return settings.path("paths.var") / "run" / "cron.paused"  # not *.json: those are pid files


def mark_paused(settings, by: str) -> None:
    path = pause_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"by": by, "pid": os.getpid(), "since": stamp()}))
    os.replace(tmp, path)


def paused(settings) -> dict | None:
    """Who paused this project's cron entries and since when, while the pause stands."""
    try:
        return json.loads(pause_file(settings).read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return {"by": "?", "since": "?"}


def end_pause(settings) -> bool:
    """The entries are as intended again; True when a pause stood."""
    try:
        pause_file(settings).unlink()
        return True
    except FileNotFoundError:
        return False


# --- reporting ------------------------------------------------------------------------------------------------------

def installed_vs_expected(settings, pipelines, crontab=None, environment: Mapping[str, str] | None = None,
                          bin_dir: Path | str | None = None) -> list[dict[str, Any]]:
    """One row per pipeline and per installed entry of this project.

    state: ``ok`` (installed as expected), ``missing`` (scheduled, not installed), ``differs`` (installed, but the
    line differs: schedule, command or environment), ``stale`` (installed, but the pipeline is gone or no longer
    scheduled), ``duplicate`` (a second entry of the same pipeline) or ``not scheduled``.
    """
    crontab = crontab if crontab is not None else user_crontab()
    text = text_of(crontab)
    by_name = pipelines_by_name(pipelines)
    expected = {e.pipeline: e for e in render(settings, by_name, environment, bin_dir)}
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for found in installed(settings, text):
        entry = expected.get(found.pipeline)
        if found.pipeline in seen:
            state = "duplicate"
        elif entry is None:
            state = "stale"
        else:
            state = "ok" if found.line == entry.line() else "differs"
        seen.add(found.pipeline)
        rows.append({"pipeline": found.pipeline, "state": state, "expected": entry.schedule if entry else "",
                     "installed": found.schedule, "command": found.command,
                     "expected_command": entry.command if entry else ""})
    for name in sorted(by_name):
        if name in seen:
            continue
        entry = expected.get(name)
        rows.append({"pipeline": name, "state": "missing" if entry else "not scheduled",
                     "expected": entry.schedule if entry else "", "installed": "",
                     "command": "", "expected_command": entry.command if entry else ""})
    rows.sort(key=lambda r: r["pipeline"])
    return rows


def daemon_pid() -> int | None:
    """The pid of the running cron daemon, or None: a crontab entry fires only while one runs."""
    for pidfile in ("/run/crond.pid", "/var/run/crond.pid"):
        try:
            pid = int(Path(pidfile).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if _comm(pid) in ("cron", "crond"):
            return pid
    for proc in Path("/proc").glob("[0-9]*"):
        if _comm(int(proc.name)) in ("cron", "crond"):
            return int(proc.name)
    return None


def _comm(pid: int) -> str:
    """The command name of a live process ("" when it is gone or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    name, _, rest = stat.partition(" (")[2].rpartition(") ")
    return "" if rest[:1] in ("Z", "X") else name


def _one_line(text: str) -> str:
    return " ".join((text or "").split()) or "no message"
