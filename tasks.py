"""chops tasks: `inv --list` shows them all; `make help` shows the common ones."""

from invoke import Collection

from ops.cli import bench, config, db, test

ns = Collection(db.ns, config.config, bench.bench, test.test)
