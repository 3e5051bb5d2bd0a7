"""The target's database as a deploy sees it, always through ``inv … --json`` of a release on the target: a dirty
database refused before anything is shipped (:func:`refuse_dirty`), migrations applied with the undo of a failing
one (:func:`migrate`), the embedded database's lock announced and waited for within ``deploy.db_wait``
(:func:`announce_lock`), and the migrations an older release lacks undone (:func:`undo_ahead`, for
``deploy.rollback --with-migrations``). Each failure says the database's state and the command that repairs it.
"""

from __future__ import annotations

from typing import Any, Mapping

from ops.core.errors import WorkFailed
from ops.core.output import plural, word
from ops.deploy.lock import describe_holder
from ops.deploy.targets import Target
from ops.deploy.transport import Notify, Remote, last_line, need_ok


def lock_env(settings) -> dict[str, str]:
    """The environment that bounds how long a task on the target waits for the embedded database's lock."""
    wait = str(settings.get("deploy.db_wait"))
    return {"CHOPS_CLICKHOUSE__LOCK_TIMEOUT": wait, "CHOPS_PROC__DB_WAIT": wait}


def exec_hint(flags: str, *task: str) -> str:
    """The command that runs ``task`` in the target's current release: ``inv deploy.exec FLAGS -- TASK``."""
    return f"inv deploy.exec {flags} -- {' '.join(task)}".replace("  ", " ")


def announce_lock(remote: Remote, settings, notify: Notify, prefix: str, what: str,
                  holder: Mapping[str, Any] | None = None, ask: bool = True) -> None:
    """Say who holds the embedded database's lock, if anyone, and how long ``what`` waits for it."""
    if ask:
        holder = remote.helper("dblock", path=remote.target.path).get("holder")
    if holder:
        notify(f"{prefix}      the database is in use by {describe_holder(holder)}: {what} waits up to "
               f"{settings.get('deploy.db_wait')}s for it (deploy.db_wait)")


def status_rows(remote: Remote, settings, directory: str) -> tuple[list[dict[str, Any]] | None, str]:
    """``db.status --json`` of the release in ``directory``: its rows, or None and why it could not run."""
    t = remote.target
    done, rows = remote.inv_json(directory, t.environment, "db.status", extra_env=lock_env(settings),
                                 timeout=settings.get("deploy.db_wait") + 120, check=False)
    if not isinstance(rows, list):
        return None, last_line(done.stderr) or f"exit {done.returncode}"
    return rows, ""


def ahead_of(rows: list[dict[str, Any]]) -> list[str]:
    """The applied migrations whose files a release lacks (``ahead``; older chops calls them drifted, file missing)."""
    return [r["id"] for r in rows if r.get("state") == "ahead"
            or (r.get("state") == "drifted" and r.get("note") == "file missing")]


def dirty_repair(row: Mapping[str, Any], flags: str) -> str:
    """The commands that settle a dirty migration from here, each run in the target's current release."""
    mid = row["id"]
    repair = str(row.get("repair") or "")
    if repair.startswith("inv db."):  # the one command db.status names, run there
        return (f"repair: {exec_hint(flags, repair[len('inv '):])}; see it: {exec_hint(flags, 'db.status')}; then "
                "deploy again")
    return (f"see it: {exec_hint(flags, 'db.status')}; undo what ran: {exec_hint(flags, 'db.rollback')}; or, if its "
            f"effect is complete: {exec_hint(flags, 'db.mark', mid)}; then deploy again")


def refuse_dirty(remote: Remote, settings, target: Target, directory: str, flags: str) -> str:
    """Before anything is shipped: refuse (WorkFailed) when a migration is dirty in the target's database, naming the
    repair. Returns a few words on the database for the preflight line."""
    rows, why = status_rows(remote, settings, directory)
    if rows is None:
        return f"database state not read ({why}); migrate checks it again"
    dirty = [r for r in rows if r.get("state") == "dirty"]
    if dirty:
        r = dirty[0]
        raise WorkFailed(f"the database on {target.host} is DIRTY: migration {r['id']} {r.get('note') or 'did not finish'}"
                         "; nothing was shipped or changed", hint=dirty_repair(r, flags))
    ahead = ahead_of(rows)
    applied = sum(1 for r in rows if r.get("state") in ("applied", "ahead"))
    return f"database clean ({applied} applied" + (f"; ahead of current: {', '.join(ahead)})" if ahead else ")")


