"""chops tasks: `inv --list` shows them all; `make help` shows the common ones."""

from invoke import Collection

from ops.cli import backfill, bench, config, db, deploy, pipeline, proc, report, test
from ops.cli.base import quiet_closed_pipe

quiet_closed_pipe()  # `inv --list | head` ends quietly, like any reader that stops early
ns = Collection(db.ns, pipeline.ns, backfill.ns, proc.ns, deploy.ns, config.config, bench.bench, report.report,
                test.test)
