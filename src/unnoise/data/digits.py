"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 grayscale images, labels 0..9."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from unnoise.data.base import ArrayDataset, import_extra, positive_int
from unnoise.errors import UnnoiseError

NATIVE_SIZE = 8
MAX_PIXEL_VALUE = 16.0


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of (N, C, H, W) to size x size, antialiased when shrinking."""
    if images.shape[-2:] == (size, size):
        return images
    shrinking = size < min(images.shape[-2:])
    resized = F.interpolate(
        images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking
    )
    return resized.clamp(-1.0, 1.0)


SPLITS = ("all", "train", "test")
TEST_SIZE = 297  # a fixed, seeded 297-image held-out split; the other 1,500 are "train"


def load_digits(size: int = 8, split: str = "all") -> ArrayDataset:
    """The digits as (N, 1, size, size) float32 in [-1, 1] with labels 0..9 (no download); `split`
    "train" / "test" gives a fixed held-out partition (1,500 / 297 images), "all" every image."""
    size = positive_int(size, "digits size")
    if split not in SPLITS:
        raise UnnoiseError(f"digits split: unknown {split!r}; valid: {', '.join(SPLITS)}")
    datasets = import_extra("sklearn.datasets", "dataset 'digits'", "scikit-learn")
    bunch = datasets.load_digits()
    pixels = torch.as_tensor(bunch.images, dtype=torch.float32)
    images = (pixels / MAX_PIXEL_VALUE * 2.0 - 1.0).unsqueeze(1)
    images = resize_images(images, size)
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    if split != "all":
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
        keep = (order[:TEST_SIZE] if split == "test" else order[TEST_SIZE:]).sort().values
        images, labels = images[keep], labels[keep]
    class_names = [str(digit) for digit in range(10)]
    levels = int(MAX_PIXEL_VALUE) + 1 if size == NATIVE_SIZE else 0  # 0..16; resizing blends levels
    return ArrayDataset(images, labels, class_names, name="digits", modality="image", levels=levels)
