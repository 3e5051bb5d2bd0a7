"""What every task shares: the ``task`` decorator that turns chops errors into one line and an exit code,
and the settings of this invocation.

This is the one place where an expected failure becomes an exit: ``BadInput`` → 2, ``WorkFailed`` → 1,
one line on stderr, no traceback (``CHOPS_DEBUG=1`` prints it). A full disk (``ENOSPC``, ``EDQUOT``) met anywhere
is an expected failure too: one line, exit 1.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback

from invoke import Exit
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


def task(*args, **kwargs):
    """``invoke.task`` plus chops' error handling. Use exactly like ``@task`` / ``@task(help=...)``."""

    def decorate(body):
        @functools.wraps(body)
        def run(*a, **kw):
            try:
                return body(*a, **kw)
            except ChopsError as exc:
                if debug():
                    traceback.print_exc()
                raise Exit(f"error: {exc.line()}", code=exc.exit_code) from None
            except KeyboardInterrupt:
                raise Exit("interrupted", code=130) from None
            except OSError as exc:
                from ops.core.locks import DISK_FULL, FREE_SPACE

                if exc.errno not in DISK_FULL:
                    raise
                if debug():
                    traceback.print_exc()
                where = f"cannot write {exc.filename}: " if exc.filename else ""
                raise Exit(f"error: {where}{exc.strerror} ({FREE_SPACE})", code=1) from None

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
