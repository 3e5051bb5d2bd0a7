"""The cron doctor: each scheduled pipeline's cron command, run now with ``--dry-run`` under the bare environment
cron gives a job, so an entry that would fail at night (a missing virtualenv, a setting only this shell has, a
broken pipeline module) fails in front of its author instead. A dry run writes no data.

The commands are the ones ``ops.pipelines.cron`` renders for the crontab (:func:`ops.pipelines.cron.doctor_command`);
only where their output goes differs.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from ops.pipelines.cron import check_names, doctor_command, pipelines_by_name, split_names

# cron's environment: what a job sees (besides HOME and LOGNAME), see cron(8)
CRON_PATH = "/usr/bin:/bin"
CRON_SHELL = "/bin/sh"


def cron_environment() -> dict[str, str]:
    """The environment cron gives a job of this user (Debian cron(8)): nothing else."""
    user = pwd.getpwuid(os.getuid())
    return {"HOME": user.pw_dir, "LOGNAME": user.pw_name, "SHELL": CRON_SHELL, "PATH": CRON_PATH}


def doctor(settings, pipelines, names: Iterable[str] | str | None = None,
           environment: Mapping[str, str] | None = None, bin_dir: Path | str | None = None,
           timeout: float = 600.0) -> list[dict[str, Any]]:
    """Run each scheduled pipeline's cron command with ``--dry-run`` under cron's bare environment
    (``env -i HOME LOGNAME SHELL PATH /bin/sh -c …``, cwd=$HOME). Writes no data; one row per pipeline."""
    by_name = pipelines_by_name(pipelines)
    chosen = split_names(names)
    check_names(chosen, by_name, set(), need_schedule=True)
    targets = [by_name[n] for n in (chosen or sorted(by_name)) if by_name[n].schedule]
    env = cron_environment()
    rows = []
    for p in targets:
        command = doctor_command(settings, p, environment, bin_dir)
        argv = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), CRON_SHELL, "-c", command]
        started = time.monotonic()
        try:
            done = subprocess.run(argv, cwd=env["HOME"], capture_output=True, text=True, timeout=timeout)
            code, output = done.returncode, (done.stdout or "") + (done.stderr or "")
        except subprocess.TimeoutExpired:
            code, output = None, f"timed out after {timeout:g} s"
        except OSError as exc:
            code, output = None, f"cannot run {argv[0]}: {exc.strerror}"
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        rows.append({"pipeline": p.name, "status": "ok" if code == 0 else "failed", "exit_code": code,
                     "seconds": round(time.monotonic() - started, 2),
                     "last_line": (lines[-1][:300] if lines else ""), "command": command})
    return rows
