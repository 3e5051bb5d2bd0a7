"""Typed errors. The library raises them; ``ops.cli.base`` turns them into one line and an exit code.

``BadInput`` (exit 2) means the user asked for something impossible and nothing was changed.
``WorkFailed`` (exit 1) means valid work was attempted and did not succeed.
"""


class ChopsError(Exception):
    """Base of every expected failure. ``hint`` names what to run next, when there is something."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def line(self) -> str:
        """The one line a person sees."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class BadInput(ChopsError):
    """The request itself is wrong: bad flag value, malformed URL, unknown name. Nothing was changed."""

    exit_code = 2


class ConfigError(BadInput):
    """A configuration file, .env or environment variable is wrong; names the file/variable and key."""


class WorkFailed(ChopsError):
    """The work was valid but failed (database error, check failed, lock timeout)."""

    exit_code = 1


class LockTimeout(WorkFailed):
    """Another process held a lock for longer than we were willing to wait."""


class DatabaseError(WorkFailed):
    """The database refused or failed a statement."""