def migrate(remote: Remote, settings, target: Target, directory: str, flags: str) -> str:
    """``db.setup`` and ``db.migrate --undo-on-failure`` of the new release. A failing migration is undone as far as
    it can be: the error says whether the database is clean again or dirty, and how to repair it."""
    env = lock_env(settings)
    timeout = settings.get("deploy.db_wait") + settings.get("deploy.command_timeout")
    remote.inv_json(directory, target.environment, "db.setup", extra_env=env, timeout=timeout)
    done, out = remote.inv_json(directory, target.environment, "db.migrate", "--undo-on-failure", extra_env=env,
                                timeout=timeout, check=False)
    if done.returncode != 0 and isinstance(out, dict) and out.get("error"):
        raise migration_failure(out, target, flags)
    need_ok(done, "db.migrate", target.host)
    applied = out.get("applied") if isinstance(out, dict) else None
    if isinstance(applied, list):
        return f"{plural(len(applied), 'migration')} applied" + (f": {', '.join(map(str, applied))}" if applied else "")
    return last_line(done.stderr) or "migrations up to date"


def migration_failure(out: Mapping[str, Any], target: Target, flags: str) -> WorkFailed:
    """``db.migrate --undo-on-failure --json``'s error object as one line: what failed, whether it was undone, the
    state the database is in, and (dirty) the commands that repair it, each as ``inv deploy.exec`` to this target."""
    mid, statement = out.get("migration") or "?", out.get("statement")
    where = f"migration {mid}" + (f" statement {statement}" if statement else "")
    said = _without_hint(str(out.get("error") or ""))
    if out.get("state") == "clean":
        return WorkFailed(f"{where} failed on {target.host}: {said}; the database is clean as before",
                          hint="fix the migration and deploy again")
    ways = str(out.get("ways_out") or "")
    repair = ways.replace("inv db.", f"inv deploy.exec {flags} -- db.") if ways else dirty_repair({"id": mid}, flags)
    return WorkFailed(f"{where} failed on {target.host}: {said}; it could not be undone: the database is DIRTY "
                      f"({mid})", hint=repair)


def _without_hint(line: str) -> str:
    """A remote error line without its own ``(… inv …)`` hint, which names commands to run there, not here."""
    cut = line.rfind(" (")
    return line[:cut] if cut > 0 and line.endswith(")") and "inv " in line[cut:] else line


def undo_ahead(remote: Remote, settings, target: Target, older: str, newer: str) -> str:
    """Before a rollback to the release in ``older``: undo the migrations it lacks, with ``db.rollback`` of the
    release in ``newer`` (which has their files; the journal keeps their rollback SQL besides)."""
    rows, why = status_rows(remote, settings, older)
    if rows is None:
        raise WorkFailed(f"cannot read the database state on {target.host}: {why}; nothing was changed")
    ahead = ahead_of(rows)
    if not ahead:
        return "no migrations to undo"
    kept = [r["id"] for r in rows if r.get("state") == "applied"]
    args = ["--to", kept[-1]] if kept else ["--count", str(len(ahead))]
    done, out = remote.inv_json(newer, target.environment, "db.rollback", *args, extra_env=lock_env(settings),
                                timeout=settings.get("deploy.db_wait") + settings.get("deploy.command_timeout"),
                                check=False)
    if done.returncode != 0:
        said = (out or {}).get("error") if isinstance(out, dict) else None
        raise WorkFailed(f"undoing {word(len(ahead), 'migration')} {', '.join(ahead)} on {target.host} failed: "
                         f"{said or last_line(done.stderr) or done.returncode}; current was not switched")
    return f"undid {plural(len(ahead), 'migration')}: {', '.join(ahead)}"
