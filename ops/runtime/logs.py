"""The run logs, read where chops writes them: finding a pipeline's newest log, following one as it grows, and the
log directory's layout for the janitor.

A pipeline run writes ``<paths.logs>/pipelines/<pipeline>/<day>_<run8>.log`` (``ops.pipelines.runner``); a cron
entry appends its output to ``<paths.logs>/cron/<pipeline>.log`` (``ops.pipelines.cron``). The logs are read from
the directory, not the ledger, so they can be found while a run holds the embedded database.
"""

from __future__ import annotations

import difflib
import time
from pathlib import Path
from typing import Iterable

from ops.core.errors import BadInput
from ops.runtime.config import shown_path


def run_logs_dir(settings) -> Path:
    """Where pipeline runs write their logs, one folder per pipeline."""
    return settings.path("paths.logs") / "pipelines"


def cron_logs_dir(settings) -> Path:
    """Where cron entries append their output, one file per pipeline."""
    return settings.path("paths.logs") / "cron"


def every_log(settings) -> list[Path]:
    """Every run log (``pipelines/<name>/*.log``) and cron log (``cron/*.log``) under ``paths.logs``, sorted."""
    return sorted([*run_logs_dir(settings).glob("*/*.log"), *cron_logs_dir(settings).glob("*.log")])


def remove(settings, path: Path) -> bool:
    """Remove a log; a run log's pipeline folder goes too when that was its last log. False when it was gone."""
    path = Path(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    if path.parent.parent == run_logs_dir(settings):
        try:
            path.parent.rmdir()  # only when that was its pipeline's last log
        except OSError:
            pass
    return True


def find_log(settings, name: str | None = None, day=None, known: Iterable[str] = ()) -> Path:
    """The newest run log of pipeline ``name`` (of any pipeline without one), of ``day`` when given. Read from the
    log directory, not the ledger, so it works while a run holds the embedded database."""
    base = run_logs_dir(settings)
    if name:
        if name not in set(known) and not (base / name).is_dir():
            close = difflib.get_close_matches(name, sorted(set(known)), n=3, cutoff=0.5)
            raise BadInput(f"unknown pipeline {name!r}",
                           hint=f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(known)) or 'none'}")
        folders = [base / name]
    else:
        folders = sorted(p for p in base.glob("*") if p.is_dir())
    pattern = f"{day.isoformat()}_*.log" if day else "*.log"
    files = [f for folder in folders for f in folder.glob(pattern) if f.is_file()]
    if files:
        return max(files, key=lambda f: (f.stat().st_mtime, f.name))
    who = name or "any pipeline"
    if day:
        days = sorted({f.name.split("_", 1)[0] for folder in folders for f in folder.glob("*.log")}, reverse=True)
        hint = f"days with logs: {', '.join(days[:7])}" + (" …" if len(days) > 7 else "") if days else None
        raise BadInput(f"no run log of {who} for {day} under {shown_path(settings, base)}", hint=hint)
    raise BadInput(f"no run log of {who} under {shown_path(settings, base)}: it has not run here yet",
                   hint=f"run it: inv pipeline.run {name}" if name else "run a pipeline: inv pipeline.run NAME")


def follow(path: Path, write, poll: float = 0.5, stop=lambda: False) -> None:
    """Write the file to ``write`` (bytes), then whatever is appended to it, polling like ``tail -f`` until ``stop()``
    says so (or the caller is interrupted). A file truncated meanwhile is read again from its start."""
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(65536)
            if chunk:
                write(chunk)
                continue
            if stop():
                return
            try:
                if Path(path).stat().st_size < fh.tell():
                    fh.seek(0)
            except OSError:
                pass  # removed meanwhile (proc.clean): keep reading what is open
            time.sleep(poll)
