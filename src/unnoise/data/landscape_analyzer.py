"""Reads landscape images back into their attributes and a segmentation map, with no learned model.

The analyzer inverts the renderer of `landscapes.py`, whose every pixel has the colour of one class:
1. time of day: the sky gradient nearest to the median colour of the top rows (never covered);
2. per pixel, the squared distance to every above-horizon class colour of its row (sky, sun or moon,
   cloud, three mountain shades, snow, trees), each class only in the rows where it can occur;
   3x3-averaged when the image looks noisy, so Gaussian noise averages out;
3. horizon and lake: the row h and the hypothesis (lake: rows below h are the tinted mirror image of
   the rows above, or ground: the ground gradient) with the least total squared error, the rows
   above h being explained by their nearest class;
4. segmentation: the nearest class above h, water or ground below; attributes from class counts.
On clean renders every step is exact; noise and a slight blur only move pixels near edges.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from unnoise.data.landscapes import (
    ABOVE_CLASSES, BODY, CLOUD, GROUND, HORIZON, MOUNTAIN_TOP, SKY, SNOW, TIMES, TREE_HEIGHT, TREES,
    REFLECTION, UPPER_SKY, WATER, palette_colour, class_colours, ground_colour, sky_colour,
)
from unnoise.errors import UnnoiseError

TOP_ROWS = 0.04  # rows above this height are always sky
NOISE_STEP = 0.01  # median |horizontal step| (in [0, 1] units) above which an image counts as noisy
MIN_BODY_AREA = 0.3 * math.pi * 0.055**2  # fractions of the image area
MIN_CLOUD_AREA = 0.3 * math.pi * 0.04 * 0.02
MIN_SNOW_AREA = 0.0008
MIN_PIXELS = 2
TREE_ROW_FRACTION = 0.5  # trees when this share of the row just above the horizon reads as trees
HORIZON_TOLERANCE = 0.02  # analysed horizon heights this close (fraction of the height) count as right
ANALYZED = ("time", "body", "side", "snow", "lake", "trees", "clouds", "horizon")


def _time_of_day(pixels: torch.Tensor) -> torch.Tensor:
    """Time index (N,) whose sky gradient is nearest to the median colour of the top rows."""
    size = pixels.shape[-1]
    rows = max(1, int(TOP_ROWS * size + 0.5))
    ys = (torch.arange(rows, dtype=torch.float32) + 0.5) / size
    observed = pixels[:, :, :rows].flatten(2).median(2).values  # (N, 3)
    expected = torch.stack([sky_colour(torch.tensor([t]), ys).mean(2)[0] for t in range(len(TIMES))])
    return torch.cdist(observed, expected).argmin(1)


def _is_noisy(pixels: torch.Tensor) -> torch.Tensor:
    """(N,) True where the median absolute step between neighbouring columns exceeds NOISE_STEP."""
    steps = (pixels[..., 1:] - pixels[..., :-1]).abs().flatten(1)
    return steps.median(1).values > NOISE_STEP


def _majority(slots: torch.Tensor, classes: int) -> torch.Tensor:
    """3x3 mode filter of (N, S, S) labels (edges replicated; ties to the lower label): denoises
    labels without inventing the in-between colours that averaging creates along edges."""
    votes = F.one_hot(slots, classes).permute(0, 3, 1, 2).float()  # (N, S, S) -> (N, K, S, S)
    return F.avg_pool2d(F.pad(votes, (1, 1, 1, 1), mode="replicate"), 3, stride=1).argmax(1)


def _allowed_rows(size: int) -> torch.Tensor:
    """(K, S) bool: rows where each class of `class_colours` can occur."""
    ys = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    upper, lower = ys < UPPER_SKY, ys >= MOUNTAIN_TOP - 0.5 / size
    trees = ys >= HORIZON[0] - TREE_HEIGHT[1] - 1.0 / size
    everywhere = torch.ones_like(upper)
    return torch.stack([everywhere, upper, upper, lower, lower, lower, lower, trees])


def _distances(pixels: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Squared colour distance (N, K, S, S) of every pixel to each class colour of its row; +inf in
    rows where the class cannot occur."""
    colours = class_colours(times, pixels.shape[-1]).unsqueeze(-1)  # (N, K, 3, S, 1)
    distance = ((pixels.unsqueeze(1) - colours) ** 2).sum(2)  # (N, K, S, S)
    allowed = _allowed_rows(pixels.shape[-1]).unsqueeze(-1)  # (K, S, 1)
    return distance.masked_fill(~allowed, math.inf)


def _horizon(pixels: torch.Tensor, times: torch.Tensor, nearest: torch.Tensor):
    """Horizon row (N,) and lake flag (N,) with the least total squared error; `nearest` (N, S, S)
    is each pixel's distance to its nearest above-horizon class."""
    size = pixels.shape[-1]
    ys = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    above = torch.cat([torch.zeros(len(pixels), 1), nearest.sum(2).cumsum(1)], dim=1)  # rows < h
    ground_rows = ((pixels - ground_colour(times, ys).unsqueeze(3)) ** 2).sum((1, 3))  # (N, S)
    below = ground_rows.flip(1).cumsum(1).flip(1)  # rows >= h
    candidates = range(math.floor(HORIZON[0] * size) - 1, math.ceil(HORIZON[1] * size) + 2)
    errors = []
    tint = palette_colour("water", times).view(-1, 3, 1, 1)
    for h in candidates:  # rows r >= h against a * row (2h - 1 - r) + (1 - a) * tint, as `reflect` paints
        mirrored = pixels[:, :, 2 * h - size:h].flip(2)
        a = (REFLECTION[0] - REFLECTION[1] * torch.arange(size - h, dtype=torch.float32) / size).view(1, 1, -1, 1)
        lake = ((pixels[:, :, h:] - (a * mirrored + (1 - a) * tint)) ** 2).sum((1, 2, 3))
        errors.append(torch.stack([above[:, h] + below[:, h], above[:, h] + lake], dim=1))
    best = torch.stack(errors, dim=1).flatten(1).argmin(1)  # (N,) over (candidate, hypothesis)
    return best // 2 + candidates.start, (best % 2).bool()


