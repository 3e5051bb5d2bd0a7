"""Repairs of the journal that run nothing: record a migration as applied (``db.mark``, one, a baseline
``--through``, or many at once for an adoption), as not applied (``db.unmark``), or as begun and unfinished (an
adopted tool's dirty state). Each decides on the one state (``Migrations.states``), under the migration lock,
and writes its events in one journal write.

A mixin of :class:`ops.migrations.migrator.Migrations`, which provides ``files``, ``states``, ``_resolve``,
``_locked``, ``_event_row`` and ``_write``.
"""

from __future__ import annotations

import uuid
from typing import Iterable

from ops.migrations import checks
from ops.migrations.yoyo_backend import ordered_files


class Repairs:
    def mark(self, ident: str, dry_run: bool = False) -> bool:
        """Record a migration as applied without running it (a repair: also settles a dirty one whose effect is
        there). False when it already was."""
        files = self.files()
        f = self._resolve(files, ident)
        if self.states(files)[f.id].state == "applied":
            return False
        if dry_run:
            return True
        with self._locked():
            if self.states(files)[f.id].state == "applied":
                return False  # another process did it while this one waited for the lock
            self._write([self._event_row(f, "mark", "done", str(uuid.uuid4()))])
        return True

    def mark_through(self, ident: str, dry_run: bool = False) -> list[str]:
        """A baseline: record every migration up to and including ``ident`` (yoyo's order) as applied without
        running it, in one journal write. Returns the ids recorded (``dry_run``: that would be); the ones already
        applied are left as they are. Refuses (``BadInput``, nothing recorded) when any of them is dirty or drifted."""
        files = self.files()
        target = self._resolve(files, ident)
        ordered = [f.id for f in ordered_files(files)]
        return self.mark_many(ordered[: ordered.index(target.id) + 1], dry_run=dry_run)

    def mark_many(self, idents: Iterable[str], dry_run: bool = False) -> list[str]:
        """Record the migrations ``idents`` (ids or numbers) as applied without running them, in one journal write;
        returns the ids recorded (``dry_run``: that would be), leaving those already applied. Refuses (``BadInput``,
        nothing recorded) when any of them is dirty or drifted: those need a decision of their own."""
        files = self.files()
        chosen = [self._resolve(files, i) for i in idents]
        if dry_run:
            return [f.id for f in checks.markable(chosen, self.states(files))]
        with self._locked():
            todo = checks.markable(chosen, self.states(files))
            attempt = str(uuid.uuid4())
            self._write([self._event_row(f, "mark", "done", attempt) for f in todo])
        return [f.id for f in todo]

    def unmark(self, ident: str, dry_run: bool = False) -> bool:
        """Record a migration as not applied without running anything. False when it was not applied or dirty."""
        files = self.files()
        states = self.states(files)
        f = next((x for x in files if x.id == ident.strip()), None)
        mid = f.id if f else (ident.strip() if ident.strip() in states else self._resolve(files, ident).id)
        if states[mid].state == "pending":
            return False
        if dry_run:
            return True
        with self._locked():
            if self.states(files)[mid].state == "pending":
                return False  # another process did it while this one waited for the lock
            self._write([self._event_row(f or mid, "unmark", "done", str(uuid.uuid4()))])
        return True

    def mark_dirty(self, ident: str, dry_run: bool = False) -> bool:
        """Record a pending migration as begun and not finished: dirty, with no statement done (what another tool's
        dirty state means when chops adopts it). Then ``--resume`` runs it from its first statement, ``db.rollback``
        undoes nothing and ``db.mark`` settles it. False when it is not pending."""
        files = self.files()
        f = self._resolve(files, ident)
        if self.states(files)[f.id].state != "pending":
            return False
        if dry_run:
            return True
        with self._locked():
            if self.states(files)[f.id].state != "pending":
                return False  # another process changed it while this one waited for the lock
            self._write([self._event_row(f, "apply", "begin", str(uuid.uuid4()))])
        return True

