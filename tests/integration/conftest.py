"""Fixtures the migration tests share: a migrations folder of their own on the session's engine."""

import pytest

from ops.migrations.migrator import Migrations


@pytest.fixture
def mdir(tmp_path):
    return tmp_path / "migrations"


@pytest.fixture
def msettings(settings, mdir):
    return settings.with_overrides(migrations__dir=str(mdir))


@pytest.fixture
def migrations(msettings, db, mdir):
    mdir.mkdir()
    return Migrations(msettings, db=db)


def tables(db):
    """The user's tables (chops' own bookkeeping tables left out)."""
    return sorted(r["name"] for r in db.rows("SELECT name FROM system.tables WHERE database = currentDatabase() "
                                             "AND name NOT LIKE '\\_chops%'"))


def states(m):
    return {r["id"]: r["state"] for r in m.status()}
