"""Small helpers shared by the network config dataclasses."""
from __future__ import annotations

from typing import Any

from ..errors import UnnoiseError


class NetworkConfigError(UnnoiseError, ValueError):
    """An invalid network configuration value (also a ``ValueError``)."""


def require(ok: bool, message: str) -> None:
    """Raise :class:`NetworkConfigError` with ``message`` unless ``ok``."""
    if not ok:
        raise NetworkConfigError(message)


def freeze(config: Any, name: str) -> tuple:
    """Turn a list-valued field of a frozen dataclass into a tuple (JSON round-trip)."""
    value = tuple(getattr(config, name))
    object.__setattr__(config, name, value)
    return value
