"""The record a sample-quality metric needs from a feature network: `Extractor`.

A module of its own so that extractors defined in other modules (the Inception network) and the registry
in features.py both import it without importing each other."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor


@dataclass
class Extractor:
    name: str
    features: Callable[[Tensor], Tensor]  # (N, *shape) in [-1, 1] -> (N, D)
    logits: Callable[[Tensor], Tensor] | None  # (N, *shape) -> (N, classes), or None
    weights_sha256: str | None
    info: dict
