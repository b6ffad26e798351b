"""Text conditions for captioned data: each distinct caption is encoded once by the frozen text encoder,
and a batch's condition is looked up by caption id.

A text condition is the dict {"tokens": (B, L, D), "mask": (B, L) bool, "pooled": (B, D)} the U-Net's
cross-attention reads. The null condition (for classifier-free guidance) is the empty caption "", as in
Stable Diffusion; condition dropout trains on it by swapping a caption id for `null_id`.
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import Tensor

from ..errors import UnnoiseError

log = logging.getLogger("unnoise.conditions.caption")
_ENCODERS: dict[str, object] = {}  # one frozen encoder per process


def text_encoder():
    """The process-wide frozen text encoder (loaded on first use)."""
    if "default" not in _ENCODERS:
        from ..nn.text_encoder import load_text_encoder

        _ENCODERS["default"] = load_text_encoder(cache_size=None)
    return _ENCODERS["default"]


def encode_captions(captions: Sequence[str], max_tokens: int, layers: Sequence[int] | None = None) -> dict[str, Tensor]:
    """The text condition of a list of captions; `layers`: the encoder's hidden states whose
    concatenation gives the token features (default: the last)."""
    tokens, mask, pooled = text_encoder().encode(list(captions), max_tokens=max_tokens, layers=layers)
    return {"tokens": tokens, "mask": mask, "pooled": pooled}


def null_condition(max_tokens: int, layers: Sequence[int] | None = None) -> dict[str, Tensor]:
    """The null (empty-caption) condition, batch 1."""
    return encode_captions([""], max_tokens, layers)


class CaptionBank:
    """Every distinct caption of a dataset, encoded once; `ids[i]` is image i's caption id."""

    def __init__(self, captions: Sequence[str], max_tokens: int, layers: Sequence[int] | None = None):
        if not captions:
            raise UnnoiseError("text conditioning needs a captioned dataset; this one has no captions")
        distinct = sorted(set(captions) | {""})
        index = {caption: i for i, caption in enumerate(distinct)}
        self.ids = torch.tensor([index[c] for c in captions], dtype=torch.long)
        self.null_id = index[""]
        log.info("encoding %d distinct captions with the text encoder", len(distinct))
        self.bank = encode_captions(distinct, max_tokens, layers)

    def lookup(self, ids: Tensor) -> dict[str, Tensor]:
        """The text condition of caption ids (B,)."""
        return {key: value[ids] for key, value in self.bank.items()}


def slice_condition(cond, part: slice):
    """Rows `part` of a condition: labels (B,), a text dict, or None."""
    if cond is None:
        return None
    if isinstance(cond, dict):
        return {key: value[part] for key, value in cond.items()}
    return cond[part]
