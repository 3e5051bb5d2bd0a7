"""config: the effective settings."""

from __future__ import annotations

from ops.cli.base import settings, task


@task(help={"json": "print as JSON"})
def config(c, json=False):
    """Show the effective settings, secrets masked, and where each value came from."""
    from ops.core import output

    s = settings()
    rows = s.describe()
    if json:
        return output.print_json({"env": s.env, "settings": rows})
    output.print_table([(r["key"], r["value"], r["source"]) for r in rows], ["key", "value", "from"],
                       title=f"environment: {s.env}")
