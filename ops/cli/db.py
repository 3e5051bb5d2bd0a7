"""db: the database: setup, drop, info, query."""

from __future__ import annotations

from invoke import Collection

from ops.cli.base import settings, stdin_is_interactive, task, whole_number
from ops.core.errors import BadInput


@task(help={"dry_run": "print what would be created and change nothing", "json": "print the result as JSON"})
def setup(c, dry_run=False, json=False):
    """Create the data directory and the database (idempotent: a second run changes nothing)."""
    from ops.clickhouse import admin as db
    from ops.core import output

    if dry_run:
        plan = db.setup_plan(settings())
        if json:
            return output.print_json(plan)
        output.info(f"would set up {plan['database']} at {plan['url']}:")
        for action in plan["actions"]:
            output.info(f"  - {action}")
        return
    result = db.setup(settings())
    if json:
        return output.print_json(result)
    if result["created_database"]:
        output.info(f"created database {result['database']} at {result['url']} (ClickHouse {result['version']})")
    else:
        output.info(f"database {result['database']} at {result['url']} is already set up; nothing changed")


@task(help={
    "yes": "do not ask; required when not run from a terminal",
    "dry_run": "say what would be dropped and change nothing",
    "json": "print the result as JSON",
})
def drop(c, yes=False, dry_run=False, json=False):
    """Drop the database and all its tables (asks first; --yes for scripts)."""
    from ops.clickhouse import admin as db
    from ops.core import output
    from ops.clickhouse.client import target

    tgt = target(settings())
    if dry_run:
        output.info(f"would drop database {tgt.database} at {tgt.url} and every table in it")
        return
    if not yes:
        if not stdin_is_interactive():
            raise BadInput(f"refusing to drop database {tgt.database} without --yes in a non-interactive shell")
        answer = input(f"Drop database {tgt.database} at {tgt.url} and every table in it? Type its name to confirm: ")
        if answer.strip() != tgt.database:
            raise BadInput("not confirmed; nothing was dropped")
    result = db.drop(settings())
    if json:
        return output.print_json(result)
    if result["dropped"]:
        output.info(f"dropped database {result['database']} ({result['tables']} tables) at {result['url']}")
    else:
        output.info(f"database {result['database']} does not exist at {result['url']}; nothing to drop")


@task(help={"json": "print as JSON"})
def info(c, json=False):
    """Show the engine, its version, the URL (password masked) and every table with rows and bytes."""
    from ops.clickhouse import admin as db
    from ops.core import output

    data = db.info(settings())
    if json:
        return output.print_json(data)
    pairs = [("engine", data["engine"]), ("version", data["version"]), ("url", data["url"]),
             ("database", data["database"])]
    if "data_path" in data:
        pairs.append(("on disk", output.human_bytes(data["data_bytes"])))
    output.print_pairs(pairs)
    if data["tables"]:
        output.print_table(
            [(t["name"], t["engine"], f"{t['rows']:,}", output.human_bytes(t["bytes"])) for t in data["tables"]],
            ["table", "engine", "rows", "bytes"], right=["rows", "bytes"],
        )
    else:
        output.info("no tables yet")


@task(help={"sql": "one SQL statement (several, separated by ';', are refused with exit 2: run each on its own)",
            "json": "print rows as JSON objects", "csv": "print rows as CSV"})
def query(c, sql, json=False, csv=False):
    """Run one SQL statement and print the result as a table (or --json / --csv); several statements are refused."""
    from ops.clickhouse import admin as db
    from ops.core import output
    from ops.migrations.sqlsplit import split_statements

    if json and csv:
        raise BadInput("choose one of --json and --csv")
    statements = split_statements(sql or "")
    if len(statements) > 1:
        raise BadInput(f"{output.plural(len(statements), 'statement')} given; db.query runs one at a time",
                       hint="run each with its own inv db.query, or put them in a migration: inv db.new NAME")
    result = db.query(settings(), sql)
    columns, rows = result["columns"], result["rows"]
    if json:
        return output.print_json([dict(zip(columns, r)) for r in rows] if result["read"] else result)
    if csv:
        return output.print_csv(rows, columns)
    if not result["read"]:
        return output.info(str(result.get("result", "OK")) or "OK")
    output.print_table(rows, columns)
    output.info(f"{len(rows)} row{'s' if len(rows) != 1 else ''}")


def _migrations():
    from ops.core import output
    from ops.migrations.migrator import Migrations

    return Migrations(settings(), notify=output.info)


