"""Sampling categorical diffusion: ancestral reverse steps on the grid t_i = i / steps, float64 draws.

`sample_tokens` with method "ancestral" (the default) is the ELBO's own sampler: every reverse step draws
x_s ~ p(x_s | x_t) per position from the process's posterior marginal (Sahoo et al. 2024 eq. 7 for the
absorbing process; Austin et al. 2021 eq. 4 for the uniform one). `method="top_confidence_heuristic"` instead
reveals, at each step, the masked positions the model is most confident about (Chang et al. 2022;
'low-confidence remasking' in Nie et al. 2025): often sharper text, but a heuristic that samples a different
distribution from the one the ELBO bounds, so its samples say nothing about the bound.

Every draw is made in float64 from per-sample counter-based uniforms, so a batch of N equals N single runs
(`draw_precision="float32"` swaps in the truncated float32 draw, only to measure its effect). Positions
given in a template (a prefix prompt, or the known parts of an infill) are kept as given throughout.
"""
from __future__ import annotations

import re
from typing import Sequence

import torch
from torch import Tensor

from ..errors import UnnoiseError, unknown_name
from .loss import Model
from .process import CategoricalProcess
from .random import DRAW_PRECISIONS, CounterUniforms, draw_categorical

ANCESTRAL, TOP_CONFIDENCE = "ancestral", "top_confidence_heuristic"
METHODS = (ANCESTRAL, TOP_CONFIDENCE)  # only the first is the sampler the ELBO describes
FREE = -1  # a template entry to be generated


def _checked_template(template: Tensor | None, process: CategoricalProcess, batch: int, length: int,
                      device) -> Tensor:
    """The template as (B, L) long on `device`: FREE where generated, a token id in [0, K) where given."""
    if template is None:
        return torch.full((batch, length), FREE, dtype=torch.long, device=device)
    template = torch.as_tensor(template, dtype=torch.long, device=device)
    template = template.expand(batch, -1) if template.ndim == 1 else template
    if tuple(template.shape) != (batch, length):
        raise UnnoiseError(f"template: expected shape ({batch}, {length}), got {tuple(template.shape)}")
    if bool(((template < FREE) | (template >= process.vocab_size)).any()):
        raise UnnoiseError(f"template: token ids must be in [0, {process.vocab_size}) or {FREE} (free)")
    return template


class _CachedModel:
    """p(x_0 | x_t) in float64 (B, L, K); the model runs only on rows whose tokens changed since its last call
    when `reuse` is set, which is exact for a model whose output depends on the tokens alone."""

    def __init__(self, model: Model, reuse: bool):
        self.model, self.reuse = model, reuse
        self.tokens: Tensor | None = None
        self.probs: Tensor | None = None
        self.calls = 0

    def _probs(self, tokens: Tensor, t: Tensor) -> Tensor:
        self.calls += 1
        return torch.softmax(self.model(tokens, t).to(torch.float64), -1)

    def __call__(self, tokens: Tensor, t: Tensor) -> Tensor:
        if not self.reuse or self.probs is None:
            self.probs = self._probs(tokens, t)
        else:
            rows = (tokens != self.tokens).any(-1)
            if bool(rows.any()):
                self.probs = self.probs.clone()
                self.probs[rows] = self._probs(tokens[rows], t[rows])
        self.tokens = tokens
        return self.probs


def _initial(process: CategoricalProcess, batch: int, length: int, uniforms: CounterUniforms) -> Tensor:
    if process.kind == "absorbing":
        return process.prior((batch, length), device=uniforms.device)
    return process.prior((batch, length), uniforms=uniforms.uniform(0, (length,)))


