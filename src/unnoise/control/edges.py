"""Edge maps of images, batched in torch: Canny's detector (Canny 1986), thick coarse "sketches", and the
edge F1 score the ControlNet++ protocol reports between a sample's edges and its control.

Every map is (B, 1, H, W) float in {0, 1} (1 on an edge) for images (B, C, H, W) in [-1, 1].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# hysteresis thresholds on the gradient magnitude of [0, 1] grey levels (a sharp step of height h gives h):
# OpenCV's usual 100 / 200 on 8-bit images with its unnormalised Sobel (4x ours)
LOW, HIGH = 0.1, 0.2
SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4  # d/dx: unit step -> 1


def grey(images: Tensor) -> Tensor:
    """(B, C, H, W) in [-1, 1] -> (B, 1, H, W) mean grey level in [0, 1]."""
    return (images.float().mean(dim=1, keepdim=True) + 1) / 2


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (B, 1, H, W) with standard deviation `sigma` pixels (reflected borders)."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))


def gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    """Sobel derivatives (d/dx, d/dy) of (B, 1, H, W), replicated borders."""
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    sobel = SOBEL.to(x.device, x.dtype)
    return F.conv2d(padded, sobel.view(1, 1, 3, 3)), F.conv2d(padded, sobel.t().reshape(1, 1, 3, 3))


def _shifted(x: Tensor, dy: int, dx: int) -> Tensor:
    """out[i, j] = x[i + dy, j + dx], zero outside the image."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    return padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]


def non_maximum_suppression(magnitude: Tensor, gx: Tensor, gy: Tensor) -> Tensor:
    """The magnitude where it is a maximum along the gradient direction (quantised to 0, 45, 90, 135
    degrees) against both neighbours, else 0; of two equal neighbours (a sharp step) the one after is kept."""
    angle = torch.rad2deg(torch.atan2(gy, gx)) % 180.0
    sector = torch.round(angle / 45.0).long() % 4  # 0: horizontal gradient, 1: 45, 2: vertical, 3: 135
    keep = torch.zeros_like(magnitude, dtype=torch.bool)
    for index, (dy, dx) in enumerate(((0, 1), (1, 1), (1, 0), (1, -1))):
        peak = (magnitude > _shifted(magnitude, dy, dx)) & (magnitude >= _shifted(magnitude, -dy, -dx))
        keep |= (sector == index) & peak
    return torch.where(keep, magnitude, torch.zeros_like(magnitude))


def dilate(edges: Tensor, radius: int = 1) -> Tensor:
    """Edges grown by `radius` pixels in every direction (a (2r+1)^2 square)."""
    if radius <= 0:
        return edges
    return F.max_pool2d(edges, 2 * radius + 1, stride=1, padding=radius)


def hysteresis(magnitude: Tensor, low: float, high: float) -> Tensor:
    """Pixels above `high`, plus those above `low` 8-connected to them through pixels above `low`."""
    weak = magnitude >= low
    edges = (magnitude >= high).float()
    while True:
        grown = dilate(edges) * weak
        if torch.equal(grown, edges):
            return edges
        edges = grown


def canny(images: Tensor, sigma: float = 1.0, low: float = LOW, high: float = HIGH) -> Tensor:
    """Canny edges (B, 1, H, W) in {0, 1} of images (B, C, H, W) in [-1, 1]: grey levels blurred by
    `sigma`, Sobel gradients, non-maximum suppression, hysteresis between `low` and `high` (gradient
    magnitude of [0, 1] grey levels; a sharp step of height h gives h)."""
    if images.ndim != 4:
        raise ValueError(f"edges need images (B, C, H, W), got shape {tuple(images.shape)}")
    x = gaussian_blur(grey(images), sigma)
    gx, gy = gradients(x)
    thin = non_maximum_suppression(torch.hypot(gx, gy), gx, gy)
    return hysteresis(thin, low, high)


def sketch(images: Tensor, sigma: float | None = None) -> Tensor:
    """A coarse hand-drawing stand-in: the main contours only (Canny with a blur of `sigma`, default one
    pixel per 16 of the image width, at least 1), drawn with a 3-pixel pen."""
    sigma = max(1.0, images.shape[-1] / 16) if sigma is None else sigma
    return dilate(canny(images, sigma=sigma))


def edge_f1(found: Tensor, target: Tensor, tolerance: int = 1) -> Tensor:
    """Per-image F1 (B,) between edge maps (B, 1, H, W): precision is the fraction of found edge pixels
    within `tolerance` pixels of a target edge, recall the fraction of target edge pixels within
    `tolerance` of a found one. Two empty maps score 1, one empty map 0."""
    found, target = (found > 0.5).float(), (target > 0.5).float()
    dims = (1, 2, 3)
    n_found, n_target = found.sum(dims), target.sum(dims)
    precision = (found * dilate(target, tolerance)).sum(dims) / n_found.clamp_min(1)
    recall = (target * dilate(found, tolerance)).sum(dims) / n_target.clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    both_empty = (n_found == 0) & (n_target == 0)
    return torch.where(both_empty, torch.ones_like(f1), f1)
