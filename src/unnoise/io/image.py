"""Write samples as pictures: image grids (PNG), animated grids (GIF) and 2-D scatter plots.

Images are tensors in [-1, 1] shaped (N, C, H, W) with C = 1 (grayscale) or 3 (RGB).
Everything is drawn with Pillow, imported only when a picture is written.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from unnoise.data.base import import_extra
from unnoise.errors import UnnoiseError

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
           (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127),
           (188, 189, 34), (23, 190, 207)]


def _pillow_image():
    return import_extra("PIL.Image", "writing images", "Pillow")


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


def _to_pil(grid: np.ndarray):
    Image = _pillow_image()
    return Image.fromarray(np.ascontiguousarray(grid[:, :, 0] if grid.shape[2] == 1 else grid))


def _prepare_path(path: str | Path) -> Path:
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, upscale: int = 1,
              pad: int = 1) -> Path:
    """Write a batch (N, C, H, W) in [-1, 1] as one PNG grid; creates parent folders."""
    grid = grid_array(images, nrow=nrow, upscale=upscale, pad=pad)
    path = _prepare_path(path)
    _to_pil(grid).save(path, format="PNG")
    return path


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
    pictures = [_to_pil(grid) for grid in grids]
    path = _prepare_path(path)
    pictures[0].save(path, format="GIF", save_all=True, append_images=pictures[1:],
                     duration=int(duration_ms), loop=int(loop))
    return path


def _plot_extent(points: np.ndarray, extent: float | None) -> float:
    """Half-width of the square view: given, or 5% beyond the farthest finite coordinate."""
    if extent is not None:
        return float(extent)
    farthest = float(np.abs(points).max()) if points.size else 0.0
    return max(farthest * 1.05, 1e-6)


def scatter_png(points: torch.Tensor, path: str | Path, size: int = 512, extent: float | None = None,
                labels: torch.Tensor | None = None, radius: int = 1) -> Path:
    """Draw 2-D points (N, 2) as dots on a white square with axes through 0, and save a PNG.

    The view spans [-extent, extent] on both axes (default: fits the data). Points are
    coloured by `labels` when given; non-finite points are left out.
    """
    path = _prepare_path(path)
    scatter_image(points, str(path), size, extent, labels, radius).save(path, format="PNG")
    return path


def save_scatter_gif(frames: Sequence[torch.Tensor], path: str | Path, extent: float, size: int = 384,
                     duration_ms: int = 80) -> Path:
    """An animated GIF of 2-D point clouds (N, 2), all drawn in the same [-extent, extent] view."""
    if len(frames) == 0:
        raise UnnoiseError(f"save_scatter_gif {path}: no frames to write")
    pictures = [scatter_image(frame, str(path), size, extent) for frame in frames]
    path = _prepare_path(path)
    pictures[0].save(path, format="GIF", save_all=True, append_images=pictures[1:], duration=int(duration_ms), loop=0)
    return path


def scatter_image(points: torch.Tensor, name: str, size: int = 512, extent: float | None = None,
                  labels: torch.Tensor | None = None, radius: int = 1):
    """The picture `scatter_png` saves, as a Pillow image (`name` only labels errors)."""
    path = name
    Image = _pillow_image()
    ImageDraw = import_extra("PIL.ImageDraw", "writing images", "Pillow")
    coords = torch.as_tensor(points).detach().float().cpu().numpy()
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise UnnoiseError(f"scatter_png {path}: points must be (N, 2), got shape {coords.shape}")
    finite = np.isfinite(coords).all(axis=1)
    classes = None if labels is None else torch.as_tensor(labels).cpu().numpy().reshape(-1)[finite]
    coords = coords[finite]
    half = _plot_extent(coords, extent)
    picture = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    centre = (size - 1) / 2
    draw.line([(0, centre), (size - 1, centre)], fill=(210, 210, 210))
    draw.line([(centre, 0), (centre, size - 1)], fill=(210, 210, 210))
    pixels = (coords / half) * centre * np.array([1.0, -1.0]) + centre
    for index, (column, row) in enumerate(pixels):
        colour = PALETTE[int(classes[index]) % len(PALETTE)] if classes is not None else (31, 70, 140)
        draw.ellipse([column - radius, row - radius, column + radius, row + radius], fill=colour)
    draw.rectangle([0, 0, size - 1, size - 1], outline=(120, 120, 120))
    return picture


def save_samples(samples: torch.Tensor, shape: tuple, path: str | Path) -> Path:
    """Write generated samples as a picture: a scatter for 2-D points, spectrograms for (C, L) signals,
    else an image grid upscaled to ~64 px cells."""
    if len(shape) == 1:
        return scatter_png(samples, path)
    if len(shape) == 2:
        from ..audio.spectrogram import save_spectrogram_grid

        return save_spectrogram_grid(samples, path, n_fft=min(256, shape[-1]))
    return save_grid(samples, path, upscale=max(1, 64 // shape[-1]))


def save_loss_curve(steps: Sequence[int], losses: Sequence[float], path: str | Path, width: int = 640,
                    height: int = 360) -> Path:
    """A line plot of the training loss (log scale) against step, with the ranges written in the corners."""
    Image = _pillow_image()
    ImageDraw = import_extra("PIL.ImageDraw", "writing images", "Pillow")
    points = [(s, v) for s, v in zip(steps, losses) if math.isfinite(v) and v > 0]
    if len(points) < 2:
        raise UnnoiseError(f"loss curve {path}: needs at least two positive finite losses, got {len(points)}")
    xs = np.array([p[0] for p in points], dtype=np.float64)
    ys = np.log10(np.array([p[1] for p in points], dtype=np.float64))
    margin = 40
    x_span, y_span = max(xs.max() - xs.min(), 1e-12), max(ys.max() - ys.min(), 1e-12)
    px = margin + (xs - xs.min()) / x_span * (width - 2 * margin)
    py = height - margin - (ys - ys.min()) / y_span * (height - 2 * margin)
    picture = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    draw.rectangle([margin, margin, width - margin, height - margin], outline=(160, 160, 160))
    draw.line(list(zip(px.tolist(), py.tolist())), fill=(31, 70, 140), width=2)
    draw.text((margin, 8), f"loss (log scale) {10 ** ys.max():.4g} .. {10 ** ys.min():.4g}", fill=(0, 0, 0))
    draw.text((margin, height - margin + 8), f"step {int(xs.min())}", fill=(0, 0, 0))
    draw.text((width - margin - 80, height - margin + 8), f"step {int(xs.max())}", fill=(0, 0, 0))
    path = _prepare_path(path)
    picture.save(path, format="PNG")
    return path
