"""The errors a pipeline module may raise (``from ops.errors import WorkFailed``): the public name of
``ops.core.errors`` for the files users write. Nothing inside ``ops`` imports this module."""

from ops.core.errors import BadInput, ChopsError, ConfigError, DatabaseError, LockTimeout, WorkFailed

__all__ = ["BadInput", "ChopsError", "ConfigError", "DatabaseError", "LockTimeout", "WorkFailed"]
