"""db: the database: setup, drop, info, query."""

from __future__ import annotations

from invoke import Collection

from ops.cli.base import settings, stdin_is_interactive, task
from ops.errors import BadInput


@task(help={"dry_run": "print what would be created and change nothing", "json": "print the result as JSON"})
def setup(c, dry_run=False, json=False):
    """Create the data directory and the database (idempotent: a second run changes nothing)."""
    from ops import db, output

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
    from ops import db, output
    from ops.clickhouse import target

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
    from ops import db, output

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


@task(help={"sql": "one SQL statement", "json": "print rows as JSON objects", "csv": "print rows as CSV"})
def query(c, sql, json=False, csv=False):
    """Run one SQL statement and print the result as a table (or --json / --csv)."""
    from ops import db, output

    if json and csv:
        raise BadInput("choose one of --json and --csv")
    result = db.query(settings(), sql)
    columns, rows = result["columns"], result["rows"]
    if json:
        return output.print_json([dict(zip(columns, r)) for r in rows] if columns else result)
    if csv:
        return output.print_csv(rows, columns)
    if not columns:
        return output.info(str(result.get("result", "OK")) or "OK")
    output.print_table(rows, columns)
    output.info(f"{len(rows)} row{'s' if len(rows) != 1 else ''}")


ns = Collection("db", setup, drop, info, query)
