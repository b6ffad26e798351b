"""Text conditions for captioned data: each distinct caption is encoded once by the frozen text encoder,
and a batch's condition is looked up by caption id.

A text part is the dict {"tokens": (B, L, D), "mask": (B, L) bool, "pooled": (B, D)} the U-Net's
cross-attention reads. The null condition (for classifier-free guidance) is the empty caption "", as in
Stable Diffusion; condition dropout trains on it by swapping a caption id for `null_id`.
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import Tensor

from ..errors import UnnoiseError
from .base import drop_mask, where_rows

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


class CaptionCondition:
    """Captions through the frozen text encoder; the part is the text dict the U-Net's cross-attention
    reads. With a dataset's captions (training) every distinct caption is encoded once (`CaptionBank`)."""

    name, key, request_key, droppable = "caption", "text", "prompt", True

    def __init__(self, max_tokens: int, layers: Sequence[int], captions: Sequence[str] | None = None):
        self.max_tokens, self.layers = int(max_tokens), tuple(layers)
        self.bank = CaptionBank(captions, self.max_tokens, self.layers) if captions is not None else None
        self._null: dict[str, Tensor] | None = None

    def network_options(self) -> dict:
        from ..nn.text_encoder import EMBED_DIM

        return {"context_dim": EMBED_DIM * len(self.layers), "pooled_dim": EMBED_DIM}

    def from_batch(self, batch: dict) -> dict[str, Tensor]:
        if self.bank is None:
            raise UnnoiseError("model.conditions: caption needs a captioned dataset; this one has no captions")
        return self.bank.lookup(self.bank.ids[batch["index"].cpu()])

    def null(self, n: int, device=None) -> dict[str, Tensor]:
        """The empty caption (the bank's own encoding of it when training), repeated n times."""
        if self._null is None:
            bank = self.bank
            self._null = (null_condition(self.max_tokens, self.layers) if bank is None
                          else {k: v[bank.null_id:bank.null_id + 1] for k, v in bank.bank.items()})
        return {k: v.expand(n, *v.shape[1:]).to(device) for k, v in self._null.items()}

    def dropout(self, part: dict[str, Tensor], p: float, generator: torch.Generator) -> dict[str, Tensor]:
        if p <= 0:
            return part
        keep = ~drop_mask(len(part["pooled"]), p, generator)
        return where_rows(keep, part, self.null(1))

    def preview(self, n: int, device=None) -> dict[str, Tensor]:
        """Text for a sample grid of n: the dataset's first captions in turn."""
        ids = self.bank.ids[torch.arange(n) % len(self.bank.ids)]
        return {k: v.to(device) for k, v in self.bank.lookup(ids).items()}

    def from_request(self, value, n: int, device=None) -> dict[str, Tensor]:
        """Text for one prompt (repeated n times) or a list of n prompts."""
        prompts = [value] * n if isinstance(value, str) else list(value)
        if len(prompts) != n or not all(isinstance(p, str) for p in prompts):
            raise UnnoiseError(f"prompt: expected a string or {n} strings, got {value!r}")
        if len(set(prompts)) == 1:
            one = encode_captions(prompts[:1], self.max_tokens, self.layers)
            return {k: v.expand(n, *v.shape[1:]).to(device) for k, v in one.items()}
        return {k: v.to(device) for k, v in encode_captions(prompts, self.max_tokens, self.layers).items()}
