"""What the runtime modules share of the settings: a ``proc.*`` value checked to be in range, and a path shown
the way messages show it (relative to the project when it lies inside it)."""

from __future__ import annotations

from pathlib import Path

from ops.core.errors import ConfigError


def setting(settings, key: str, minimum: float = 0, maximum: float | None = None):
    """A ``proc.*`` setting, checked to be in range (a ConfigError naming where it was set, otherwise)."""
    value = settings.get(key)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum:g} and {maximum:g}" if maximum is not None else f">= {minimum:g}"
        raise ConfigError(f"{settings.sources.get(key, 'config')}: {key} must be {bounds}, got {value:g}")
    return value


def shown_path(settings, path: Path) -> str:
    """``path`` relative to the project root when it lies inside it, else as it is."""
    try:
        return str(Path(path).relative_to(settings.root))
    except ValueError:
        return str(path)
