"""The autoregressive baseline: exact likelihood and left-to-right sampling of a causal model over
[BOS] + tokens, where the [BOS] id is vocab_size (the same slot the absorbing process uses for [MASK]).

Sampling draws every token in float64 from per-sample counter-based uniforms (one counter per position), so a
batch of N equals N single runs, and with a key/value cache equals recomputing the whole prefix each step.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..errors import UnnoiseError
from ..nn.transformer import KVCache
from .random import CounterUniforms, categorical


def with_bos(tokens: Tensor, vocab_size: int) -> Tensor:
    """[BOS] + tokens[:, :-1]: the inputs whose logits predict `tokens` (B, L)."""
    bos = torch.full_like(tokens[:, :1], vocab_size)
    return torch.cat([bos, tokens[:, :-1]], 1)


def autoregressive_nll(model, tokens: Tensor, vocab_size: int | None = None) -> Tensor:
    """-log p(tokens) = -sum_n log p(x^n | x^<n) per sequence (B,) in nats, in float64. `vocab_size` (the
    [BOS] id) defaults to model.config.vocab_size; pass it for a wrapped model (DDP, compiled)."""
    vocab_size = model.config.vocab_size if vocab_size is None else vocab_size
    logits = model(with_bos(tokens, vocab_size))  # (B, L, K)
    log_probs = torch.log_softmax(logits.to(torch.float64), -1)
    return -log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).sum(-1)


def _prompt_rows(prompt, batch: int, device) -> Tensor:
    if prompt is None:
        return torch.empty((batch, 0), dtype=torch.long, device=device)
    prompt = torch.as_tensor(prompt, dtype=torch.long, device=device)
    return prompt.expand(batch, -1) if prompt.ndim == 1 else prompt


@torch.no_grad()
def sample_autoregressive(model, seeds: Sequence[int], length: int, prompt=None, use_cache: bool = True,
                          device=None) -> Tensor:
    """Token ids (B, length) continuing `prompt` ((P,) or (B, P) ids, kept as given) left to right.

    With `use_cache` each step feeds only the newest token and reuses the keys and values of the earlier ones;
    without it every step recomputes the whole prefix (the reference the cache must reproduce).
    """
    config = model.config
    if not config.causal:
        raise UnnoiseError("autoregressive sampling needs a causal model")
    if length > config.length:
        raise UnnoiseError(f"length {length} exceeds the model's context of {config.length}")
    uniforms = CounterUniforms(seeds, device)
    tokens = _prompt_rows(prompt, len(uniforms), uniforms.device)
    if tokens.shape[1] > length:
        raise UnnoiseError(f"prompt of {tokens.shape[1]} tokens does not fit in length {length}")
    bos = torch.full((len(uniforms), 1), config.vocab_size, dtype=torch.long, device=uniforms.device)
    cache = KVCache() if use_cache else None
    fed = torch.cat([bos, tokens], 1)  # what the model reads next
    while tokens.shape[1] < length:
        logits = model(fed, cache=cache) if use_cache else model(torch.cat([bos, tokens], 1))
        probs = torch.softmax(logits[:, -1].to(torch.float64), -1)  # (B, K)
        draw = categorical(probs, uniforms.uniform(tokens.shape[1], ()))  # counter = position
        tokens = torch.cat([tokens, draw.unsqueeze(1)], 1)
        fed = draw.unsqueeze(1)
    return tokens
