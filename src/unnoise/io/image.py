"""Images as pictures: grids (PNG or JPEG) and animated grids (GIF).

Images are tensors in [-1, 1] shaped (N, C, H, W) with C = 1 (grayscale) or 3 (RGB).
Everything is drawn with Pillow, imported only when a picture is written.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from unnoise.errors import UnnoiseError
from unnoise.io.files import pillow_image, save_animation, save_picture

PREVIEW_CELL = 64  # sample grids enlarge each image to about this many pixels


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Map values in [-1, 1] to uint8 0..255 (clamped, rounded), keeping the shape."""
    scaled = (torch.as_tensor(x).detach().float().cpu().clamp(-1.0, 1.0) + 1.0) * 127.5
    return scaled.round().to(torch.uint8).numpy()


def _as_batch(images: torch.Tensor) -> torch.Tensor:
    """Accept (N, C, H, W) or a single (C, H, W) image; check C is 1 or 3."""
    images = torch.as_tensor(images)
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[0] == 0 or images.shape[1] not in (1, 3):
        raise UnnoiseError(
            f"images must be (N, C, H, W) with N >= 1 and C in (1, 3), got shape {tuple(images.shape)}"
        )
    return images


def grid_array(images: torch.Tensor, nrow: int | None = None, upscale: int = 1, pad: int = 1,
               pad_value: float = 0.0) -> np.ndarray:
    """Tile a batch into one uint8 (H, W, C) array: `nrow` images per row (default ~sqrt(N)),
    each enlarged `upscale` times (nearest neighbour), with `pad` pixels around every tile."""
    images = _as_batch(images)
    count, channels, height, width = images.shape
    if upscale < 1 or pad < 0:
        raise UnnoiseError(f"upscale must be >= 1 and pad >= 0, got upscale={upscale}, pad={pad}")
    columns = max(1, min(count, nrow or math.ceil(math.sqrt(count))))
    rows = math.ceil(count / columns)
    tiles = to_uint8(images).transpose(0, 2, 3, 1)
    tiles = tiles.repeat(upscale, axis=1).repeat(upscale, axis=2)
    tile_h, tile_w = height * upscale, width * upscale
    fill = to_uint8(torch.tensor(float(pad_value))).item()
    grid = np.full((rows * (tile_h + pad) + pad, columns * (tile_w + pad) + pad, channels), fill, np.uint8)
    for index in range(count):
        top = pad + (index // columns) * (tile_h + pad)
        left = pad + (index % columns) * (tile_w + pad)
        grid[top:top + tile_h, left:left + tile_w] = tiles[index]
    return grid


def to_pil(grid: np.ndarray):
    """A uint8 (H, W, C) array as a Pillow picture (mode L for one channel, RGB for three)."""
    return pillow_image().fromarray(np.ascontiguousarray(grid[:, :, 0] if grid.shape[2] == 1 else grid))


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, upscale: int = 1,
              pad: int = 1) -> Path:
    """Write a batch (N, C, H, W) in [-1, 1] as one grid picture, PNG or JPEG by the suffix of `path`;
    creates parent folders."""
    return save_picture(to_pil(grid_array(images, nrow=nrow, upscale=upscale, pad=pad)), path)


def save_gif(frames: Sequence[torch.Tensor], path: str | Path, duration_ms: int = 80,
             nrow: int | None = None, upscale: int = 1, pad: int = 1, loop: int = 0) -> Path:
    """Write an animated GIF, one frame per batch (N, C, H, W) or single image/grid (C, H, W).

    Every frame must tile to the same size; `loop=0` repeats forever.
    """
    if len(frames) == 0:
        raise UnnoiseError(f"save_gif {path}: no frames to write")
    grids = [grid_array(frame, nrow=nrow, upscale=upscale, pad=pad) for frame in frames]
    sizes = {grid.shape for grid in grids}
    if len(sizes) > 1:
        raise UnnoiseError(f"save_gif {path}: frames differ in size: {sorted(sizes)}")
    return save_animation([to_pil(grid) for grid in grids], path, duration_ms, loop)


def preview_upscale(spec) -> int:
    """How many times sample grids enlarge an image of this spec (to about PREVIEW_CELL pixels)."""
    return max(1, PREVIEW_CELL // spec.shape[-1])


def write_image_samples(x: torch.Tensor, spec, path: str | Path) -> list[Path]:
    """Image samples (N, C, H, W) as one grid picture (PNG or JPEG by suffix), each enlarged to ~64 px."""
    return [save_grid(x, path, upscale=preview_upscale(spec))]


def write_image_trajectory(frames: Sequence[torch.Tensor], spec, path: str | Path) -> Path:
    """Image batches along a trajectory (each (N, C, H, W)) as an animated GIF of grids."""
    return save_gif([frame.clamp(-1, 1) for frame in frames], path, upscale=preview_upscale(spec))


