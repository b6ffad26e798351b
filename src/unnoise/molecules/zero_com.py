"""The zero-centre-of-mass subspace of molecule positions, and Gaussian noise drawn in it.

A batch of molecules is one tensor x (B, N, 3 + F): per atom 3 coordinates, then F features; `mask` (B, N)
is True for real atoms and False for padding. Positions live in the linear subspace where the (unweighted)
mean of the real atoms' coordinates is zero (Hoogeboom et al. 2022, Sec. 3.1; Xu et al. 2022): a Gaussian
restricted to it is invariant to rotations and reflections, and translations are factored out. Padding rows
are zero everywhere. Noise in that space is an isotropic Gaussian projected onto the subspace: per axis, the
real atoms' coordinates get covariance P = I - 11^T / n (n real atoms), the features the identity.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from ..sample.noise import SeededNoise

POSITION_DIMS = 3


def full_mask(x: Tensor) -> Tensor:
    """The mask (B, N) marking every atom of x (B, N, 3 + F) as real."""
    return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)


def checked_mask(x: Tensor, mask: Tensor | None) -> Tensor:
    """`mask` as a bool (B, N) tensor on x's device (all True when None); a wrong shape is a ValueError."""
    if mask is None:
        return full_mask(x)
    if x.ndim != 3 or x.shape[-1] < POSITION_DIMS:
        raise ValueError(f"molecules are (B, N, 3 + F) tensors, got shape {tuple(x.shape)}")
    if tuple(mask.shape) != tuple(x.shape[:2]):
        raise ValueError(f"atom mask of shape {tuple(mask.shape)} for molecules of shape {tuple(x.shape)}")
    return mask.to(device=x.device, dtype=torch.bool)


def centre_of_mass(positions: Tensor, mask: Tensor) -> Tensor:
    """Mean position of the real atoms: positions (B, N, 3), mask (B, N) -> (B, 1, 3); 0 for no atoms."""
    weights = mask.to(positions.dtype).unsqueeze(-1)  # (B, N, 1)
    count = weights.sum(dim=1, keepdim=True).clamp(min=1)  # (B, 1, 1)
    return (positions * weights).sum(dim=1, keepdim=True) / count


def remove_centre_of_mass(positions: Tensor, mask: Tensor) -> Tensor:
    """Project positions (B, N, 3) onto the zero-centre-of-mass subspace of the real atoms; padding -> 0."""
    weights = mask.to(positions.dtype).unsqueeze(-1)
    return (positions - centre_of_mass(positions, mask)) * weights


def project(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """x (B, N, 3 + F) with positions moved to zero centre of mass and every padding row set to zero."""
    mask = checked_mask(x, mask)
    positions = remove_centre_of_mass(x[..., :POSITION_DIMS], mask)
    features = x[..., POSITION_DIMS:] * mask.to(x.dtype).unsqueeze(-1)
    return torch.cat([positions, features], dim=-1)


def subspace_dimension(mask: Tensor, num_features: int) -> Tensor:
    """Dimension of one molecule's Gaussian (B,): (n - 1) * 3 + n * F for n real atoms, the d of its VLB
    and likelihood (the positions lose the 3 degrees of freedom of the centre of mass)."""
    count = mask.to(torch.int64).sum(dim=1)
    return (count - 1).clamp(min=0) * POSITION_DIMS + count * int(num_features)


def subspace_gaussian_log_density(x: Tensor, mask: Tensor, sigma: Tensor) -> Tensor:
    """log N(x; 0, sigma^2 I) of molecules x (B, N, 3 + F) in the zero-CoM subspace (B,): the Gaussian of
    dimension d = (n - 1) * 3 + n * F, -||x||^2 / (2 sigma^2) - d/2 log(2 pi sigma^2) (Hoogeboom et al. 2022,
    Sec. 3.1); x must already lie in the subspace (`project`). sigma: (B,) or a scalar."""
    d = subspace_dimension(mask, x.shape[-1] - POSITION_DIMS).to(x.dtype)
    variance = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1) ** 2
    squared = masked_sum(x**2, mask)
    return -0.5 * squared / variance - 0.5 * d * torch.log(2 * math.pi * variance)


def masked_sum(values: Tensor, mask: Tensor) -> Tensor:
    """Sum over the real atoms' entries of values (B, N, D) -> (B,): a loss or log-density per molecule."""
    return (values * mask.to(values.dtype).unsqueeze(-1)).flatten(1).sum(dim=1)


class ZeroCoMNoise(SeededNoise):
    """Per-sample seeded noise in the zero-centre-of-mass subspace, with padding atoms at zero.

    A drop-in `noise(like)` for every sampler: sample i draws an isotropic Gaussian (B, N, 3 + F) from its
    own generator (as SeededNoise), then `project` applies sample i's mask. A batch therefore equals the
    same molecules drawn one at a time, and the samplers stay pure functions of their noise source."""

    def __init__(self, seeds: Sequence[int], mask: Tensor, device: torch.device | str | None = None):
        super().__init__(seeds, device)
        if mask.ndim != 2 or mask.shape[0] != len(self.seeds):
            raise ValueError(f"atom mask of shape {tuple(mask.shape)} for {len(self.seeds)} seeds")
        self.mask = mask.to(torch.bool)

    def __call__(self, like: Tensor) -> Tensor:
        if like.ndim != 3 or like.shape[1] != self.mask.shape[1]:
            raise ValueError(f"noise of shape {tuple(like.shape)} for an atom mask of shape {tuple(self.mask.shape)}")
        return project(super().__call__(like), self.mask.to(like.device))
