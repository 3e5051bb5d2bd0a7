"""Choosing pipelines: one syntax for every command that takes several (backfill, backfill.counts, backfill.verify,
pipeline.schedule).

``--select a,b+`` names pipelines, separated by commas or spaces; ``b+`` adds everything downstream of ``b`` (what
depends on it, transitively) and ``+b`` everything upstream (what it needs), as dbt writes it. ``--exclude`` takes
the same syntax and removes what it names. An unknown name is bad input that lists the known ones. Pure: it reads
only the registry.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from ops.core.errors import BadInput
from ops.pipelines.definition import Pipeline, Registry

SELECTOR = re.compile(r"(?P<up>\+?)(?P<name>[a-z][a-z0-9_]*)(?P<down>\+?)")


@dataclass(frozen=True)
class Selection:
    """The pipelines chosen, in dependency order, and those a ``+`` reached that do not qualify (name, why)."""

    names: tuple[str, ...]
    left_out: tuple[tuple[str, str], ...] = ()


def joined(*values: str | Iterable[str] | None) -> str | None:
    """Flags that mean the same (``--select`` and its alias ``--jobs``; a repeatable ``--name``) as one selector
    text; None when none was given."""
    parts: list[str] = []
    given = False
    for value in values:
        if value is None or (not isinstance(value, str) and not value):  # an iterable flag given no value
            continue
        given = True
        parts.extend([value] if isinstance(value, str) else [str(v) for v in value])
    return ",".join(parts) if given else None


def _selectors(text: str, flag: str) -> list[re.Match]:
    tokens = [t for t in re.split(r"[,\s]+", text.strip()) if t]
    found = []
    for token in tokens:
        m = SELECTOR.fullmatch(token)
        if not m:
            raise BadInput(f"{flag} {token!r} is not a selector: a pipeline name, with + before it (and what it "
                           "depends on) or after it (and what depends on it)")
        found.append(m)
    return found


def _unknown(registry: Registry, names: list[str], flag: str) -> None:
    for name in names:
        if name not in registry.pipelines and any(m.rsplit(".", 1)[-1] == name for m in registry.errors):
            registry.get(name)  # says why it did not load
    missing = [n for n in names if n not in registry.pipelines]
    if not missing:
        return
    close = sorted({c for n in missing for c in difflib.get_close_matches(n, list(registry.pipelines), 3, 0.5)})
    known = ", ".join(registry.names()) or "none"
    guess = f"did you mean {', '.join(close)}? " if close else ""
    raise BadInput(f"{flag}: unknown pipeline{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                   f"({guess}known: {known})")


def _closure(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def expand(registry: Registry, text: str, flag: str = "--select") -> tuple[list[str], set[str]]:
    """The names ``text`` selects: (those named, in the order given; those added by ``+``)."""
    selectors = _selectors(text, flag)
    if not selectors:
        raise BadInput(f"{flag} {text!r} names no pipeline")
    named = list(dict.fromkeys(m["name"] for m in selectors))
    _unknown(registry, named, flag)
    up = {n: set(p.depends_on) for n, p in registry.pipelines.items()}
    down: dict[str, set[str]] = {n: set() for n in registry.pipelines}
    for n, deps in up.items():
        for d in deps:
            down.setdefault(d, set()).add(n)
    added: set[str] = set()
    for m in selectors:
        if m["up"]:
            added |= _closure(m["name"], up)
        if m["down"]:
            added |= _closure(m["name"], down)
    return named, added - set(named)


def select(registry: Registry, chosen: str | None = None, exclude: str | None = None,
           why_not: Callable[[Pipeline], str | None] | None = None) -> Selection:
    """The pipelines of ``chosen`` (every pipeline when None) less those of ``exclude``, in dependency order.
    ``why_not(p)`` says why a pipeline does not qualify here (None when it does): one named is bad input, one a
    ``+`` reached (or, with no ``chosen``, any) is left out, with the reason."""
    why_not = why_not or (lambda p: None)
    if chosen is None:
        named, added = [], set(registry.pipelines)
    else:
        named, added = expand(registry, chosen, "--select")
    for name in named:
        reason = why_not(registry.pipelines[name])
        if reason:
            raise BadInput(f"pipeline {name} {reason}")
    removed: set[str] = set()
    if exclude is not None:
        gone, more = expand(registry, exclude, "--exclude")
        removed = set(gone) | more
    left_out = sorted((n, why) for n in added - removed if (why := why_not(registry.pipelines[n])))
    wanted = (set(named) | added) - removed - {n for n, _ in left_out}
    if not wanted:
        what = "every pipeline is excluded" if exclude is not None else "there are no pipelines to choose from"
        if chosen is None and left_out and exclude is None:
            what = f"no pipeline qualifies ({'; '.join(f'{n} {why}' for n, why in left_out)})"
        raise BadInput(f"nothing selected: {what}")
    names = tuple(p.name for p in registry.ordered(wanted))
    return Selection(names, tuple(left_out) if chosen is not None else ())
