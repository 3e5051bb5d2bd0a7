"""The crontab itself: reading it as installed, writing a planned text, the cron daemon, and a deploy's pause.

``ops.pipelines.cron`` plans entries as text (pure); this module is where that text meets the ``crontab`` command
(through python-crontab's ``CronTab`` for the user and file options, never its ``write()``, which re-renders every
line). Its names are importable from ``ops.pipelines.cron`` too.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from ops.core.errors import WorkFailed
from ops.core.timefmt import stamp

INSTALL_HINT = "run: apt-get install cron"


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


def lines(text: str) -> list[str]:
    """The lines of a crontab, split on \\n only (splitlines would also split, and so rewrite, other characters)."""
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def apply(plan, crontab=None):
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


# --- the daemon -----------------------------------------------------------------------------------------------------

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
