"""Terminal output of real commands: tables fit an 80- and a 100-column terminal (a real pseudo-terminal) and a pipe
(120 columns, more with --wide) with identifiers and dates whole; states are coloured on a terminal only, never with
NO_COLOR; a reader that closes the pipe early ends a command quietly; --json failures are JSON; db.query refuses
several statements."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shlex
import shutil
import struct
import subprocess
import termios
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.conftest import ROOT, VENV_BIN, inv, pipeline_project

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
YESTERDAY = date.today() - timedelta(days=1)
PIPELINES = '''
from ops.pipelines.definition import checks, pipeline

@pipeline(name="events_ingest_from_the_inbox", target="numbers_t", schedule="15 1 * * *",
          description="numbers for the day, a description long enough to need wrapping in a narrow table")
def numbers(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT {{day:Date}}, number FROM numbers(10)", run.params())

@pipeline(name="doubled_daily_rollup", target="doubled_t", schedule="30 1 * * *",
          depends_on=["events_ingest_from_the_inbox"])
def doubled(run):
    run.db.command(f"INSERT INTO {run.staging} SELECT day, n * 2 FROM numbers_t WHERE day = {{day:Date}}",
                   run.params())
'''
BAD_MIGRATION = ("CREATE TABLE made_before_the_failure (n UInt8) ENGINE = MergeTree ORDER BY n;\n"
                 "SELECT a_function_that_does_not_exist_anywhere(1) AS with_a_long_error_message;\n")
COMMANDS = [["pipeline.list"], ["pipeline.crontab"], ["backfill.plans"], ["db.status"], ["pipeline.history"]]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("terminal")
    migrations = tmp / "migrations"
    shutil.copytree(ROOT / "migrations", migrations)
    env = pipeline_project(tmp, PIPELINES, tuple(
        f"CREATE TABLE {t} (day Date, n UInt64) ENGINE = MergeTree PARTITION BY day ORDER BY n"
        for t in ("numbers_t", "doubled_t")), CHOPS_MIGRATIONS__DIR=str(migrations))
    done = inv("backfill", "--days", "2", env=env)
    assert done.returncode == 0, done.stderr
    (migrations / "0999_a_migration_that_fails_halfway.sql").write_text(BAD_MIGRATION)
    assert inv("db.migrate", env=env).returncode == 1  # dirty, with a long note in db.status
    return env


def on_terminal(args, env, columns: int, **extra: str) -> tuple[int, str, str]:
    """``inv ARGS`` with stdout on a real pseudo-terminal ``columns`` wide: (exit code, stdout, stderr)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    with open(os.devnull) as stdin, (Path(env["CHOPS_PATHS__VAR"]) / "pty.err").open("w+") as err:
        proc = subprocess.Popen([str(VENV_BIN / "inv"), *args], cwd=ROOT, stdin=stdin, stdout=slave, stderr=err,
                                env={**env, "TERM": "xterm-256color", "COLUMNS": str(columns), **extra})
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(master)
        code = proc.wait(timeout=120)
        err.seek(0)
        return code, b"".join(chunks).decode().replace("\r\n", "\n"), err.read()


def whole_words(text: str) -> set[str]:
    """What a table must never cut, as it appears in a --wide rendering: pipeline names, migration ids, plan ids
    and dates."""
    found = set(re.findall(r"\b(?:events_ingest_from_the_inbox|doubled_daily_rollup)\b", text))
    found |= set(re.findall(r"\b\d{4}_[a-z_]+\b", text)) | set(re.findall(r"\b\d{8}-\d{6}-[0-9a-f]+\b", text))
    return found | set(re.findall(r"\b\d{4}-\d\d-\d\d(?: \d\d:\d\d(?::\d\d)?)?\b", text))


@pytest.mark.slow
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_tables_fit_80_and_100_columns_and_a_pipe_with_identifiers_whole(env, args):
    wide = inv(*args, "--wide", env=env)
    assert wide.returncode in (0, 1), wide.stderr
    words = whole_words(wide.stdout)
    assert words, f"nothing to check in {wide.stdout}"
    piped = inv(*args, env=env)
    outputs = {"piped": (120, piped.stdout)}
    for columns in (80, 100):
        code, out, err = on_terminal(args, env, columns)
        assert code == piped.returncode and "Traceback" not in err, err
        outputs[f"{columns} columns"] = (columns, ANSI.sub("", out))
    for where, (columns, out) in outputs.items():
        lines = out.splitlines()
        too_long = [line for line in lines if len(line) > columns]
        assert not too_long, f"inv {' '.join(args)}, {where}: lines wider than {columns}:\n" + "\n".join(too_long)
        text = "\n".join(lines)
        cut = sorted(w for w in words if w not in text)
        assert not cut, f"inv {' '.join(args)}, {where}: cut {cut}:\n{text}"


