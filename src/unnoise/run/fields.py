"""Frozen dataclass configs filled from dicts (YAML presets, CLI flags, saved run configs)."""
from __future__ import annotations

import dataclasses
import typing

from ..errors import UnnoiseError


def build_dataclass(cls, values: dict, where: str):
    """Instantiate `cls` from `values`, rejecting unknown keys and coercing lists to tuples."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in fields]
    if unknown:
        raise UnnoiseError(f"{where}: unknown field {unknown[0]!r}; valid: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints.get(k), f"{where}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def _coerce(value, hint, where: str):
    """Light type coercion: lists -> tuples, ints -> floats, and a one-line error on mismatch."""
    if hint is None:
        return value
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and not isinstance(value, hint):
        raise UnnoiseError(f"{where}: expected {hint.__name__}, got {value!r}")
    if hint is int and isinstance(value, bool):
        raise UnnoiseError(f"{where}: expected int, got {value!r}")
    return value


def to_dict(config) -> dict:
    """A JSON-ready dict of a dataclass config (tuples become lists)."""
    return dataclasses.asdict(config)
