"""Pipelines: the definition (decorator, checks, discovery), the runner, the run ledger, backfills (plan, scheduler,
execution), cron schedules (and their doctor) and sample data. Imports ``clickhouse`` and ``core``.

A pipeline module writes ``from ops.pipelines import checks, pipeline``: those two are this package's public face.
"""

from ops.pipelines.definition import checks, pipeline

__all__ = ["checks", "pipeline"]