@torch.no_grad()
def sample_tokens(model: Model, process: CategoricalProcess, seeds: Sequence[int], length: int, steps: int,
                  template: Tensor | None = None, method: str = ANCESTRAL, reuse_unchanged: bool | None = None,
                  device=None, draw_precision: str = "float64") -> Tensor:
    """Token ids (B, length) for B = len(seeds), from `steps` reverse steps of `model` (x_0 logits).

    `template` (B, L) or (L,) holds FREE (-1) for positions to generate and token ids for given positions.
    `reuse_unchanged` (default: when the model has `time_conditioned = False`) skips the model on rows whose
    tokens did not change since its last call, which is exact for such a model. `draw_precision` "float32"
    replaces the float64 draws by the truncated float32 race (random.categorical_float32), for measurement.
    """
    if method not in METHODS:
        raise unknown_name("discrete sampling method", method, METHODS)
    if draw_precision not in DRAW_PRECISIONS:
        raise unknown_name("draw precision", str(draw_precision), DRAW_PRECISIONS)
    if method == TOP_CONFIDENCE and process.kind != "absorbing":
        raise UnnoiseError(f"sampling method {TOP_CONFIDENCE!r} needs the absorbing (masked) process")
    steps, length = int(steps), int(length)
    if steps < 1 or length < 1:
        raise UnnoiseError(f"sampling needs steps >= 1 and length >= 1, got steps={steps}, length={length}")
    uniforms = CounterUniforms(seeds, device)
    template = _checked_template(template, process, len(uniforms), length, uniforms.device)
    given = template != FREE
    reuse = not getattr(model, "time_conditioned", True) if reuse_unchanged is None else bool(reuse_unchanged)
    cached = _CachedModel(model, reuse)
    x = torch.where(given, template, _initial(process, len(uniforms), length, uniforms))
    free_count = (~given).sum(-1)
    for step in range(steps, 0, -1):
        t = torch.full((len(uniforms),), step / steps, dtype=torch.float64, device=uniforms.device)
        s = torch.full_like(t, (step - 1) / steps)
        probs = cached(x, t)  # (B, L, K) float64
        if method == ANCESTRAL:
            x = draw_categorical(process.reverse_probs(probs, x, t, s), uniforms, step, draw_precision)
        else:
            candidates = draw_categorical(probs, uniforms, step, draw_precision)  # (B, L)
            x = _reveal_most_confident(process, probs, x, s, candidates, free_count)
        x = torch.where(given, template, x)
    return x


def _reveal_most_confident(process: CategoricalProcess, probs: Tensor, x: Tensor, s: Tensor, candidates: Tensor,
                           free_count: Tensor) -> Tensor:
    """Given a drawn token for every position, reveal the masked ones the model is most sure of, keeping only
    the round(free * (1 - alpha_s)) least confident masked: the heuristic confidence-ordered sampler."""
    masked = x == process.mask_id
    confidence = probs.gather(-1, candidates.unsqueeze(-1)).squeeze(-1)
    confidence = torch.where(masked, confidence, torch.full_like(confidence, -1.0))
    keep_masked = torch.round(free_count.to(torch.float64) * (1.0 - process.alpha(s))).long()  # (B,)
    reveal_count = (masked.sum(-1) - keep_masked).clamp(min=0)
    order = torch.argsort(confidence, dim=-1, descending=True, stable=True)  # most confident first
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(x.shape[-1], device=x.device).expand_as(order))
    reveal = masked & (rank < reveal_count.unsqueeze(-1))
    return torch.where(reveal, candidates, x)


def prefix_template(prompt_ids: Sequence[int], length: int) -> Tensor:
    """A (length,) template that keeps `prompt_ids` at the start and generates the rest."""
    prompt = list(prompt_ids)
    if len(prompt) > length:
        raise UnnoiseError(f"prompt of {len(prompt)} tokens does not fit in length {length}")
    return torch.tensor(prompt + [FREE] * (length - len(prompt)), dtype=torch.long)


_MASK_SPAN = re.compile(r"\[MASK:(\d+)\]")
_MASK_START = "[MASK"


def infill_template(text: str, encode, length: int | None = None, where: str = "infill") -> Tensor:
    """Template from text with '[MASK:n]' spans (n >= 1), e.g. 'To be, or [MASK:8] to be'; `encode` maps text
    to ids. Positions after the text, up to `length`, are generated too. A text without a span, a span of
    length 0 or a '[MASK' that is not '[MASK:n]' is a one-line error starting with `where`."""
    pieces: list[int] = []
    position = 0
    for match in _MASK_SPAN.finditer(text):
        if int(match.group(1)) < 1:
            raise UnnoiseError(f"{where}: {match.group(0)} masks nothing; use [MASK:n] with n >= 1")
        pieces += _encode_piece(text[position:match.start()], encode, where) + [FREE] * int(match.group(1))
        position = match.end()
    pieces += _encode_piece(text[position:], encode, where)
    if FREE not in pieces:
        raise UnnoiseError(f"{where}: {text!r} has no span to fill; mark one with [MASK:n], e.g. 'To be, or "
                           "[MASK:8] to be'")
    length = len(pieces) if length is None else int(length)
    if len(pieces) > length:
        raise UnnoiseError(f"{where}: the text is {len(pieces)} tokens with its spans, longer than the length "
                           f"{length}")
    return torch.tensor(pieces + [FREE] * (length - len(pieces)), dtype=torch.long)


def _encode_piece(text: str, encode, where: str) -> list[int]:
    if _MASK_START in text:
        fragment = text[text.index(_MASK_START):][:12]
        raise UnnoiseError(f"{where}: {fragment!r} is not a span; write [MASK:n] with n the number of tokens to "
                           "fill, e.g. [MASK:8]")
    if not text:
        return []
    try:
        return [int(i) for i in encode(text)]
    except UnnoiseError as error:
        raise UnnoiseError(f"{where}: {error}") from None
