"""chops tasks: `inv --list` shows them all; `make help` shows the common ones."""

from invoke import Collection

from ops.cli import backfill, bench, config, db, deploy, pipeline, proc, test

ns = Collection(db.ns, pipeline.ns, backfill.ns, proc.ns, deploy.ns, config.config, bench.bench, test.test)
