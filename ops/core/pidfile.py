"""This process's pid file: what it works on, so ``inv proc.list`` can show it and ``inv proc.kill`` stop it.

Every chops process that does work (a pipeline run, a backfill, migrations, a deploy) calls :func:`working`, which
writes ``<paths.var>/run/<pid>.json``: its :class:`~ops.core.process.Holder` record (pid, start time, host,
command line, since when) plus what it is working on and, where known, its progress. The file is rewritten
atomically as the work moves on and removed when the process exits. Reading, judging and signalling other
processes' pid files is ``ops.runtime.pidfiles``; this module only writes this process's own, which is why it
sits in the core: the runner, backfills and migrations write one too.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from ops.core.errors import WorkFailed
from ops.core.locks import FREE_SPACE
from ops.core.process import Holder
from ops.core.timefmt import stamp

_lock = threading.Lock()
_current: dict[str, Any] = {}


def run_dir(settings) -> Path:
    return settings.path("paths.var") / "run"


def working(settings, kind: str, what: str, progress: str | None = None) -> Path:
    """Say what this process is doing (creating its pid file the first time). Safe to call often: within the same
    kind of work the file is rewritten at most twice a second (200 migrations in a row must not cost 200 writes).

    A pid file that cannot be created (a full disk) is a ``WorkFailed`` before any work starts: a process
    ``inv proc.kill`` cannot see must not run. A later rewrite that fails keeps the file as it was (only its
    progress is behind): the work goes on."""
    with _lock:
        path = run_dir(settings) / f"{os.getpid()}.json"
        now = time.monotonic()
        if _current.get("path") == str(path) and _current.get("kind") == kind and now - _current.get("_at", 0) < 0.5:
            _current.update({"what": what, "progress": progress})  # written with the next update
            return path
        first = _current.get("path") != str(path)
        if first:
            _current.clear()
            _current.update({"path": str(path), **Holder.me().as_dict()})
            atexit.register(done)
        _current["_at"] = now
        _current.update({"kind": kind, "what": what, "progress": progress, "updated": stamp()})
        try:
            _write(path, {k: v for k, v in _current.items() if k not in ("path", "_at")})
        except OSError as exc:
            if not first:
                return path
            _current.clear()
            raise WorkFailed(f"cannot write pid file {path}: {exc.strerror}", hint=FREE_SPACE) from None
        return path


def _write(path: Path, record: dict[str, Any]) -> None:
    """Replace the pid file atomically; a write that fails leaves no partial file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def done() -> None:
    """Remove this process's pid file (also at exit)."""
    with _lock:
        path = _current.pop("path", None)
        _current.clear()
    if path:
        try:
            Path(path).unlink()
        except FileNotFoundError:
            pass
