"""What every task shares: the ``task`` decorator that turns chops errors into one line and an exit code,
and the settings of this invocation.

This is the one place where an expected failure becomes an exit: ``BadInput`` → 2, ``WorkFailed`` → 1,
one line on stderr, no traceback (``CHOPS_DEBUG=1`` prints it). A full disk (``ENOSPC``, ``EDQUOT``) met anywhere
is an expected failure too: one line, exit 1. A task run with ``--json`` also prints the failure as a JSON object on
stdout (``{"error": line, "exit_code": n, ...}``), so a script reading stdout always gets JSON. A reader that closes
the pipe early (``| head``) ends the task quietly, as it ends ``cat``.

Short flags follow one convention in every task (:data:`SHORT_FLAGS`): ``-n`` is always ``--dry-run``, ``-j``
always ``--json``, ``-y`` always ``--yes``; another flag gets its name's first letter when that is free, else none.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback

from invoke import Exit
from invoke import Task as InvokeTask
from invoke import task as invoke_task

from ops.core.errors import ChopsError

_settings = None


def settings():
    """The settings of this invocation, loaded once."""
    global _settings
    if _settings is None:
        from ops.core.settings import load_settings

        _settings = load_settings()
    return _settings


def debug() -> bool:
    return os.environ.get("CHOPS_DEBUG", "") not in ("", "0", "false", "no")


# The short flag of each common long flag, the same in every task; no other flag may take these letters.
SHORT_FLAGS = {"dry_run": "n", "json": "j", "yes": "y"}
WIDE_HELP = "print tables at full width even when piped (default: the terminal's width, else 120; CHOPS_WIDTH)"
CLOSED_PIPE = 141  # what a shell reports for a process ended by SIGPIPE (128 + 13)


class Task(InvokeTask):
    """An invoke task whose short flags follow :data:`SHORT_FLAGS`: the conventional flags get their letter; any other
    flag gets the first letter of its name when that is free (first come, in the signature's order) and no short flag
    otherwise, so a short flag is never a surprise. ``--wide`` is added to every task with ``--json``."""

    def get_arguments(self, ignore_unknown_help=None):
        automatic, self.auto_shortflags = self.auto_shortflags, False
        try:
            arguments = super().get_arguments(ignore_unknown_help)
        finally:
            self.auto_shortflags = automatic
        if "json" in {a.name for a in arguments}:  # a task that reports state prints tables
            from invoke.parser import Argument

            arguments.append(Argument(names=("wide",), kind=bool, default=False, help=WIDE_HELP))
        if automatic:
            assign_short_flags(arguments)
        return arguments


def assign_short_flags(arguments) -> None:
    """Give each argument (invoke ``Argument``, long name only) its short flag, in place."""
    taken = {a.name for a in arguments} | {n for a in arguments for n in a.names} | set(SHORT_FLAGS.values())
    for argument in arguments:
        letter = SHORT_FLAGS.get(argument.name)
        if letter:
            argument.names = (*argument.names, letter)
    for argument in arguments:
        if argument.name in SHORT_FLAGS or argument.name == "wide" or len(argument.names[0]) == 1:
            continue
        letter = argument.names[0][0]
        if letter not in taken:
            argument.names = (*argument.names, letter)
            taken.add(letter)


def _json_error(line: str, code: int, exc: BaseException | None = None) -> None:
    """A failure as JSON on stdout, for a task run with --json: ``error``, ``exit_code`` and the error's own
    ``details`` (a dict of extra fields), when it has any."""
    import json

    shown = sys.modules.get("ops.core.output")
    if shown is not None and shown.json_printed:
        return  # the task printed its JSON (which says what failed) before it failed: stdout stays one document
    record = {"error": line, "exit_code": code}
    details = getattr(exc, "details", None)
    if isinstance(details, dict):
        record.update({k: v for k, v in details.items() if k not in record})
    try:
        print(json.dumps(record, default=str, indent=2, ensure_ascii=False), flush=True)
    except BrokenPipeError:
        _silence_stdout()


def _silence_stdout() -> None:
    """After the reader closed stdout: point it at /dev/null so the exit's flush does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def quiet_closed_pipe() -> None:
    """Make a closed stdout end this process quietly, also outside a task (``inv --list | head``): no traceback,
    exit 141 like a program ended by SIGPIPE. Installed by ``tasks.py``."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        if issubclass(kind, BrokenPipeError):
            _silence_stdout()
            os._exit(CLOSED_PIPE)  # nothing of chops runs outside a task, so there is nothing to clean up
        previous(kind, value, tb)

    sys.excepthook = hook


def task(*args, **kwargs):
    """``invoke.task`` plus chops' error handling and short-flag convention. Use exactly like ``@task`` /
    ``@task(help=...)``."""

    def decorate(body):
        @functools.wraps(body)
        def run(*a, **kw):
            as_json = bool(kw.get("json"))
            if kw.pop("wide", False):
                from ops.core import output

                output.wide()
            try:
                return body(*a, **kw)
            except ChopsError as exc:
                if debug():
                    traceback.print_exc()
                if as_json:
                    _json_error(exc.line(), exc.exit_code, exc)
                raise Exit(f"error: {exc.line()}", code=exc.exit_code) from None
            except KeyboardInterrupt:
                if as_json:
                    _json_error("interrupted", 130)
                raise Exit("interrupted", code=130) from None
            except BrokenPipeError:
                _silence_stdout()
                raise Exit(code=CLOSED_PIPE) from None
            except OSError as exc:
                from ops.core.locks import DISK_FULL, FREE_SPACE

                if exc.errno not in DISK_FULL:
                    raise
                if debug():
                    traceback.print_exc()
                where = f"cannot write {exc.filename}: " if exc.filename else ""
                line = f"{where}{exc.strerror} ({FREE_SPACE})"
                if as_json:
                    _json_error(line, 1, exc)
                raise Exit(f"error: {line}", code=1) from None

        kwargs.setdefault("klass", Task)
        return invoke_task(run, **kwargs)

    if len(args) == 1 and callable(args[0]) and not kwargs:
        return decorate(args[0])
    return decorate


def whole_number(value, flag: str, minimum: int = 1) -> int:
    """A numeric flag. Tasks declare number defaults as text ("7") so invoke hands the raw value here and a typo
    becomes one line and exit 2, not invoke's traceback."""
    from ops.core.errors import BadInput

    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        raise BadInput(f"{flag} must be a whole number, got {value!r}") from None
    if n < minimum:
        raise BadInput(f"{flag} must be at least {minimum}, got {n}")
    return n


def stdin_is_interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()
