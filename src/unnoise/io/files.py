"""What every writer shares: output folders, output formats chosen by suffix, and saving Pillow pictures.

Pillow is imported only when a picture is written (the `data` extra).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from unnoise.data.base import import_extra
from unnoise.errors import UnnoiseError

PICTURE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF"}
JPEG_QUALITY = 95


def pillow_image():
    """The PIL.Image module, or a one-line hint naming the extra to install."""
    return import_extra("PIL.Image", "writing images", "Pillow")


def pillow_draw():
    """The PIL.ImageDraw module, or a one-line hint naming the extra to install."""
    return import_extra("PIL.ImageDraw", "writing images", "Pillow")


def suffix_of(path: str | Path) -> str:
    """The lower-case suffix of `path`, e.g. ".png"; "" when it has none."""
    return Path(path).suffix.lower()


def check_suffix(path: str | Path, valid: Sequence[str], what: str) -> str:
    """The suffix of `path` when it is one of `valid`, else a one-line error naming it and the valid ones."""
    suffix = suffix_of(path)
    if suffix not in valid:
        shown = f"suffix {suffix!r}" if suffix else "no suffix"
        raise UnnoiseError(f"{path}: {what} cannot be written with {shown}; valid: {', '.join(valid)}")
    return suffix


def prepare_path(path: str | Path) -> Path:
    """`path` with `~` expanded, its parent folders created."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save_picture(picture, path: str | Path) -> Path:
    """Save one Pillow picture in the format its suffix names (.png, .jpg / .jpeg, .gif); returns the path."""
    suffix = check_suffix(path, tuple(PICTURE_FORMATS), "a picture")
    path = prepare_path(path)
    image_format = PICTURE_FORMATS[suffix]
    if image_format == "JPEG":
        picture = picture.convert("L" if picture.mode in ("L", "1") else "RGB")
        picture.save(path, format="JPEG", quality=JPEG_QUALITY)
    else:
        picture.save(path, format=image_format)
    return path


def save_animation(pictures: list, path: str | Path, duration_ms: int = 80, loop: int = 0) -> Path:
    """Save Pillow pictures as an animated GIF (`loop=0` repeats forever); the suffix must be .gif."""
    check_suffix(path, (".gif",), "an animation")
    if not pictures:
        raise UnnoiseError(f"{path}: no frames to write")
    path = prepare_path(path)
    pictures[0].save(path, format="GIF", save_all=True, append_images=pictures[1:], duration=int(duration_ms),
                     loop=int(loop))
    return path


def tile_arrays(tiles: list, columns: int | None = None, gap: int = 2, fill: int = 255):
    """Equal-sized uint8 (H, W, 3) arrays in a grid of `columns` (default ~sqrt(count)) with `gap`-pixel
    borders of `fill`: one (rows (H + gap) + gap, columns (W + gap) + gap, 3) array."""
    import math

    import numpy as np

    if not tiles:
        raise UnnoiseError("nothing to tile: no pictures")
    columns = max(1, min(len(tiles), columns or math.ceil(math.sqrt(len(tiles)))))
    rows = math.ceil(len(tiles) / columns)
    height, width = tiles[0].shape[:2]
    canvas = np.full((rows * (height + gap) + gap, columns * (width + gap) + gap, 3), fill, dtype=np.uint8)
    for index, tile in enumerate(tiles):
        top, left = gap + (index // columns) * (height + gap), gap + (index % columns) * (width + gap)
        canvas[top:top + height, left:left + width] = tile
    return canvas
