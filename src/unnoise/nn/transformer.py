"""A pre-norm transformer over token ids returning per-position logits: bidirectional (the x_0 model of
categorical diffusion) or causal (the autoregressive baseline, with a key/value cache for sampling).

Positions enter only through rotary embeddings of queries and keys (Su et al. 2021, eq. 34), so attention
depends on relative offsets; `rotary=False` leaves a bidirectional model equivariant to permutations.
Time t in [0, 1] is added to every token's embedding when `time_conditioned` (the uniform process needs it;
the absorbing one does not, Sahoo et al. 2024 sec. 3.2).
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UnnoiseError


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int  # classes predicted at every position
    input_size: int = 0  # token ids read (vocab_size + 1 for a [MASK] or [BOS] id); 0: vocab_size
    length: int = 256  # longest sequence (rotary needs no table; this bounds caches and checks inputs)
    width: int = 256
    depth: int = 6
    heads: int = 8
    mlp_ratio: float = 4.0
    causal: bool = False
    time_conditioned: bool = False
    rotary: bool = True
    rotary_base: float = 10000.0

    def __post_init__(self):
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise UnnoiseError(f"transformer: width {self.width} must split into {self.heads} heads of even size")
        if min(self.vocab_size, self.length, self.depth, self.heads) < 1:
            raise UnnoiseError("transformer: vocab_size, length, depth and heads must be >= 1")


def rotate(x: Tensor, positions: Tensor, base: float) -> Tensor:
    """Rotary embedding of x (B, H, L, D) at integer positions (L,): pairs (x_i, x_{i+D/2}) turned by
    positions * base^(-2i/D) (Su et al. 2021, eq. 34, in the half-split layout)."""
    half = x.shape[-1] // 2
    frequencies = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)  # (D/2,)
    angles = positions.to(torch.float32).unsqueeze(-1) * frequencies  # (L, D/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first * cos - second * sin, first * sin + second * cos], -1)


class KVCache:
    """Keys and values of the positions seen so far, one (k, v) pair of (B, H, P, D) per layer."""

    def __init__(self):
        self.layers: list[tuple[Tensor, Tensor] | None] = []

    @property
    def length(self) -> int:
        """Positions cached before the current forward pass (layer 0 is extended first)."""
        return self.past_length(len(self.layers) - 1) if self.layers else 0

    def past_length(self, index: int) -> int:
        """Positions held for layer `index`."""
        return 0 if index >= len(self.layers) or self.layers[index] is None else self.layers[index][0].shape[2]

    def extend(self, index: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        while len(self.layers) <= index:
            self.layers.append(None)
        past = self.layers[index]
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        self.layers[index] = (k, v)
        return k, v


class Attention(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config, self.heads = config, config.heads
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.out = nn.Linear(config.width, config.width)

    def forward(self, x: Tensor, positions: Tensor, index: int, cache: KVCache | None) -> Tensor:
        batch, length, width = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.heads, width // self.heads)  # (B, L, 3, H, D)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, L, D)
        if self.config.rotary:
            q, k = rotate(q, positions, self.config.rotary_base), rotate(k, positions, self.config.rotary_base)
        past = cache.past_length(index) if cache is not None else 0
        if cache is not None:
            k, v = cache.extend(index, k, v)  # (B, H, past + L, D)
        mask, causal = None, self.config.causal and past == 0  # no cache: the fused causal kernel
        if self.config.causal and past > 0 and length > 1:  # query i (at past + i) sees keys j <= past + i
            keys = torch.arange(past + length, device=x.device)
            mask = keys.unsqueeze(0) <= (past + torch.arange(length, device=x.device)).unsqueeze(1)  # (L, P + L)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)  # (B, H, L, D)
        return self.out(y.transpose(1, 2).reshape(batch, length, width))


class Block(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        hidden = int(config.width * config.mlp_ratio)
        self.norm1, self.norm2 = nn.LayerNorm(config.width), nn.LayerNorm(config.width)
        self.attention = Attention(config)
        self.mlp = nn.Sequential(nn.Linear(config.width, hidden), nn.GELU(), nn.Linear(hidden, config.width))

    def forward(self, x: Tensor, positions: Tensor, index: int, cache: KVCache | None) -> Tensor:
        x = x + self.attention(self.norm1(x), positions, index, cache)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """`forward(tokens (B, L), t (B,) or None, cache=None, offset=0) -> logits (B, L, vocab_size)`."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.time_conditioned = config.time_conditioned
        self.embed = nn.Embedding(config.input_size or config.vocab_size, config.width)
        if config.time_conditioned:
            self.time = nn.Sequential(nn.Linear(config.width, config.width), nn.SiLU(),
                                      nn.Linear(config.width, config.width))
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.depth)])
        self.norm = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, config.vocab_size)

    def _time_embedding(self, t: Tensor, dtype) -> Tensor:
        half = self.config.width // 2
        frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
        angles = 1000.0 * t.to(torch.float32).view(-1, 1) * frequencies  # (B, W/2)
        return self.time(torch.cat([angles.cos(), angles.sin()], -1).to(dtype))  # (B, W)

    def forward(self, tokens: Tensor, t: Tensor | None = None, cache: KVCache | None = None,
                offset: int = 0) -> Tensor:
        start = offset + (cache.length if cache is not None else 0)
        if start + tokens.shape[1] > self.config.length + offset:
            raise UnnoiseError(f"transformer: {start + tokens.shape[1]} positions exceed length {self.config.length}")
        x = self.embed(tokens)  # (B, L, W)
        if self.config.time_conditioned:
            if t is None:
                raise UnnoiseError("transformer: this model is time-conditioned and needs t")
            x = x + self._time_embedding(t.expand(tokens.shape[0]), x.dtype).unsqueeze(1)
        positions = start + torch.arange(tokens.shape[1], device=tokens.device)
        for index, block in enumerate(self.blocks):
            x = block(x, positions, index, cache)
        return self.head(self.norm(x))
