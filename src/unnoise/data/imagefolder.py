"""A folder of images (searched recursively), labelled by subfolder when every image has one.

Files Pillow cannot read (corrupt images, text files, ...) are skipped: one warning per file
on the "unnoise.data" logger, then a summary line. Hidden files and folders (".name") are
ignored silently.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from unnoise.data.base import ArrayDataset, choice, import_extra, positive_int
from unnoise.errors import UnnoiseError

log = logging.getLogger("unnoise.data")

MODES = ("rgb", "gray")
MODE_ALIASES = {"grayscale": "gray", "grey": "gray", "greyscale": "gray", "l": "gray"}
CROPS = ("center", "none")
CROP_ALIASES = {"centre": "center"}


def _pillow():
    return import_extra("PIL.Image", "dataset 'imagefolder'", "Pillow")


def _candidate_files(root: Path) -> list[Path]:
    """Every non-hidden file below `root`, in a stable (sorted) order."""
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            files.append(path)
    return files


def _flatten(image, mode: str):
    """Convert to "RGB" or "L", compositing any transparency over white."""
    Image = _pillow()
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB" if mode == "rgb" else "L")


def _square(image, size: int, crop: str):
    """Centre-crop to a square (unless crop is "none"), then resize to size x size."""
    Image = _pillow()
    if crop == "center":
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return image


def read_image(path: Path, size: int, mode: str, crop: str) -> np.ndarray:
    """One image as uint8 (C, size, size); raises OSError/ValueError-like errors if unreadable."""
    Image = _pillow()
    with Image.open(path) as probe:
        probe.verify()
    with Image.open(path) as image:
        image.load()
        pixels = np.asarray(_square(_flatten(image, mode), size, crop), dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _unreadable_errors() -> tuple[type[BaseException], ...]:
    Image = _pillow()
    return (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def _read_all(root: Path, size: int, mode: str, crop: str):
    """Read every candidate file: returns (arrays, relative paths read, skipped paths)."""
    errors = _unreadable_errors()
    arrays, read, skipped = [], [], []
    for path in _candidate_files(root):
        try:
            arrays.append(read_image(path, size, mode, crop))
        except errors as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            log.warning("imagefolder: skipped unreadable file %s (%s)", path, reason)
            skipped.append(str(path))
            continue
        read.append(path.relative_to(root))
    return arrays, read, skipped


def _labels_from_subfolders(relative_paths: list[Path]):
    """(labels, class names) from each image's top-level subfolder, or (None, None)."""
    if not all(len(path.parts) >= 2 for path in relative_paths):
        return None, None
    folders = [path.parts[0] for path in relative_paths]
    class_names = sorted(set(folders))
    index = {name: position for position, name in enumerate(class_names)}
    labels = torch.tensor([index[folder] for folder in folders], dtype=torch.long)
    return labels, class_names


def load_imagefolder(path: str | None = None, size: int = 32, mode: str = "rgb", crop: str = "center") -> ArrayDataset:
    """Images below `path` as (N, C, size, size) float32 in [-1, 1]; C is 3 for rgb, 1 for gray."""
    if path is None or str(path).strip() == "":
        raise UnnoiseError("imagefolder: option 'path' is required (the image directory)")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UnnoiseError(f"imagefolder: no such directory: {root}")
    size = positive_int(size, "imagefolder size")
    mode = choice(mode, "imagefolder mode", MODES, MODE_ALIASES)
    crop = choice(crop, "imagefolder crop", CROPS, CROP_ALIASES)
    arrays, read, skipped = _read_all(root, size, mode, crop)
    if not arrays:
        raise UnnoiseError(f"imagefolder: no readable images in {root} ({len(skipped)} unreadable files)")
    pixels = torch.from_numpy(np.stack(arrays)).to(torch.float32)
    labels, class_names = _labels_from_subfolders(read)
    dataset = ArrayDataset(pixels / 127.5 - 1.0, labels, class_names, name=f"imagefolder:{root.name}")
    dataset.skipped = skipped
    dataset.levels = 256  # 8-bit pixels
    level = logging.WARNING if skipped else logging.INFO
    log.log(level, "imagefolder %s: loaded %d images, skipped %d unreadable files", root, len(arrays), len(skipped))
    return dataset
