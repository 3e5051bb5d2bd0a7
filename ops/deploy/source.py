"""What a deploy ships: the tracked files of a git work tree at a commit, and the names derived from it (the release
name, the virtualenv key, the manifest that ``deploy.plan`` compares with the target's ``current``)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

from ops import ROOT
from ops.core.errors import BadInput
from ops.core.timefmt import utc_now


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
    now = now or utc_now()
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

