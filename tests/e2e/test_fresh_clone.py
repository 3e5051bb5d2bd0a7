"""From a fresh copy of the project (what `git clone` gives), `make demo` does all the set-up by itself."""

import shutil
import subprocess

import pytest

from tests.conftest import ROOT, clean_environ, require

pytestmark = pytest.mark.slow


def tracked_files():
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split("\n")
    return [name for name in listed if name and (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    require(shutil.which("git") is not None, "git is not installed")
    require(shutil.which("make") is not None, "make is not installed")
    copy = tmp_path_factory.mktemp("clone") / "chops"
    for name in tracked_files():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name)
    return copy


def make(copy, *targets, timeout=900):
    return subprocess.run(["make", *targets], cwd=copy, env=clean_environ(), capture_output=True, text=True,
                          timeout=timeout)


def test_make_demo_from_a_fresh_copy(fresh):
    result = make(fresh, "demo")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (fresh / ".venv" / "bin" / "inv").exists()
    assert (fresh / "var" / "clickhouse").is_dir()
    assert "embedded chDB" in result.stdout and "chdb://" in result.stdout
    page = fresh / "var" / "reports" / "ops.html"
    assert page.is_file() and "events_ingest" in page.read_text()  # the demo's pipelines are on the page
    again = make(fresh, "demo")  # idempotent, and the venv is not rebuilt
    assert again.returncode == 0, again.stderr[-3000:]
    assert "pip install" not in again.stdout
    assert "already set up; nothing changed" in again.stderr


def test_make_help_in_a_fresh_copy(fresh):
    result = make(fresh, "help")
    assert result.returncode == 0 and "demo" in result.stdout and "test-ci" in result.stdout