def _segment(distance: torch.Tensor, rows: torch.Tensor, lake: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """Segmentation (N, S, S) uint8: nearest class above the horizon (3x3 majority of it in noisy
    images), water or ground below."""
    size = distance.shape[-1]
    slots = distance.argmin(1)
    if bool(noisy.any()):
        slots[noisy] = _majority(slots[noisy], distance.shape[1])
    classes = torch.tensor(ABOVE_CLASSES, dtype=torch.uint8)[slots]
    below = torch.arange(size).view(1, size, 1) >= rows.view(-1, 1, 1)
    under = torch.where(lake, WATER, GROUND).to(torch.uint8).view(-1, 1, 1)
    return torch.where(below, under, classes)


def _attributes(segmentation: torch.Tensor, nearest: torch.Tensor, times: torch.Tensor, rows: torch.Tensor,
                lake: torch.Tensor) -> list[dict]:
    """Attribute dicts (see ANALYZED) read from a segmentation; trees from `nearest`, the per-pixel
    nearest classes, since a majority filter can erase a one-pixel tree line."""
    size = segmentation.shape[-1]
    area = float(size * size)
    counts = lambda label: (segmentation == label).flatten(1).sum(1)  # noqa: E731
    body = counts(BODY) >= max(MIN_PIXELS, MIN_BODY_AREA * area)
    columns = torch.arange(size, dtype=torch.float32).view(1, 1, -1) + 0.5
    body_x = ((segmentation == BODY) * columns).flatten(1).sum(1) / counts(BODY).clamp(min=1)
    halo = F.max_pool2d((segmentation == BODY).float().unsqueeze(1), 3, 1, 1).squeeze(1).bool()
    cloud_pixels = ((segmentation == CLOUD) & ~halo).flatten(1).sum(1)  # a blurred sun's rim reads as cloud
    clouds = cloud_pixels >= max(MIN_PIXELS, MIN_CLOUD_AREA * area)
    snow = counts(SNOW) >= max(MIN_PIXELS, MIN_SNOW_AREA * area)
    last_row = nearest[torch.arange(len(rows)), rows - 1]  # (N, S), the row just above the horizon
    trees = (last_row == TREES).float().mean(1) >= TREE_ROW_FRACTION
    results = []
    for i in range(len(rows)):
        time = TIMES[int(times[i])]
        name = ("moon" if time == "night" else "sun") if body[i] else "none"
        side = ("left" if body_x[i] < size / 2 else "right") if body[i] else "none"
        results.append({"time": time, "body": name, "side": side, "snow": bool(snow[i]), "lake": bool(lake[i]),
                        "trees": bool(trees[i]), "clouds": bool(clouds[i]), "horizon": int(rows[i]) / size})
    return results


def _analyze_batch(images: torch.Tensor) -> tuple[list[dict], torch.Tensor]:
    pixels = (images + 1.0) / 2.0
    times = _time_of_day(pixels)
    distance = _distances(pixels, times)
    rows, lake = _horizon(pixels, times, distance.amin(1))
    nearest = _segment(distance, rows, lake, torch.zeros(len(pixels), dtype=torch.bool))
    segmentation = _segment(distance, rows, lake, _is_noisy(pixels))
    return _attributes(segmentation, nearest, times, rows, lake), segmentation


def analyze_landscapes(images, batch: int = 128) -> tuple[list[dict], torch.Tensor]:
    """Read (N, 3, S, S) landscape images in [-1, 1] back into attribute dicts (keys ANALYZED) and a
    segmentation (N, S, S) uint8 of indices into SEGMENT_CLASSES. Deterministic; no learned model."""
    images = torch.as_tensor(images).detach().to(dtype=torch.float32).cpu()
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3] or images.shape[2] < 16:
        raise UnnoiseError(f"analyze_landscapes expects (N, 3, S, S) RGB images, S >= 16, got {tuple(images.shape)}")
    attributes, maps = [], []
    for chunk in images.split(batch):
        found, segmentation = _analyze_batch(chunk)
        attributes.extend(found)
        maps.append(segmentation)
    return attributes, torch.cat(maps)


def score_attributes(truth, found, keys=ANALYZED) -> dict[str, float]:
    """Fraction of images whose analysed value equals the true one, per key, and "all" (every key
    right). The horizon counts as right within HORIZON_TOLERANCE."""
    truth, found = list(truth), list(found)
    if len(truth) != len(found) or not truth:
        raise UnnoiseError(f"score_attributes: {len(truth)} true scenes for {len(found)} analyses")
    def right(key, t, f):  # noqa: E306
        return abs(t[key] - f[key]) <= HORIZON_TOLERANCE if key == "horizon" else t[key] == f[key]
    scores = {key: sum(right(key, t, f) for t, f in zip(truth, found)) / len(truth) for key in keys}
    scores["all"] = sum(all(right(k, t, f) for k in keys) for t, f in zip(truth, found)) / len(truth)
    return scores


def segmentation_accuracy(truth: torch.Tensor, found: torch.Tensor) -> float:
    """Fraction of pixels whose class agrees."""
    return float((truth == found).float().mean())


__all__ = ["ANALYZED", "SKY", "analyze_landscapes", "score_attributes", "segmentation_accuracy"]
