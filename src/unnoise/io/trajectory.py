"""Trajectory samples (modality `trajectory`, (C, L)) as pictures: a grid of their x-y paths (channels 0
and 1, normalised to about [-1, 1]), drawn with Pillow; the maze pictures of a planning run are
planning/draw.py's."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from unnoise.io.files import pillow_draw, pillow_image, save_picture, tile_arrays

TILE = 160  # pixels per side of one path


def _path_tile(path: np.ndarray) -> np.ndarray:
    """One (TILE, TILE, 3) uint8 picture of a path (L, 2) in the view [-1.1, 1.1]^2, darker as time runs."""
    picture = pillow_image().new("RGB", (TILE, TILE), (255, 255, 255))
    draw = pillow_draw().Draw(picture)
    pixels = [((x + 1.1) / 2.2 * TILE, (y + 1.1) / 2.2 * TILE) for x, y in path]
    for k, (a, b) in enumerate(zip(pixels[:-1], pixels[1:])):
        shade = int(200 * (1 - k / max(1, len(pixels) - 2)))
        draw.line([a, b], fill=(shade, shade, 255), width=2)
    return np.asarray(picture)


def write_trajectory_samples(x: torch.Tensor, spec, path: str | Path) -> list[Path]:
    """Trajectories (N, C, L) as one grid picture (PNG or JPEG by suffix) of their x-y paths."""
    paths = torch.as_tensor(x).detach().cpu().double().numpy()[:, :2].transpose(0, 2, 1)  # (N, L, 2)
    grid = tile_arrays([_path_tile(p) for p in paths])
    return [save_picture(pillow_image().fromarray(grid, "RGB"), path)]
