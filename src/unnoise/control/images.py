"""A user's control image: read from a file, and fitted to the run's control channels and size."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UnnoiseError


def read_control_image(path: Path) -> Tensor:
    """The image file at `path` as (C, H, W) float in [0, 1] (C: 1 grey, 3 RGB; alpha and palettes
    converted), with one-line errors for a missing or unreadable file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UnnoiseError(f"--control: file not found: {path}")
    try:
        with Image.open(path) as image:
            image = image.convert("L" if image.mode in ("1", "L", "I", "I;16", "F") else "RGB")
            array = np.asarray(image, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise UnnoiseError(f"--control: {path} is not a readable image ({exc})") from None
    return torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy())


def fit_control(image: Tensor, channels: int, size: tuple[int, int], where: str = "control") -> Tensor:
    """(C, H, W) in [0, 1] -> (channels, *size): grey becomes RGB by repetition and RGB grey by the mean;
    another size is resized (area averaging down, bilinear up) when the aspect ratio matches, else a
    one-line error."""
    image = torch.as_tensor(image, dtype=torch.float32)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise UnnoiseError(f"{where}: expected a (1 or 3, H, W) image, got shape {tuple(image.shape)}")
    if not bool(torch.isfinite(image).all()) or image.min() < 0 or image.max() > 1:
        raise UnnoiseError(f"{where}: values must lie in [0, 1]")
    if image.shape[0] != channels:
        image = image.mean(0, keepdim=True) if channels == 1 else image.expand(channels, *image.shape[1:])
    height, width = image.shape[1:]
    if (height, width) == tuple(size):
        return image.contiguous()
    if height * size[1] != width * size[0]:
        raise UnnoiseError(f"{where}: image is {width}x{height}, the run's control images are {size[1]}x{size[0]} "
                           f"(a different aspect ratio; crop it first)")
    mode = "area" if height > size[0] else "bilinear"
    return F.interpolate(image[None], size=tuple(size), mode=mode)[0].clamp(0, 1)
