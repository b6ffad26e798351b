"""Trajectory windows for diffusion planning: (state, action) sequences of horizon H from random waypoint
walks in a maze, as a (C, L) = (6, H) signal per sample (modality `trajectory`, the 1-D U-Net's input).

Channels (CHANNELS), each scaled to about [-1, 1] by TrajectoryScale:
  0, 1  position x, y       (p - centre) / half_extent, centre and half extent of the maze's grid (isotropic)
  2, 3  velocity vx, vy     v / SPEED_LIMIT
  4, 5  action ux, uy       already in [-1, 1]
Window k of walk w holds steps t = k * stride ... k * stride + H - 1: state s_t and the action a_t taken there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UnnoiseError
from .control import waypoint_walks
from .maze import LAYOUTS, SPEED_LIMIT, Maze, make_maze

CHANNELS = ("x", "y", "vx", "vy", "ux", "uy")
POSITION, VELOCITY, ACTION = slice(0, 2), slice(2, 4), slice(4, 6)
HORIZONS = {"umaze": 128, "medium": 256, "large": 384}  # Diffuser's Maze2D horizons (Janner et al. 2022)


@dataclass(frozen=True)
class TrajectoryScale:
    """The affine map between maze units and the network's [-1, 1] channels (module docstring)."""

    centre: tuple[float, float]
    half_extent: float

    @classmethod
    def for_maze(cls, maze: Maze) -> "TrajectoryScale":
        rows, cols = maze.shape
        return cls(((cols - 1) / 2.0, (rows - 1) / 2.0), (max(rows, cols) - 1) / 2.0)

    def normalise_positions(self, p: np.ndarray) -> np.ndarray:
        return (np.asarray(p, dtype=np.float64) - np.asarray(self.centre)) / self.half_extent

    def positions(self, z: np.ndarray) -> np.ndarray:
        """Maze positions from normalised ones (the inverse of normalise_positions)."""
        return np.asarray(z, dtype=np.float64) * self.half_extent + np.asarray(self.centre)

    def encode(self, positions: np.ndarray, velocities: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """(..., T, 2) arrays -> (..., 6, T) normalised channels."""
        channels = np.concatenate([self.normalise_positions(positions), velocities / SPEED_LIMIT, actions], -1)
        return np.swapaxes(channels, -1, -2)

    def decode(self, x) -> dict:
        """(..., 6, T) normalised channels -> maze-unit positions, velocities, actions, each (..., T, 2)."""
        x = np.swapaxes(np.asarray(x, dtype=np.float64), -1, -2)
        return {"positions": self.positions(x[..., POSITION]), "velocities": x[..., VELOCITY] * SPEED_LIMIT,
                "actions": x[..., ACTION]}


def trajectory_windows(walks: dict, scale: TrajectoryScale, horizon: int, stride: int) -> np.ndarray:
    """All windows (N, 6, horizon) of every walk, starting every `stride` steps."""
    positions, velocities, actions = walks["positions"][:, :-1], walks["velocities"][:, :-1], walks["actions"]
    steps = actions.shape[1]
    if steps < horizon:
        raise UnnoiseError(f"maze data: walks of {steps} steps are shorter than the horizon {horizon}")
    channels = scale.encode(positions, velocities, actions)  # (W, 6, T)
    starts = range(0, steps - horizon + 1, stride)
    return np.concatenate([channels[:, :, s:s + horizon] for s in starts], 0)


def load_maze(layout: str = "umaze", horizon=None, walks=64, steps=2000, stride=8, seed=0) -> ArrayDataset:
    """Windows of random waypoint walks in the D4RL `layout` (umaze, medium, large): `walks` walks of
    `steps` steps from seed `seed`, windows of `horizon` steps (default: 128 / 256 / 384 by layout) every
    `stride` steps. A dataset of modality `trajectory`, samples (6, horizon)."""
    from ..data.base import ArrayDataset, positive_int, seed_int  # here: data/__init__ imports this module

    if layout not in LAYOUTS:
        raise UnnoiseError(f"dataset maze: unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    horizon = HORIZONS[layout] if horizon is None else positive_int(horizon, "dataset maze: horizon")
    walks, steps = positive_int(walks, "dataset maze: walks"), positive_int(steps, "dataset maze: steps")
    stride, seed = positive_int(stride, "dataset maze: stride"), seed_int(seed, "dataset maze: seed")
    maze = make_maze(layout)
    data = waypoint_walks(maze, walks, steps, seed)
    x = trajectory_windows(data, TrajectoryScale.for_maze(maze), horizon, stride)
    dataset = ArrayDataset(torch.from_numpy(x).float(), name=f"maze-{layout}", modality="trajectory")
    dataset.layout = layout
    return dataset