def _print_plan(plan, verb):
    from ops.core import output

    for item in plan:
        output.info(f"-- {verb} {item['id']}")
        for n, sql in enumerate(item["statements"], 1):
            print(f"-- statement {n}\n{sql};")


@task(help={
    "to": "stop after this migration (its id, or its number)",
    "dry_run": "print the rendered SQL of each statement and change nothing",
    "resume": "continue a dirty migration from its first unfinished statement (after fixing the file)",
    "undo_on_failure": "when a statement fails, undo the statements of that migration that ran, so nothing is "
                       "left dirty (the migrations applied before it stay); where it cannot be undone the error "
                       "says what state the database is in and the command that repairs it",
    "json": "print the result as JSON (a failure too: {error, migration, statement, undone, state, repair})",
})
def migrate(c, to=None, dry_run=False, resume=False, undo_on_failure=False, json=False):
    """Apply pending migrations in order (migrations.dir); refuses while anything is dirty or drifted."""
    from ops.core import output

    def progress(f, n, total):
        if not json:
            output.info(f"applying {f.id} ({n + 1}/{total}, {output.plural(len(f.statements), 'statement')})")

    result = _migrations().migrate(to=to, dry_run=dry_run, resume=resume, progress=progress,
                                   undo_on_failure=undo_on_failure)
    if json:
        return output.print_json(result)
    if dry_run:
        _print_plan(result["plan"], "would apply")
        return output.info(f"{output.plural(len(result['plan']), 'migration')} would be applied; nothing was changed")
    if not result["applied"]:
        return output.info("nothing to apply: every migration is applied")
    output.info(f"applied {output.plural(len(result['applied']), 'migration')}: {', '.join(result['applied'])}")


@task(help={"json": "print as JSON (a list of migrations; a failure: {error, migrations})",
            "check": "exit 1 when anything is pending, dirty or drifted (for CI and deploys); migrations the "
                     "database is ahead with (applied, no file in this release) only warn"})
def status(c, json=False, check=False):
    """Every migration with its state (applied, pending, dirty, drifted, ahead), when and by whom it was applied."""
    from ops.core import output
    from ops.core.errors import WorkFailed
    from ops.migrations.checks import ahead_message

    rows = _migrations().status()
    bad = [r for r in rows if r["state"] not in ("applied", "ahead")] if check else []
    if bad:
        failed = WorkFailed(f"{output.plural(len(bad), 'migration')} not applied cleanly: "
                            + ", ".join(f"{r['id']} ({r['state']})" for r in bad[:5]),
                            hint="run: inv db.migrate" if all(r["state"] == "pending" for r in bad)
                            else "see: inv db.validate")
        failed.details = {"migrations": rows}  # with --json, the one JSON document printed
        if not json:
            _print_status(rows)
        raise failed
    if json:
        return output.print_json(rows)
    _print_status(rows)
    ahead = [r["id"] for r in rows if r["state"] == "ahead"]
    if ahead:
        them = "it" if len(ahead) == 1 else "them"
        output.info(f"warning: {ahead_message(ahead)} (a newer release applied {them}; inv db.rollback undoes "
                    f"{them}, if needed)")


def _print_status(rows):
    from ops.core import output

    output.print_table([(r["id"], r["state"], r["applied_at"] or "", r["applied_by"] or "", r["note"])
                        for r in rows], ["migration", "state", "applied", "by", "note"])
    counts = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    output.info(", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no migrations")


@task(help={"name": "what the migration does, e.g. add_events_table (lowercase, digits, _)",
            "dry_run": "say which files would be written; write nothing"})
def new(c, name, dry_run=False):
    """Write the next-numbered NNNN_name.sql and NNNN_name.rollback.sql from the template."""
    from ops.core import output

    root = settings().root
    for path in _migrations().new(name, dry_run=dry_run):
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        output.info(f"{'would write' if dry_run else 'wrote'} {shown}")


