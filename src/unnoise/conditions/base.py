"""The Condition protocol, and batch utilities for conditions made of named parts.

The condition a network receives is a dict of named parts, one per condition of the run:
    {"label": LongTensor (B,), "text": {"tokens": (B, L, D), "mask": (B, L), "pooled": (B, D)},
     "lowres": Tensor (B, C, H, W)}
or None for an unconditional network. Every part has the batch along dimension 0, so slicing, stacking
and dropping rows works on nested dicts of tensors alike.
"""
from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

Part = Any  # a tensor (B, ...) or a (nested) dict of them


class Condition(Protocol):
    """One kind of condition. `name` is its name in `model.conditions`; `key` the key of its part in the
    condition dict; `request_key` the key of its value in `from_request`; `droppable` whether it has a
    null value (trained with condition dropout, and guidable with classifier-free guidance)."""

    name: str
    key: str
    request_key: str
    droppable: bool

    def network_options(self) -> dict:
        """The network config entries this condition needs (e.g. num_classes, context_dim)."""

    def from_batch(self, batch: dict) -> Part:
        """This condition's part for a training batch {"x": (B, ...), "index": dataset rows, "label": ...}."""

    def null(self, n: int, device) -> Part:
        """The null (unconditional) part for n samples."""

    def dropout(self, part: Part, p: float, generator: torch.Generator) -> Part:
        """Each row replaced by the null with probability p (condition dropout, Ho & Salimans 2022)."""

    def from_request(self, value, n: int, device) -> Part:
        """The part for n samples from a user's value (a class, a prompt, a low-resolution image)."""


def map_part(part: Part, fn) -> Part:
    """Apply fn to every tensor of a (nested) condition; None stays None."""
    if part is None:
        return None
    if isinstance(part, dict):
        return {key: map_part(value, fn) for key, value in part.items()}
    return fn(part)


def slice_condition(cond: Part, index) -> Part:
    """Rows `index` (a slice or index tensor) of a condition: a tensor, a nested dict, or None."""
    return map_part(cond, lambda value: value[index])


def concat_conditions(a: Part, b: Part) -> Part:
    """Stack two conditions along the batch: tensors, or (nested) dicts key by key."""
    if a is None and b is None:
        return None
    if isinstance(a, dict):
        return {key: concat_conditions(a[key], b[key]) for key in a}
    return torch.cat([a, b])


def expand_condition(cond: Part, n: int) -> Part:
    """A condition of batch 1 repeated to batch n (a view; rows of other batches are kept)."""
    return map_part(cond, lambda value: value.expand(n, *value.shape[1:]) if len(value) == 1 else value)


def where_rows(keep: Tensor, part: Part, null: Part) -> Part:
    """Row i of `part` where keep[i], else row i of `null` (same structure, broadcastable rows)."""
    if isinstance(part, dict):
        return {key: where_rows(keep, part[key], null[key]) for key in part}
    mask = keep.reshape(-1, *([1] * (part.ndim - 1)))  # (B,) -> (B, 1, ...)
    return torch.where(mask.to(part.device), part, null.to(part.device, part.dtype))


def drop_mask(n: int, p: float, generator: torch.Generator) -> Tensor:
    """True for the rows to drop: one uniform draw per row, below p."""
    return torch.rand((n,), generator=generator) < p


def batch_size(cond: Part) -> int | None:
    """The batch size of a condition (None for None)."""
    if cond is None:
        return None
    if isinstance(cond, dict):
        for value in cond.values():
            size = batch_size(value)
            if size is not None:
                return size
        return None
    return len(cond)


def named_condition(cond) -> dict:
    """The condition as named parts {"label": (B,), "text": {...}, "lowres": (B, C, *S)} (any subset; {}
    for None). Single-part forms are accepted: labels (B,), a text dict {"tokens", "mask", "pooled"}, or
    an image dict {"image": ...}."""
    if cond is None:
        return {}
    if not isinstance(cond, dict):
        return {"label": cond}
    if "tokens" in cond:
        return {"text": cond}
    if "image" in cond:
        return {"lowres": cond["image"]}
    unknown = sorted(set(cond) - {"label", "text", "lowres", "control", "property"})
    if unknown:
        raise ValueError(f"unknown condition part {unknown[0]!r}; valid: label, text, lowres, control, property")
    return cond
