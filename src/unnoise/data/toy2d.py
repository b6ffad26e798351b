"""Two-dimensional toy distributions (moons, swiss roll, ring of Gaussians) from numpy alone.

Moons and swiss roll are centred and scaled by fixed constants (the noise-free curve's mean
and per-axis RMS), so every draw shares one normalisation whatever `n` is. The ring is
eight Gaussians on a circle of radius 1.5, already unit scale. `noise` is the standard
deviation of the Gaussian noise added in these output units.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from unnoise.data.base import ArrayDataset, choice, non_negative_float, positive_int
from unnoise.errors import UnnoiseError

RING_MODES = 8
RING_RADIUS = 1.5
DEFAULT_NOISE = {"moons": 0.05, "swissroll": 0.05, "ring": 0.03}

# Moons: outer arc (cos t, sin t), inner arc (1 - cos t, 0.5 - sin t), t ~ U[0, pi].
MOONS_CENTER = np.array([0.5, 0.25])
MOONS_SCALE = math.sqrt((0.75 + (0.5 - 4 / math.pi**2) + (2 / math.pi - 0.25) ** 2) / 2)
# Swiss roll: (t cos t, t sin t), t ~ U[1.5 pi, 4.5 pi]; mean and RMS computed in closed form.
SWISS_T_RANGE = (1.5 * math.pi, 4.5 * math.pi)
SWISS_CENTER = np.array([2.0, 2.0 / (3 * math.pi)])
SWISS_SCALE = math.sqrt((39 * math.pi**2 / 4 - float(SWISS_CENTER @ SWISS_CENTER)) / 2)


def _moons(count: int, rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0.0, math.pi, size=count)
    upper = rng.random(count) < 0.5
    outer = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    inner = np.stack([1.0 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
    points = np.where(upper[:, None], outer, inner)
    return (points - MOONS_CENTER) / MOONS_SCALE


def _swissroll(count: int, rng: np.random.Generator) -> np.ndarray:
    turn = rng.uniform(*SWISS_T_RANGE, size=count)
    points = np.stack([turn * np.cos(turn), turn * np.sin(turn)], axis=1)
    return (points - SWISS_CENTER) / SWISS_SCALE


def _ring(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    modes = rng.integers(0, RING_MODES, size=count)
    angle = 2.0 * math.pi * modes / RING_MODES
    points = RING_RADIUS * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return points, modes


def ring_centers() -> torch.Tensor:
    """The eight ring mode centres as a (8, 2) tensor, in label order (for mode-coverage checks)."""
    angle = torch.arange(RING_MODES, dtype=torch.float64) * (2.0 * math.pi / RING_MODES)
    return (RING_RADIUS * torch.stack([angle.cos(), angle.sin()], dim=1)).float()


def load_toy2d(kind: str = "moons", n: int = 10000, seed: int = 0, noise: float | None = None) -> ArrayDataset:
    """`n` points of shape (2,) from `kind`; ring points carry their mode index as label."""
    kind = choice(kind, "toy2d kind", list(DEFAULT_NOISE))
    count = positive_int(n, "toy2d n")
    noise_std = DEFAULT_NOISE[kind] if noise is None else non_negative_float(noise, "toy2d noise")
    try:
        rng = np.random.default_rng(int(seed))
    except (TypeError, ValueError):
        raise UnnoiseError(f"toy2d seed must be a non-negative integer, got {seed!r}") from None
    labels, class_names = None, None
    if kind == "ring":
        points, modes = _ring(count, rng)
        labels = torch.as_tensor(modes, dtype=torch.long)
        class_names = [f"mode{index}" for index in range(RING_MODES)]
    else:
        points = _moons(count, rng) if kind == "moons" else _swissroll(count, rng)
    points = points + noise_std * rng.standard_normal(points.shape)
    x = torch.as_tensor(points, dtype=torch.float32)
    return ArrayDataset(x, labels, class_names, name=f"toy2d-{kind}", modality="points")
