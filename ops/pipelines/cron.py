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

``[report] schedule`` adds one more entry, tagged ``chops:<project-id>:_report`` (no pipeline name starts with
``_``), that runs ``inv report`` the same way. ``[alerts] mailto`` puts this project's entries in one block at the
end of the crontab, under a marker comment and a ``MAILTO=`` line of its own (MAILTO applies to the lines below
it), so the crontab's other lines and their MAILTO settings are untouched (:func:`with_mailto`).

:func:`plan` and :func:`unschedule` are pure over a CronTab read beforehand; :func:`apply` writes the result
(and refuses when the crontab changed in between); reading and writing the crontab live in
``ops.pipelines.crontab_io``. ``ops.pipelines.cron_doctor`` runs each command under cron's environment with
``--dry-run``, which writes no data.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ops import ROOT
from ops.core.errors import BadInput, ConfigError, WorkFailed
from ops.pipelines.crontab_io import (  # noqa: F401 - the crontab's IO, importable from here as before
    INSTALL_HINT, apply, daemon_pid, end_pause, lines, mark_paused, pause_file, paused, text_of, user_crontab)

TAG_PREFIX = "chops"
# The entry running `inv report` ([report] schedule): a name no pipeline can have (they start with a letter).
REPORT = "_report"
# The comment line before this project's MAILTO line ([alerts] mailto): `# chops:<id>:mailto ...`
MAILTO_MARK = "mailto"
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
        text = ", ".join(f"{n} {label}" for n, label in counts)
        moved = self.changed and not any(c.action != "unchanged" for c in self.changes)
        return text + ("; the MAILTO block changed" if moved else "")

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
    return _shell(settings, name, f"pipeline.run {q(name)} --date {q(day)} --trigger cron", env, bin_dir, dry_run)


def _shell(settings, name: str, task: str, env: Mapping[str, str], bin_dir: Path, dry_run: bool = False) -> str:
    """``cd <root> && mkdir -p <logs>/cron && <env> <venv>/bin/inv <task> >> <logs>/cron/<name>.log 2>&1``."""
    q = shlex.quote
    root = _no_newline(str(entry_root(settings)), "project root")
    log = os.path.abspath(str(log_path(settings, name)))
    if os.path.abspath(str(settings.root)) != root and Path(log).is_relative_to(os.path.abspath(str(settings.root))):
        log = os.path.join(root, os.path.relpath(log, os.path.abspath(str(settings.root))))  # via current, too
    log = _no_newline(log, "log path")
    inv = _no_newline(os.path.abspath(str(Path(bin_dir) / "inv")), "inv path")
    assignments = "".join(f"{k}={q(v)} " for k, v in env.items())
    run = f"{assignments}{q(inv)} {task}"
    # the log directory may have been wiped since scheduling: the redirection would fail and cron stay silent
    prefix = f"cd {q(root)} && mkdir -p {q(os.path.dirname(log))} && "
    if dry_run:
        return f"{prefix}{run} --dry-run 2>&1"
    return f"{prefix}{run} >> {q(log)} 2>&1"


def _schedule(p, what: str = "", error: type = BadInput) -> str:
    expr = " ".join(str(p.schedule).split())
    what = what or f"pipeline {p.name}"
    if expr.startswith("@"):
        if not re.fullmatch(r"@[A-Za-z]+", expr):
            raise error(f"{what}: invalid cron schedule {p.schedule!r}")
        return expr
    if len(expr.split()) != 5 or "#" in expr or "%" in expr:
        raise error(f"{what}: invalid cron schedule {p.schedule!r} (five fields)")
    return expr


@dataclass(frozen=True)
class _Report:
    """The `inv report` entry, shaped like a pipeline for the rendering."""

    schedule: str
    name: str = REPORT


def report_entry(settings, env: Mapping[str, str], bin_dir: Path) -> Entry | None:
    """The entry that runs ``inv report`` at ``[report] schedule``, or None when that is empty."""
    expr = str(settings.get("report.schedule") or "").strip()
    if not expr:
        return None
    schedule = _schedule(_Report(expr), f"report.schedule ({settings.sources.get('report.schedule', 'config')})",
                         ConfigError)
    return Entry(pipeline=REPORT, schedule=schedule, command=_shell(settings, REPORT, "report", env, bin_dir),
                 comment=tag(settings, REPORT))


