"""The number of atoms per generated molecule: drawn from the training set's histogram, or given.

EDM for molecules samples N ~ p(N), the training histogram of atom counts, then the molecule given N
(Hoogeboom et al. 2022, Sec. 3.3); log p(N) is part of the molecule's likelihood.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import UnnoiseError
from .features import mask_from_counts


class AtomCountDistribution:
    """p(N) from a histogram: `counts[n]` molecules with n atoms (index 0..max_atoms)."""

    def __init__(self, counts):
        counts = torch.as_tensor(counts, dtype=torch.float64).flatten()
        if counts.numel() < 2 or bool((counts < 0).any()) or float(counts[1:].sum()) <= 0:
            raise UnnoiseError("atom count histogram: needs non-negative counts with some molecule of >= 1 atom")
        counts = counts.clone()
        counts[0] = 0.0  # a molecule has at least one atom
        self.counts = counts
        self.probabilities = counts / counts.sum()

    @classmethod
    def from_masks(cls, mask: Tensor) -> "AtomCountDistribution":
        """The histogram of real-atom counts of a dataset's masks (M, max_atoms)."""
        sizes = mask.to(torch.int64).sum(dim=1)
        return cls(torch.bincount(sizes, minlength=mask.shape[1] + 1))

    @property
    def max_atoms(self) -> int:
        return self.counts.numel() - 1

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n atom counts (n,) int64 drawn from p(N)."""
        return torch.multinomial(self.probabilities, int(n), replacement=True, generator=generator)

    def sample_masks(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Masks (n, max_atoms) for n molecules whose atom counts are drawn from p(N)."""
        return mask_from_counts(self.sample(n, generator), self.max_atoms)

    def log_probability(self, sizes: Tensor) -> Tensor:
        """log p(N) for atom counts (B,); -inf for counts never seen or beyond max_atoms."""
        sizes = sizes.to(torch.int64)
        inside = (sizes >= 0) & (sizes <= self.max_atoms)
        p = self.probabilities[sizes.clamp(0, self.max_atoms)]
        return torch.where(inside & (p > 0), p.clamp(min=1e-300).log(), torch.full_like(p, -math.inf))

    def to_list(self) -> list[int]:
        """The histogram as integers, for a run's JSON."""
        return [int(round(c)) for c in self.counts.tolist()]
