"""Shared fixtures.

* Markers ``unit`` / ``integration`` / ``e2e`` come from the directory a test lives in.
* Each test process (pytest-xdist worker) opens one embedded engine, in a directory of its own; each test that
  asks for ``db`` gets a database of its own on it, dropped afterwards. (chDB: one path per process.)
* ``require(component, why)`` skips when the machine lacks a component, and fails under ``CI=true``.
* ``project`` is a throwaway copy of config/ for settings tests; ``run_inv`` runs the real ``inv`` in a
  subprocess with its own data directory (so it never contends with this process's engine).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
VENV_BIN = Path(sys.executable).parent

# Started as a background job of a non-interactive shell (`make test-ci &`, nohup), this process and every process
# it starts would ignore SIGINT, and the tests that send a deploy or a follow Ctrl-C would fail for that alone. A
# handler is reset to the default by exec, so the processes the tests start get Ctrl-C as a user's terminal gives it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    for item in items:
        try:
            kind = Path(str(item.fspath)).resolve().relative_to(ROOT / "tests").parts[0]
        except ValueError:
            continue
        if kind in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, kind))


def require(condition: bool, why: str) -> None:
    """Skip with ``why`` when ``condition`` is false; under CI=true a missing component is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


def clean_environ(**overrides: str) -> dict[str, str]:
    """The process environment without any chops settings, plus ``overrides``: hermetic for tests."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CHOPS_") and k not in ("CLICKHOUSE_URL", "COV_CORE_SOURCE")}
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def worker_var(tmp_path_factory) -> Path:
    """This test process's var/ directory: its embedded engine lives here."""
    return tmp_path_factory.mktemp("var")


@pytest.fixture(scope="session")
def settings(worker_var):
    """Settings for this test process: CHOPS_ENV=test, var/ in a temporary directory, no .env."""
    from ops.core.settings import load_settings

    return load_settings(environ=clean_environ(
        CHOPS_ENV="test", CHOPS_PATHS__VAR=str(worker_var), CHOPS_ENV_FILE=str(worker_var / "no.env"),
    ))


@pytest.fixture
def db(settings):
    """A database of this test's own on this process's engine; dropped afterwards."""
    from ops.clickhouse.client import connect

    name = f"t_{uuid.uuid4().hex[:12]}"
    database = connect(settings, database=name, create=True)
    try:
        yield database
    finally:
        database.command(f"DROP DATABASE IF EXISTS `{name}` SYNC")
        database.close()


@pytest.fixture
def project(tmp_path) -> Path:
    """A throwaway project root with a copy of config/ (settings tests edit it freely)."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    return tmp_path


def inv(*args: str, env: dict | None = None, input: str | None = None, timeout: float = 120,
        cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the real ``inv`` of this virtualenv; stdin is not a terminal."""
    return subprocess.run(
        [str(VENV_BIN / "inv"), *args], cwd=cwd, env=env, input=input if input is not None else "",
        capture_output=True, text=True, timeout=timeout,
    )


def pipeline_project(tmp_path: Path, source: str, tables: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """An environment for ``inv`` with the pipeline module ``source`` (dedented) as its only pipelines, a var/ of
    its own, the database set up and migrated and ``tables`` created (each a CREATE statement); ``extra`` adds
    variables (paths a test pipeline reads)."""
    import textwrap

    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "testing.py").write_text(textwrap.dedent(source))
    env = clean_environ(CHOPS_ENV="test", CHOPS_PATHS__VAR=str(tmp_path / "var"), CHOPS_ENV_FILE=str(tmp_path / "none"),
                        CHOPS_PIPELINES__DIR=str(pipelines), **extra)
    for args in (["db.setup"], ["db.migrate"], *(["db.query", sql] for sql in tables)):
        result = inv(*args, env=env)
        assert result.returncode == 0, result.stderr
    return env


def query(env: dict, sql: str):
    """``inv db.query SQL --json`` in ``env``: the rows (or, for a statement that returns none, the text it printed)."""
    import json

    result = inv("db.query", sql, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip().startswith("[") else result.stdout


@pytest.fixture
def cli_var(tmp_path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def run_inv(cli_var, tmp_path):
    """``run_inv("db.info", "--json")`` with a data directory and .env of this test's own."""

    def run(*args: str, extra_env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
        env = clean_environ(**{"CHOPS_ENV": "test", "CHOPS_PATHS__VAR": str(cli_var),
                               "CHOPS_ENV_FILE": str(tmp_path / "test.env"), **(extra_env or {})})
        return inv(*args, env=env, **kwargs)

    return run