def mailto(settings) -> str:
    """``[alerts] mailto``, checked: cron takes the rest of its line as the value, so no spaces, quotes, # or line
    breaks."""
    value = str(settings.get("alerts.mailto") or "")
    if value and (any(ch.isspace() or ch in "#\0\"'%" for ch in value) or value.startswith("-")):
        raise ConfigError(f"alerts.mailto {value!r} must be addresses separated by commas, without spaces, quotes, "
                          f"# or line breaks ({settings.sources.get('alerts.mailto', 'config')})")
    return value


def _entry(settings, p, env: Mapping[str, str], bin_dir: Path) -> Entry:
    if not _PIPELINE.match(p.name or ""):
        raise BadInput(f"pipeline name {p.name!r} cannot be used in a cron tag")
    day = getattr(p, "cron_date", None) or "yesterday"
    return Entry(pipeline=p.name, schedule=_schedule(p), command=_command(settings, p.name, day, env, bin_dir),
                 comment=tag(settings, p.name))


def render(settings, pipelines, environment: Mapping[str, str] | None = None,
           bin_dir: Path | str | None = None, report: bool = True) -> list[Entry]:
    """The entry of every scheduled pipeline, by name, then (``report``) the ``inv report`` entry when
    ``[report] schedule`` is set. Pure.

    ``environment``: extra variables set in front of the runner (``{"CHOPS_PATHS__VAR": "/srv/var"}``);
    ``bin_dir``: the virtualenv's bin directory (default: the one running this code).
    """
    env = _environment(settings, environment)
    bin_dir = Path(bin_dir) if bin_dir is not None else bin_dir_default()
    by_name = pipelines_by_name(pipelines)
    entries = [_entry(settings, by_name[n], env, bin_dir) for n in sorted(by_name) if by_name[n].schedule]
    extra = report_entry(settings, env, bin_dir) if report else None
    return entries + ([extra] if extra else [])


def doctor_command(settings, p, environment: Mapping[str, str] | None = None,
                   bin_dir: Path | str | None = None) -> str:
    """The cron command of ``p`` with ``--dry-run``, its output captured instead of appended to the log."""
    env = _environment(settings, environment)
    bin_dir = Path(bin_dir) if bin_dir is not None else bin_dir_default()
    day = getattr(p, "cron_date", None) or "yesterday"
    return _command(settings, p.name, day, env, bin_dir, dry_run=True)


def installed(settings, text: str) -> list[Installed]:
    """This project's entries in a crontab text, in order. Commented-out entries are comments, not entries."""
    mine = project_id(settings)
    found = []
    for index, line in enumerate(lines(text)):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _TAGGED.match(line)
        if not m or m.group("project") != mine or "=" in m.group("schedule").split()[0]:
            continue
        found.append(Installed(index, line, m.group("pipeline"), " ".join(m.group("schedule").split()),
                               m.group("command").replace("\\%", "%"), m.group("comment")))
    return found


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
    rows = lines(before)
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
            rows[found.index] = new
            changes.append(Change("change", entry.pipeline, entry.schedule, entry.command, old=found.line, new=new))
    kept = [line for i, line in enumerate(rows) if i not in drop]
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
    return Plan(tuple(changes), before, with_mailto(settings, after, mailto(settings)))


def with_mailto(settings, text: str, address: str) -> str:
    """``text`` with this project's MAILTO block as ``address`` asks. MAILTO applies to every line below it, so the
    block goes last: a marker comment, ``MAILTO=<address>``, then this project's entries (moved there); the other
    lines keep their order and bytes. No address (or no entry left): the marker and its MAILTO line go, the entries
    stay where they are. Other lines' MAILTO settings are never touched. Pure."""
    rows = lines(text)
    marker = f"# {TAG_PREFIX}:{project_id(settings)}:{MAILTO_MARK}"
    ours = {i.index for i in installed(settings, text)}
    drop = set()
    for i, line in enumerate(rows):
        if line == marker or line.startswith(marker + " "):
            drop.add(i)
            if i + 1 < len(rows) and rows[i + 1].lstrip().startswith("MAILTO=") and i + 1 not in ours:
                drop.add(i + 1)
    if not drop and (not address or not ours):
        return text
    kept = [line for i, line in enumerate(rows) if i not in drop and (not address or i not in ours)]
    if address and ours:
        kept += [f"{marker} - cron mails the output of this project's entries below to MAILTO ([alerts] mailto); "
                 "add your own lines above it", f"MAILTO={address}", *(rows[i] for i in sorted(ours))]
    return "\n".join(kept) + ("\n" if kept else "")


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
    entries = render(settings, {n: p for n, p in by_name.items() if scope is None or n in scope}, environment, bin_dir,
                     report=scope is None)
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
