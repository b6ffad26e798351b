"""Counter-based uniforms: sample i's draws depend only on (seed_i, step, element), never on the batch.

One torch.Generator per sample would also make a batch of N equal N single runs, but costs a call per sample
per step; hashing the counter (seed, step, element index) gives the same invariance in a few vectorised integer
operations on any device, with no state to carry between steps.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..errors import unknown_name

_MASK32 = 0xFFFFFFFF
_MASK16 = 0xFFFF
_GOLDEN32 = 0x9E3779B9  # 2^32 / golden ratio: spreads consecutive counters
_STREAM_SALTS = (0x243F6A88, 0x85A308D3)  # two independent 32-bit halves of a 64-bit draw


def _mul32(x: Tensor, constant: int) -> Tensor:
    """(x * constant) mod 2^32 for x in [0, 2^32) held in int64, without any int64 overflow."""
    low, high = constant & _MASK16, constant >> 16
    return (x * low + (((x * high) & _MASK16) << 16)) & _MASK32


def _mix32(x: Tensor) -> Tensor:
    """A bijective 32-bit avalanche mix (the 'lowbias32' xor-shift-multiply finaliser)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _hash32(seed: Tensor, step: int, index: Tensor, salt: int) -> Tensor:
    """32 well-mixed bits from the counter (seed, step, index, salt); all int64 tensors in [0, 2^32)."""
    h = _mix32((seed + salt) & _MASK32)
    h = _mix32(h ^ ((step * _GOLDEN32 + salt) & _MASK32))
    return _mix32((h + _mul32(index, _GOLDEN32)) & _MASK32 ^ (seed >> 32))


class CounterUniforms:
    """Per-sample uniforms on [0, 1) in float64 with 53 random bits each.

    `uniform(step, shape)` returns a (B, *shape) tensor whose row i is a function of (seeds[i], step, shape)
    only, so slicing the batch, reordering it or running samples one at a time gives identical draws.
    Use a distinct `step` for every independent draw (e.g. 2 * step and 2 * step + 1).
    """

    def __init__(self, seeds: Sequence[int], device: torch.device | None = None):
        values = [int(seed) % (1 << 62) for seed in seeds]
        self.seeds = torch.tensor(values, dtype=torch.int64, device=device)
        self.device = self.seeds.device

    def __len__(self) -> int:
        return self.seeds.shape[0]

    def uniform(self, step: int, shape: Sequence[int]) -> Tensor:
        count = 1
        for size in shape:
            count *= int(size)
        index = torch.arange(count, dtype=torch.int64, device=self.device).unsqueeze(0)  # (1, count)
        seed = self.seeds.unsqueeze(1)  # (B, 1)
        high = _hash32(seed, int(step), index, _STREAM_SALTS[0]) >> 11  # 21 bits
        low = _hash32(seed, int(step), index, _STREAM_SALTS[1])  # 32 bits
        bits = (high << 32) | low  # (B, count), 53 random bits
        return (bits.to(torch.float64) * 2.0 ** -53).reshape(len(self), *shape)


def categorical(probs: Tensor, uniforms: Tensor) -> Tensor:
    """Inverse-CDF draws in float64 from unnormalised `probs` (..., K) with `uniforms` (...) on [0, 1).

    Float64 keeps the draw at temperature one: a float32 Gumbel or uniform truncates the tail that
    low-probability categories live in (Zheng et al. 2024, sec. 4). Zero-probability categories are never drawn.
    """
    probs = probs.to(torch.float64)
    cumulative = probs.cumsum(-1)
    target = (uniforms.to(torch.float64) * cumulative[..., -1]).unsqueeze(-1)
    index = (cumulative <= target).sum(-1)  # the first category whose cumulative sum exceeds the target
    overflow = index >= probs.shape[-1]  # u * total rounded up to total: take the last positive category
    if bool(overflow.any()):
        positions = torch.arange(probs.shape[-1], device=probs.device)
        last_positive = torch.where(probs > 0, positions, -1).amax(-1)
        index = torch.where(overflow, last_positive, index)
    return index


FLOAT32_GRID = 2.0 ** -24  # a float32 uniform as torch.rand draws it: a multiple of 2^-24 in [0, 1 - 2^-24]


def categorical_float32(probs: Tensor, uniforms: Tensor) -> Tensor:
    """The float32 draw many samplers use, kept only to measure its effect: argmax_k p_k / E_k with
    E_k = -log u_k and u_k float32 uniforms, one per category (an exponential race, equivalent to Gumbel-max).

    In float32, u_k < 1 - 2^-24 bounds E_k below by about 6e-8, so the race's tail is cut: rare categories
    are drawn less often than their probability and the sampling temperature drops (Zheng et al. 2024,
    sec. 4). `uniforms` (..., K) on [0, 1) are rounded down to the float32 grid first.
    """
    grid = (torch.floor(uniforms.to(torch.float64) / FLOAT32_GRID) * FLOAT32_GRID).to(torch.float32)
    exponential = 1e-10 - torch.log(grid + 1e-10)  # float32 throughout, as in common masked-diffusion code
    return (probs.to(torch.float32) / exponential).argmax(-1)


DRAW_PRECISIONS = ("float64", "float32")


def draw_categorical(probs: Tensor, uniforms: CounterUniforms, step: int, precision: str = "float64") -> Tensor:
    """One draw per row of `probs` (B, L, K) from counter `step` of per-sample `uniforms`: the float64
    inverse-CDF draw (one uniform per position), or with precision 'float32' the truncated float32 race
    (one uniform per position and category) that exists only to measure how much it distorts samples."""
    batch, length, size = probs.shape
    if precision == "float64":
        return categorical(probs, uniforms.uniform(step, (length,)))
    if precision == "float32":
        return categorical_float32(probs, uniforms.uniform(step, (length, size)))
    raise unknown_name("draw precision", precision, DRAW_PRECISIONS)
