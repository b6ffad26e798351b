"""Plots of training records: the loss curve. Drawn with Pillow, imported only when a plot is written."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from unnoise.errors import UnnoiseError
from unnoise.io.files import pillow_draw, pillow_image, save_picture


def save_loss_curve(steps: Sequence[int], losses: Sequence[float], path: str | Path, width: int = 640,
                    height: int = 360) -> Path:
    """A line plot of the training loss (log scale) against step, with the ranges written in the corners;
    PNG or JPEG by the suffix of `path`."""
    Image, ImageDraw = pillow_image(), pillow_draw()
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
    return save_picture(picture, path)
