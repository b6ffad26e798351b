"""Conditions a network can take: class labels, captions, low-resolution images, in any combination.

A run lists its conditions in `model.conditions` (e.g. `[label, caption]`); `conditions_for(config)`
builds them as one `Conditions`, which makes the condition dict the denoiser receives from a training
batch, a user's request, or nothing (the null condition of classifier-free guidance).
"""
from __future__ import annotations

from typing import Sequence

from ..errors import UnnoiseError
from .base import (Condition, batch_size, concat_conditions, expand_condition, map_part, named_condition,
                   slice_condition, where_rows)
from .caption import CaptionCondition
from .control import ControlCondition
from .label import LabelCondition
from .lowres import LowResCondition
from .properties import PropertyCondition

ORDER = ("label", "caption", "lowres", "control", "property")  # canonical order: dropout draws happen in this order
NETWORKS_FOR = {"caption": ("unet",), "lowres": ("unet",), "control": ("unet",)}  # conditions only some networks take
LEGACY_NAMES = {"label": "class_conditional", "caption": "text_conditional", "lowres": "super_resolution",
                "control": "conditions (control)"}
DESCRIPTIONS = {"label": "class-conditional", "caption": "text-conditional", "lowres": "a super-resolution run",
                "control": "a ControlNet run", "property": "property-conditional (molecules)"}

__all__ = ["Condition", "Conditions", "LabelCondition", "CaptionCondition", "LowResCondition", "ControlCondition",
           "conditions_for",
           "check_conditions", "slice_condition", "concat_conditions", "expand_condition", "map_part",
           "batch_size", "where_rows", "named_condition", "ORDER"]


class Conditions:
    """The conditions of one run, in canonical order; each method builds the condition dict {key: part}
    (None when the run has no conditions)."""

    def __init__(self, parts: Sequence[Condition] = ()):
        self.parts = sorted(parts, key=lambda c: ORDER.index(c.name))

    @property
    def empty(self) -> bool:
        return not self.parts

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.parts)

    @property
    def guidable(self) -> bool:
        """Whether classifier-free guidance applies (some condition has a null)."""
        return any(c.droppable for c in self.parts)

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def get(self, name: str) -> Condition | None:
        return next((c for c in self.parts if c.name == name), None)

    def network_options(self) -> dict:
        options: dict = {}
        for c in self.parts:
            options.update(c.network_options())
        return options

    def _dict(self, make) -> dict | None:
        return None if self.empty else {c.key: make(c) for c in self.parts}

    def from_batch(self, batch: dict) -> dict | None:
        """The condition of a training batch {"x": data (B, ...), "index": dataset rows (B,), "label": ...}."""
        return self._dict(lambda c: c.from_batch(batch))

    def dropout(self, cond: dict | None, p: float, generator) -> dict | None:
        """Each droppable part's rows replaced by its null with probability p, independently per part."""
        return self._dict(lambda c: c.dropout(cond[c.key], p, generator))

    def null(self, n: int, device=None) -> dict | None:
        """The null condition of n samples (an error when a part has no null, e.g. low-res images)."""
        return self._dict(lambda c: c.null(n, device))

    def unconditional(self, cond: dict | None) -> dict | None:
        """`cond` with every droppable part replaced by its null (the low-res image, say, is kept):
        the unconditional branch of classifier-free guidance."""
        if cond is None:
            return None
        n = batch_size(cond)
        return self._dict(lambda c: c.null(n, _device(cond[c.key])) if c.droppable else cond[c.key])

    def preview(self, n: int, device=None, x=None) -> dict | None:
        """The condition of a training-time sample grid of n: classes in turn, the first captions, the
        low-res versions of images x (n, ...)."""
        return self._dict(lambda c: c.from_batch({"x": x}).to(device) if c.name == "lowres"
                          else c.preview(n, device))

    def from_request(self, values: dict, n: int, device=None) -> dict | None:
        """The condition of n samples from a request {"label": int | class name, "prompt": str, "lowres":
        (n, C, h, w) in [-1, 1]}; a missing droppable value gives its null. One-line errors for values the
        run cannot take and for missing required ones."""
        values = {k: v for k, v in (values or {}).items() if v is not None}
        keys = {c.request_key: c for c in self.parts}
        for key in values:
            if key not in keys:
                name = next((c for c, k in (("label", "label"), ("caption", "prompt"), ("lowres", "lowres"),
                                            ("control", "control"), ("property", "property")) if k == key), None)
                if name is None:
                    raise UnnoiseError(f"unknown condition {key!r}; valid: label, prompt, lowres, control, property")
                raise UnnoiseError(f"{key}: this run is not {DESCRIPTIONS[name]} (its conditions: "
                                   f"{', '.join(self.names) or 'none'})")
        missing = [c.request_key for c in self.parts if not c.droppable and c.request_key not in values]
        if missing:
            raise UnnoiseError(f"this run needs a {missing[0]} condition (it is {DESCRIPTIONS['lowres']})")
        return self._dict(lambda c: c.from_request(values[c.request_key], n, device)
                          if c.request_key in values else c.null(n, device))

    def describe(self) -> str:
        return ", ".join(self.names) or "none"


def _device(part):
    return part["pooled"].device if isinstance(part, dict) and "pooled" in part else (
        next(iter(part.values())).device if isinstance(part, dict) else part.device)


def check_conditions(model) -> None:
    """One-line errors for a model config's condition list: unknown or repeated names, networks that
    cannot take a condition, bad caption layers."""
    names = list(model.conditions)
    for name in names:
        if name not in ORDER:
            raise UnnoiseError(f"model.conditions: unknown {name!r}; valid: {', '.join(ORDER)}")
    if len(set(names)) != len(names):
        raise UnnoiseError(f"model.conditions: repeated condition in {names}")
    for name in names:
        if name in NETWORKS_FOR and model.network not in NETWORKS_FOR[name]:
            raise UnnoiseError(f"model.{LEGACY_NAMES[name]} needs model.network=unet (model.conditions: {name}), "
                               f"got {model.network!r}")
    if "caption" in names:
        from ..nn.text_encoder import check_layers

        try:
            check_layers(model.text_layers)
        except UnnoiseError as exc:
            raise UnnoiseError(f"model.text_layers: {exc}") from None
    if "control" in names:
        from ..control import control_kind

        control_kind(model.control_kind)
    if "lowres" in names and model.lowres_factor not in (2, 4):
        raise UnnoiseError(f"model.super_resolution (model.lowres_factor) must be 0 (off), 2 or 4, "
                           f"got {model.lowres_factor!r}")


def conditions_for(config, dataset=None) -> Conditions:
    """The Conditions of a resolved run config; with the training `dataset`, captions come from it."""
    m, parts = config.model, []
    for name in m.conditions:
        if name == "label":
            parts.append(LabelCondition(config.num_classes, config.class_names))
        elif name == "caption":
            captions = None if dataset is None else getattr(dataset, "captions", None) or []
            parts.append(CaptionCondition(m.text_max_tokens, m.text_layers, captions))
        elif name == "lowres":
            parts.append(LowResCondition(m.lowres_factor, config.data_shape))
        elif name == "control":
            parts.append(ControlCondition(m.control_kind, config.data_shape, dataset))
        elif name == "property":  # molecules: statistics recorded in config.molecule (run/molecules.py)
            parts.append(PropertyCondition((config.molecule or {}).get("properties", {}), dataset))
        else:
            raise UnnoiseError(f"model.conditions: unknown {name!r}; valid: {', '.join(ORDER)}")
    return Conditions(parts)
