"""Database basics: set up, drop, describe, query. Plain functions over settings; they return data."""

from __future__ import annotations

import re
from typing import Any

from ops.clickhouse.client import Database, close_engine, connect, target
from ops.core.errors import BadInput

READ_STATEMENT = re.compile(r"^\s*(\(|SELECT|WITH|SHOW|DESC|DESCRIBE|EXPLAIN|EXISTS|CHECK)\b", re.I)


def setup_plan(settings) -> dict[str, Any]:
    """What ``setup`` would do, without doing it (it opens nothing)."""
    tgt = target(settings)
    plan = {"url": tgt.url, "database": tgt.database, "engine": tgt.kind, "actions": []}
    if tgt.kind == "embedded":
        if not tgt.path.exists():
            plan["actions"].append(f"create data directory {tgt.path}")
    plan["actions"].append(f"create database {tgt.database} if it does not exist")
    return plan


def setup(settings) -> dict[str, Any]:
    """Create the data directory (embedded) and the database. Idempotent: says whether anything was created."""
    tgt = target(settings)
    created_dir = tgt.kind == "embedded" and not (tgt.path / "metadata").exists()
    db = connect(settings, create=True)
    created_db = db.created
    try:
        version = db.scalar("SELECT version()")
    finally:
        db.close()
    return {"url": tgt.url, "database": tgt.database, "engine": tgt.kind, "version": version,
            "created_data_dir": created_dir, "created_database": created_db}


def drop(settings) -> dict[str, Any]:
    """Drop the configured database and every table in it. The caller asks for confirmation."""
    tgt = target(settings)
    db = connect(settings, admin=True)
    try:
        if not db.exists():
            return {"database": tgt.database, "url": tgt.url, "dropped": False, "tables": 0}
        tables = int(db.scalar("SELECT count() FROM system.tables WHERE database = {db:String}", {"db": tgt.database}))
        db.command(f"DROP DATABASE IF EXISTS `{tgt.database}` SYNC")
    finally:
        db.close()
    return {"database": tgt.database, "url": tgt.url, "dropped": True, "tables": tables}


def info(settings) -> dict[str, Any]:
    """Engine, version, URL (password masked), and each table with its rows and bytes."""
    db = connect(settings)
    try:
        version = db.scalar("SELECT version()")
        uptime = db.scalar("SELECT uptime()")
        tables = db.rows(
            "SELECT name, engine, total_rows AS rows, total_bytes AS bytes "
            "FROM system.tables WHERE database = {db:String} AND NOT is_temporary ORDER BY name",
            {"db": db.name},
        )
    finally:
        db.close()
    tgt = db.target
    data: dict[str, Any] = {
        "engine": "embedded chDB" if tgt.kind == "embedded" else "ClickHouse server",
        "version": version,
        "url": tgt.url,
        "database": tgt.database,
        "uptime_seconds": uptime,
        "tables": [{**t, "rows": t["rows"] or 0, "bytes": t["bytes"] or 0} for t in tables],
    }
    if tgt.kind == "embedded":
        data["data_path"] = str(tgt.path)
        data["data_bytes"] = sum(f.stat().st_size for f in tgt.path.rglob("*") if f.is_file())
    return data


def query(settings, sql: str) -> dict[str, Any]:
    """Run one statement for an operator. Reads return columns and rows; anything else returns its summary."""
    if not sql or not sql.strip():
        raise BadInput("no SQL given (usage: inv db.query \"SELECT ...\")")
    db: Database = connect(settings)
    try:
        if READ_STATEMENT.match(sql):
            result = db.query(sql)
            return {"read": True, "columns": list(result.column_names), "rows": [list(r) for r in result.result_rows]}
        out = db.command(sql)
        return {"read": False, "columns": [], "rows": [], "result": out if isinstance(out, (str, int)) else "OK"}
    finally:
        db.close()


def close() -> None:
    close_engine()
