"""One typed reader for every environment variable the project reads.

Modelled on Starlette's ``Config``: a missing value without a default, or a value that does not
parse, raises at once with the variable's name, so a typo never becomes a silent default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")

_MISSING = object()


class ConfigError(ValueError):
    """An environment variable is missing or does not parse."""


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected one of 1/0/true/false/yes/no/on/off, got {raw!r}")


def env(key: str, cast: Callable[[str], T] = str, default: object = _MISSING) -> T:
    """Read ``key`` from the environment and cast it; fail loudly on a bad value."""
    raw = os.environ.get(key)
    if raw is None or raw == "":
        if default is _MISSING:
            raise ConfigError(f"Config '{key}' is missing, and has no default.")
        return default  # type: ignore[return-value]
    if cast is bool:
        cast = _parse_bool  # type: ignore[assignment]
    try:
        return cast(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Config '{key}' has value {raw!r}, which is not a valid {getattr(cast, '__name__', cast)}: {exc}") from exc


def model_dir() -> Path:
    """Where the embedded default model lives (``$CLOCKWORK_MODEL_DIR``)."""
    return env("CLOCKWORK_MODEL_DIR", Path, Path.home() / ".cache" / "clockwork" / "models")


def data_dir() -> Path:
    """Where the catalog and other state live by default (``$CLOCKWORK_DATA_DIR``)."""
    return env("CLOCKWORK_DATA_DIR", Path, Path.cwd() / "var")