@task(help={
    "count": "how many migrations to roll back, newest first (default 1)",
    "to": "roll back every migration applied after this one (it stays applied)",
    "statements": "undo the dirty migration with these statements of its rollback file, by number, run in this "
                  "order (e.g. 3,2; when chops cannot pair them itself it lists them)",
    "allow_empty": "record a migration rolled back even when its rollback file runs nothing (and does not say "
                   "'-- chops: nothing to undo')",
    "dry_run": "print the rollback SQL and change nothing",
    "json": "print the result as JSON",
})
def rollback(c, count=None, to=None, statements=None, allow_empty=False, dry_run=False, json=False):
    """Roll back applied migrations (newest first), or undo what ran of a dirty one."""
    from ops.core import output

    if count is not None:
        count = whole_number(count, "--count", minimum=0)
    chosen = [whole_number(n, "--statements") for n in statements.split(",")] if statements else None
    result = _migrations().rollback(count=count, to=to, dry_run=dry_run, statements=chosen,
                                    allow_empty=allow_empty)
    if json:
        return output.print_json(result)
    if dry_run:
        _print_plan(result["plan"], "would roll back")
    for item in result["ran_nothing"]:
        stays = f": {', '.join(item['stays'])} stay{'s' if len(item['stays']) == 1 else ''}" if item["stays"] else ""
        output.info(f"warning: the rollback of {item['id']} {'would run' if dry_run else 'ran'} nothing (its rollback "
                    f"file has no statements){stays}")
    if dry_run:
        return output.info(f"{output.plural(len(result['plan']), 'migration')} would be rolled back; nothing was "
                           "changed")
    output.info(f"rolled back {', '.join(result['rolled_back'])}")


@task(help={"json": "print the findings as JSON (with errors: {error, findings})",
            "no_sql": "skip the engine's syntax check of pending migrations"})
def validate(c, json=False, no_sql=False):
    """Check migrations: drift, duplicates, conflicts, cycles, unknown depends, rollback files, SQL syntax."""
    from ops.core import output
    from ops.core.errors import WorkFailed

    findings = _migrations().validate(check_sql=not no_sql)
    errors = [f for f in findings if f["level"] == "error"]
    if errors:
        failed = WorkFailed(f"{output.plural(len(errors), 'error')} in migrations")
        failed.details = {"findings": findings}  # with --json, the one JSON document printed
    if json and not errors:
        output.print_json(findings)
    elif findings and not json:
        output.print_table([(f["level"], f["check"], f["migration"], f["message"]) for f in findings],
                           ["level", "check", "migration", "message"])
    elif not findings:
        output.info("migrations are valid")
    if errors:
        raise failed


@task(help={"migration": "only this migration (id or number)", "json": "print as JSON"})
def history(c, migration=None, json=False):
    """The journal of every migration attempt, statement by statement."""
    from ops.core import output

    rows = _migrations().history(migration)
    if json:
        return output.print_json(rows)
    output.print_table([(r["created_at_utc"][:23], r["migration_id"], r["operation"], r["event"],
                         r["statement"] or "", f"{r['username']}@{r['hostname']}", r["error"]) for r in rows],
                       ["at (UTC)", "migration", "operation", "event", "stmt", "by", "error"])


@task(help={
    "migration": "the migration to record as applied (id or number)",
    "through": "a baseline: record every migration up to and including MIGRATION as applied, in one journal write "
               "(refused if any of them is dirty or drifted)",
    "dry_run": "say what would be recorded; record nothing",
    "json": "print the ids recorded (or that would be) as JSON",
})
def mark(c, migration, through=False, dry_run=False, json=False):
    """Record a migration (or, with --through, every one up to it) as applied without running it."""
    from ops.core import output

    if through:
        ids = _migrations().mark_through(migration, dry_run=dry_run)
        if json:
            return output.print_json({"marked": ids, "dry_run": dry_run})
        if not ids:
            return output.info(f"every migration up to {migration} is already applied; nothing changed")
        shown = ids[0] if len(ids) == 1 else f"{ids[0]} … {ids[-1]}"
        n = output.plural(len(ids), "migration")
        return output.info(f"would mark {n} applied ({shown}); nothing was changed" if dry_run
                           else f"marked {n} applied ({shown})")
    changed = _migrations().mark(migration, dry_run=dry_run)
    if json:
        return output.print_json({"marked": [migration] if changed else [], "dry_run": dry_run})
    if not changed:
        return output.info(f"{migration} is already applied; nothing changed")
    output.info(f"would mark {migration} applied; nothing was changed" if dry_run else f"marked {migration} applied")


@task(help={"migration": "the migration to record as not applied (id or number)", "dry_run": "say it; record nothing"})
def unmark(c, migration, dry_run=False):
    """Record a migration as not applied without running anything (repair; also clears dirty)."""
    from ops.core import output

    changed = _migrations().unmark(migration, dry_run=dry_run)
    if not changed:
        return output.info(f"{migration} is not applied; nothing changed")
    output.info(f"would unmark {migration}; nothing was changed" if dry_run else f"unmarked {migration}")