@pytest.mark.slow
def test_wide_and_chops_width_widen_piped_tables(env):
    narrow = inv("pipeline.crontab", env=env).stdout
    wide = inv("pipeline.crontab", "--wide", env=env).stdout
    assert max(map(len, narrow.splitlines())) <= 120 < max(map(len, wide.splitlines()))
    width = inv("pipeline.crontab", env={**env, "CHOPS_WIDTH": "90"}).stdout
    assert max(map(len, width.splitlines())) <= 90


@pytest.mark.slow
def test_states_are_coloured_on_a_terminal_and_not_with_no_color_or_a_pipe(env):
    code, out, _ = on_terminal(["db.status"], env, 160)
    assert "\x1b[32mapplied" in out and "\x1b[1;31mdirty" in out
    code, out, _ = on_terminal(["db.status"], env, 160, NO_COLOR="1")
    assert "\x1b[32m" not in out and "\x1b[1;31m" not in out and "dirty" in out
    assert "\x1b[" not in inv("db.status", env=env).stdout


def shell(line: str, env) -> subprocess.CompletedProcess:
    """``line`` in bash, printing the exit code of each command of its pipeline on the last line of stderr."""
    return subprocess.run(["bash", "-c", line + '; echo "exit ${PIPESTATUS[*]}" >&2'], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_reader_that_stops_early_ends_the_command_quietly(run_inv, cli_var, tmp_path):
    assert run_inv("db.setup").returncode == 0
    env = {**os.environ, "CHOPS_ENV": "test", "CHOPS_PATHS__VAR": str(cli_var),
           "CHOPS_ENV_FILE": str(tmp_path / "test.env")}
    inv_path = shlex.quote(str(VENV_BIN / "inv"))
    many = shlex.quote("SELECT number FROM numbers(100000)")
    for line, first in ((f"{inv_path} db.query {many} --csv | head -1", "number"),
                        (f"{inv_path} db.query {many} --json | head -2", "["),
                        (f"{inv_path} --list | true", None)):  # invoke's own listing: `true` reads nothing
        done = shell(line, env)
        assert first is None or done.stdout.splitlines()[0].strip() == first, (line, done.stdout)
        *said, status = done.stderr.strip().splitlines()
        assert status == "exit 141 0", (line, done.stderr)  # as a shell reports a process ended by SIGPIPE
        assert said == [], f"{line}: {done.stderr}"


def test_json_failures_are_json_on_stdout_and_several_statements_are_refused(run_inv):
    assert run_inv("db.setup").returncode == 0
    failed = run_inv("db.query", "SELECT no_such_column_here", "--json")
    assert failed.returncode == 1 and failed.stderr.startswith("error: ")
    record = json.loads(failed.stdout)
    assert record["exit_code"] == 1 and "no_such_column_here" in record["error"]
    unknown = run_inv("pipeline.run", "no_such_pipeline", "--json")
    assert unknown.returncode == 2 and json.loads(unknown.stdout)["exit_code"] == 2
    several = run_inv("db.query", "CREATE TABLE made_by_the_first (n UInt8) ENGINE = Memory; SELECT 2")
    assert several.returncode == 2 and "2 statements given; db.query runs one at a time" in several.stderr
    tables = json.loads(run_inv("db.query", "SELECT name FROM system.tables WHERE database = currentDatabase()",
                                "--json").stdout)
    assert "made_by_the_first" not in {t["name"] for t in tables}  # refused before anything ran
    one = run_inv("db.query", "SELECT ';' AS semicolon; -- a comment; with semicolons", "--json")
    assert one.returncode == 0 and json.loads(one.stdout) == [{"semicolon": ";"}]


@pytest.mark.slow
def test_pipeline_list_last_run_is_the_newest_day_and_the_latest_attempt_has_its_own_column(env):
    older = str(YESTERDAY - timedelta(days=9))
    done = inv("pipeline.run", "events_ingest_from_the_inbox", "--date", older, env=env)
    assert done.returncode == 0, done.stderr
    listed = {p["name"]: p for p in json.loads(inv("pipeline.list", "--json", env=env).stdout)["pipelines"]}
    ingest = listed["events_ingest_from_the_inbox"]
    assert (ingest["last_status"], ingest["last_day"]) == ("succeeded", str(YESTERDAY))  # not the older day
    assert ingest["latest_attempt"]["day"] == older and ingest["latest_attempt"]["status"] == "succeeded"
    table = inv("pipeline.list", "--wide", env=env).stdout
    header, _, first = table.splitlines()[:3]
    assert "last run" in header and "latest attempt" in header
    assert f"succeeded {YESTERDAY}" in first and f"succeeded {older}" in first
