"""Per-sample seeded noise: sample i draws from its own generator, so a batch of N equals N single runs."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from ..device import cpu

NoiseFn = Callable[[Tensor], Tensor]


class SeededNoise:
    """Callable `noise(like) -> Tensor` drawing each sample's noise from a generator seeded per sample.
    The generators live on the host, so a seed gives the same noise on every device; `device` is where
    `initial` places the starting point (default: the host)."""

    def __init__(self, seeds: Sequence[int], device: torch.device | str | None = None):
        self.seeds = [int(s) for s in seeds]
        self.device = cpu() if device is None else torch.device(device)
        self.generators = [torch.Generator(cpu()).manual_seed(s) for s in self.seeds]

    def __call__(self, like: Tensor) -> Tensor:
        if like.shape[0] != len(self.generators):
            raise ValueError(f"noise for a batch of {like.shape[0]} from {len(self.generators)} seeds")
        per_sample = [torch.randn(like.shape[1:], generator=g, dtype=torch.float32) for g in self.generators]
        return torch.stack(per_sample).to(device=like.device, dtype=like.dtype)

    def initial(self, shape: Sequence[int], sigma_max: float, dtype=torch.float32) -> Tensor:
        """Starting point x_T = sigma_max * z for a batch of len(seeds) samples of `shape`, on `device`."""
        like = torch.empty((len(self.generators), *shape), device=self.device, dtype=dtype)
        return self(like) * sigma_max


def default_noise(like: Tensor) -> Tensor:
    return torch.randn_like(like)
