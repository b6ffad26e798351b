"""Points as pictures: scatter plots of 2-D points, grids of point clouds, and animated scatters (GIF).

A `points` sample is one point (D,) or a cloud of points (N, D); a `molecule` sample is N atoms whose first
three columns are coordinates. Pictures show the first two coordinates (a projection onto the x-y plane;
one-dimensional points are drawn on the x axis). Drawn with Pillow, imported only when a picture is written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from unnoise.errors import UnnoiseError
from unnoise.io.files import pillow_draw, pillow_image, save_animation, save_picture, tile_arrays

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
           (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127),
           (188, 189, 34), (23, 190, 207)]
CLOUD_TILE = 160  # pixels per side of one cloud in a grid of clouds


def planar(points: torch.Tensor) -> np.ndarray:
    """The first two coordinates of points (K, D) as float64 (K, 2); D = 1 gets y = 0."""
    coords = torch.as_tensor(points).detach().cpu().double().numpy()
    if coords.ndim != 2 or coords.shape[1] < 1:
        raise UnnoiseError(f"points must be (K, D) with D >= 1, got shape {coords.shape}")
    if coords.shape[1] == 1:
        return np.concatenate([coords, np.zeros_like(coords)], axis=1)
    return coords[:, :2]


def _plot_extent(points: np.ndarray, extent: float | None) -> float:
    """Half-width of the square view: given, or 5% beyond the farthest finite coordinate."""
    if extent is not None:
        return float(extent)
    finite = points[np.isfinite(points)]
    farthest = float(np.abs(finite).max()) if finite.size else 0.0
    return max(farthest * 1.05, 1e-6)


def scatter_image(points: torch.Tensor, name: str, size: int = 512, extent: float | None = None,
                  labels: torch.Tensor | None = None, radius: int = 1):
    """2-D points (K, 2) as dots on a white square with axes through 0, as a Pillow picture (`name` only
    labels errors). The view spans [-extent, extent] (default: fits the data); points are coloured by
    `labels` when given; non-finite points are left out."""
    coords = torch.as_tensor(points).detach().float().cpu().numpy()
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise UnnoiseError(f"scatter {name}: points must be (N, 2), got shape {coords.shape}")
    finite = np.isfinite(coords).all(axis=1)
    classes = None if labels is None else torch.as_tensor(labels).cpu().numpy().reshape(-1)[finite]
    coords = coords[finite]
    half = _plot_extent(coords, extent)
    picture = pillow_image().new("RGB", (size, size), (255, 255, 255))
    draw = pillow_draw().Draw(picture)
    centre = (size - 1) / 2
    draw.line([(0, centre), (size - 1, centre)], fill=(210, 210, 210))
    draw.line([(centre, 0), (centre, size - 1)], fill=(210, 210, 210))
    pixels = (coords / half) * centre * np.array([1.0, -1.0]) + centre
    for index, (column, row) in enumerate(pixels):
        colour = PALETTE[int(classes[index]) % len(PALETTE)] if classes is not None else (31, 70, 140)
        draw.ellipse([column - radius, row - radius, column + radius, row + radius], fill=colour)
    draw.rectangle([0, 0, size - 1, size - 1], outline=(120, 120, 120))
    return picture


def save_scatter(points: torch.Tensor, path: str | Path, size: int = 512, extent: float | None = None,
                 labels: torch.Tensor | None = None, radius: int = 1) -> Path:
    """Draw 2-D points (K, 2) with `scatter_image` and save them, PNG or JPEG by the suffix of `path`."""
    return save_picture(scatter_image(points, str(path), size, extent, labels, radius), path)


def cloud_grid_image(clouds: torch.Tensor, name: str, extent: float | None = None, tile: int = CLOUD_TILE):
    """A batch of clouds (B, K, D) as a grid of scatter tiles sharing one view (x-y projection)."""
    flat = planar(torch.as_tensor(clouds).reshape(-1, clouds.shape[-1]))
    half = _plot_extent(flat, extent)
    tiles = [np.asarray(scatter_image(planar(cloud), name, tile, half, radius=2)) for cloud in clouds]
    return pillow_image().fromarray(tile_arrays(tiles))


def _coordinates(x: torch.Tensor, spec) -> torch.Tensor:
    """The coordinates of a points or molecule batch: molecules keep their first three columns."""
    return x[..., :3] if spec.modality == "molecule" else x


def _picture(x: torch.Tensor, spec, name: str, extent: float | None = None, size: int = 512):
    """One picture of a batch: a scatter of all points (spec (D,)), or a grid of clouds (spec (N, D))."""
    x = _coordinates(torch.as_tensor(x).detach().cpu(), spec)
    if len(spec.shape) == 1:  # the spec's declared layout within its modality: one point per sample
        return scatter_image(planar(x), name, size, extent)
    return cloud_grid_image(x, name, extent)


def write_points_samples(x: torch.Tensor, spec, path: str | Path) -> list[Path]:
    """Points or molecules as one picture (PNG or JPEG by suffix): a scatter, or a grid of clouds."""
    return [save_picture(_picture(x, spec, str(path)), path)]


def write_points_trajectory(frames: Sequence[torch.Tensor], spec, path: str | Path) -> Path:
    """Points along a trajectory as an animated GIF, every frame in the view that fits the last one."""
    if len(frames) == 0:
        raise UnnoiseError(f"{path}: no frames to write")
    last = _coordinates(torch.as_tensor(frames[-1]).detach().cpu(), spec)
    extent = 1.1 / 1.05 * _plot_extent(planar(last.reshape(-1, last.shape[-1])), None)  # 10% beyond the data
    pictures = [_picture(frame, spec, str(path), extent, size=384) for frame in frames]
    return save_animation(pictures, path)


def save_scatter_gif(frames: Sequence[torch.Tensor], path: str | Path, extent: float, size: int = 384,
                     duration_ms: int = 80) -> Path:
    """An animated GIF of 2-D point clouds (K, 2), all drawn in the same [-extent, extent] view."""
    if len(frames) == 0:
        raise UnnoiseError(f"save_scatter_gif {path}: no frames to write")
    return save_animation([scatter_image(frame, str(path), size, extent) for frame in frames], path, duration_ms)
