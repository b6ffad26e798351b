"""A folder of images (searched recursively), labelled by subfolder when every image has one.

Files that fail `image_problem` are skipped: ones Pillow cannot read (corrupt images, text files, ...),
ones in a pixel mode that does not convert to 8-bit RGB or gray without loss (CMYK, 16-bit, float, ...),
and ones smaller than `min_size` on their short side (default: the training size; 0 accepts any and
upsamples). One warning per file on the "unnoise.data" logger, then a summary line with the counts;
`unnoise data check DIR` lists the same problems without training. Hidden files and folders (".name")
are ignored silently.
"""
from __future__ import annotations

import logging
import os
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
    return _walk(root)[0]


def _walk(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(files, [(link, why it was not followed)]) below `root`: symbolic links to directories are never
    followed (a link back to an ancestor would loop forever); an unreadable folder is an error."""
    files, links = [], []
    for folder, subfolders, names in os.walk(root, onerror=_unreadable_folder):
        folder = Path(folder)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in list(subfolders):
            path = folder / name
            if path.is_symlink():
                links.append((path, _link_problem(path)))
                subfolders.remove(name)
        files += [folder / n for n in names if not n.startswith(".") and (folder / n).is_file()]
    return sorted(files), sorted(links)


def _link_problem(path: Path) -> str:
    target = path.resolve()
    if target == path.parent.resolve() or target in path.parent.resolve().parents:
        return "symlink loop: not followed"
    return "symlink to a directory: not followed"


def _unreadable_folder(error: OSError) -> None:
    raise UnnoiseError(f"{error.filename}: folder cannot be read ({error.strerror})")


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


CONVERTIBLE_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "La"}


def image_problem(path: Path, min_size: int) -> str | None:
    """Why `path` is not a usable training image, or None: unreadable (with Pillow's reason), a wrong
    pixel mode, or a short side below min_size."""
    Image = _pillow()
    try:
        with Image.open(path) as probe:
            probe.verify()
        with Image.open(path) as image:
            image.load()
            mode, size = image.mode, image.size
    except _unreadable_errors() as error:
        return "unreadable: " + (str(error).splitlines()[0] if str(error) else type(error).__name__)
    if mode not in CONVERTIBLE_MODES:
        return f"wrong mode: {mode} (expected 8-bit RGB, gray or palette)"
    if min(size) < min_size:
        return f"too small: {size[0]}x{size[1]} (short side below {min_size})"
    return None


def check_folder(root: Path, min_size: int) -> tuple[int, list[tuple[Path, str]]]:
    """(files checked, [(path, problem)]) for every candidate image below root, and every symbolic link to a
    directory that was not followed."""
    files, links = _walk(Path(root))
    problems = [(path, problem) for path in files if (problem := image_problem(path, min_size))]
    return len(files), links + problems


def _unreadable_errors() -> tuple[type[BaseException], ...]:
    Image = _pillow()
    return (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def _read_all(root: Path, size: int, mode: str, crop: str, min_size: int):
    """Read every candidate file: returns (arrays, relative paths read, skipped paths)."""
    arrays, read, skipped = [], [], []
    files, links = _walk(root)
    for link, problem in links:
        log.warning("imagefolder: skipped %s (%s)", link, problem)
    for path in files:
        problem = image_problem(path, min_size)
        if problem is None:
            try:
                arrays.append(read_image(path, size, mode, crop))
            except _unreadable_errors() as error:  # verify() passed but decoding failed
                problem = "unreadable: " + (str(error).splitlines()[0] if str(error) else type(error).__name__)
        if problem is not None:
            log.warning("imagefolder: skipped %s (%s)", path, problem)
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


def load_imagefolder(path: str | None = None, size: int = 32, mode: str = "rgb", crop: str = "center",
                     min_size: int | None = None) -> ArrayDataset:
    """Images below `path` as (N, C, size, size) float32 in [-1, 1]; C is 3 for rgb, 1 for gray; images
    whose short side is below min_size (default: size) are skipped."""
    if path is None or str(path).strip() == "":
        raise UnnoiseError("imagefolder: option 'path' is required (the image directory)")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UnnoiseError(f"imagefolder: no such directory: {root}")
    size = positive_int(size, "imagefolder size")
    mode = choice(mode, "imagefolder mode", MODES, MODE_ALIASES)
    crop = choice(crop, "imagefolder crop", CROPS, CROP_ALIASES)
    min_size = size if min_size is None else int(min_size)
    arrays, read, skipped = _read_all(root, size, mode, crop, min_size)
    if not arrays:
        raise UnnoiseError(f"imagefolder: no usable images in {root} ({len(skipped)} skipped; "
                           f"`unnoise data check {root}` lists why)")
    pixels = torch.from_numpy(np.stack(arrays)).to(torch.float32)
    labels, class_names = _labels_from_subfolders(read)
    dataset = ArrayDataset(pixels / 127.5 - 1.0, labels, class_names, name=f"imagefolder:{root.name}",
                           modality="image", levels=256)  # 8-bit pixels
    dataset.skipped = skipped
    level = logging.WARNING if skipped else logging.INFO
    log.log(level, "imagefolder %s: loaded %d images, skipped %d files", root, len(arrays), len(skipped))
    return dataset