@task(name="break-lock", help={"dry_run": "say who holds the lock; remove nothing"})
def break_lock(c, dry_run=False):
    """Remove the migration lock (when its holder is gone)."""
    from ops.core import output
    from ops.migrations.yoyo_backend import describe

    holder = _migrations().break_lock(dry_run=dry_run)
    if not holder:
        return output.info("the migration lock is not held")
    output.info(f"would remove the migration lock of {describe(holder)}" if dry_run
                else f"removed the migration lock of {describe(holder)}")


@task(name="import", help={
    "directory": "the other tool's migration directory",
    "from_": "its format: golang-migrate, goose, dbmate, or plain (numbered N_name.sql files, any digit count, "
             "with N_name.down.sql or .rollback.sql beside them or not)",
    "adopt": "also read the tool's version table in this database and record what it applied as applied, "
             "without running it",
    "table": "with --adopt: the tool's version table (default schema_migrations; goose: goose_db_version)",
    "dry_run": "say what would be written (and adopted) and change nothing",
    "json": "print the result as JSON",
})
def import_(c, directory, from_=None, adopt=False, table=None, dry_run=False, json=False):
    """Convert another tool's migrations (golang-migrate, goose, dbmate, plain) into migrations.dir, versions kept."""
    from pathlib import Path

    from ops.core import output
    from ops.core.errors import BadInput
    from ops.migrations.adopt import import_and_adopt
    from ops.migrations.importers import import_migrations

    if not from_:
        raise BadInput("--from is required: golang-migrate, goose, dbmate or plain")
    if table and not adopt:
        raise BadInput("--table names the version table --adopt reads: give --adopt too")
    if adopt and from_ == "plain":
        raise BadInput("--adopt reads the other tool's version table, and plain numbered files have no known one",
                       hint="import without --adopt, then record what is applied with inv db.mark ID --through")
    if adopt:
        result = import_and_adopt(_migrations(), Path(directory), from_, table=table, dry_run=dry_run)
    else:
        result = {"imported": import_migrations(Path(directory), settings().path("migrations.dir"), from_,
                                                dry_run=dry_run)}
    if json:
        return output.print_json(result if adopt else result["imported"])
    rows = result["imported"]
    output.print_table([(", ".join(r["source"]), r["id"], "no-op" if r["noop_rollback"] else "yes", r["action"])
                        for r in rows], ["source", "migration", "rollback", "action"])
    for message in (x["message"] for r in rows for x in r["collisions"]):
        output.info(f"warning: {message}")
    for note in (note for r in rows for note in r["notes"]):
        output.info(f"note: {note}")
    _print_variables(rows)
    written = sum(r["action"] == "write" for r in rows)
    output.info(f"{'would write' if dry_run else 'wrote'} {output.plural(written, 'migration')}; "
                f"{len(rows) - written} already imported")
    if adopt:
        _print_adoption(result["adoption"], dry_run)


def _print_variables(rows):
    """The template variables the imported set uses, and which of them [migrations.variables] does not give yet."""
    from ops.core import output

    used: dict[str, dict] = {}
    for variable in (v for r in rows for v in r["variables"]):
        entry = used.setdefault(variable["name"], dict(variable))
        entry["required"] = entry["required"] or variable["required"]
    if not used:
        return
    configured = {name.upper() for name in settings().get("migrations.variables")}
    missing = sorted(name for name, v in used.items() if v["required"] and name not in configured)
    output.info("the migrations use template variables: " + ", ".join(
        name + ("" if v["required"] else f" (default {v['default']!r})") for name, v in used.items()))
    if missing:
        output.info(f"warning: not set yet: {', '.join(missing)}; set them in [migrations.variables] "
                    "(config/<env>.toml) or as CHOPS_MIGRATIONS__VARIABLES__<NAME> before inv db.migrate")


def _print_adoption(plan, dry_run):
    from ops.core import output

    if plan["known"]:
        output.info(f"left {output.plural(len(plan['known']), 'migration')} as chops' journal has them: "
                    f"{', '.join(plan['known'])}")
    for gap in plan["gaps"]:
        output.info(f"warning: {gap} is pending below migrations recorded applied, which db.validate calls a "
                    f"conflict: apply its statements by hand and run inv db.mark {gap}")
    ids = plan["adopt"] if dry_run else plan["recorded"]
    verb = "would record" if dry_run else "recorded"
    output.info(f"{verb} {output.plural(len(ids), 'migration')} as applied from {plan['table']}"
                + (f" ({ids[0]} … {ids[-1]})" if ids else "") + f"; {len(plan['pending'])} pending"
                + ("; nothing was changed" if dry_run else ""))


ns = Collection("db", setup, drop, info, query, migrate, status, new, rollback, validate, history, mark, unmark,
                break_lock, import_)
