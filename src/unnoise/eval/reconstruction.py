"""Reconstruction quality of an autoencoder: PSNR and SSIM per image.

SSIM follows Wang, Bovik, Sheikh & Simoncelli (2004), "Image quality assessment: from error visibility
to structural similarity", eq. 13: with local means mu, variances sigma^2 and covariance sigma_xy taken
under an 11x11 Gaussian window of standard deviation 1.5 (their Sec. III-C),
    SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)),
C1 = (0.01 L)^2, C2 = (0.03 L)^2 for a dynamic range L, averaged over the window positions that fit
inside the image ("valid") and over the channels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from unnoise.errors import UnnoiseError

WINDOW, WINDOW_SIGMA = 11, 1.5
K1, K2 = 0.01, 0.03
DATA_RANGE = 2.0  # images in [-1, 1]


def gaussian_window(size: int = WINDOW, sigma: float = WINDOW_SIGMA, dtype=torch.float32) -> torch.Tensor:
    """The normalised 1-D Gaussian (size,) whose outer product is SSIM's 2-D window."""
    taps = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    window = torch.exp(-taps**2 / (2 * sigma**2))
    return (window / window.sum()).to(dtype)


def _local_mean(images: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Gaussian-weighted mean over every valid window position: (B, C, H, W) -> (B, C, H-k+1, W-k+1)."""
    channels, size = images.shape[1], len(window)
    rows = F.conv2d(images, window.view(1, 1, 1, size).expand(channels, 1, 1, size), groups=channels)
    return F.conv2d(rows, window.view(1, 1, size, 1).expand(channels, 1, size, 1), groups=channels)


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = DATA_RANGE, window_size: int = WINDOW,
             sigma: float = WINDOW_SIGMA) -> torch.Tensor:
    """SSIM (Wang et al. 2004, eq. 13) at every valid window position: (B, C, H, W) pairs ->
    (B, C, H-k+1, W-k+1). The window shrinks to the image when the image is smaller than it."""
    if x.shape != y.shape or x.ndim != 4:
        raise UnnoiseError(f"ssim: expected two (B, C, H, W) tensors of one shape, got {tuple(x.shape)} and "
                           f"{tuple(y.shape)}")
    window_size = min(window_size, x.shape[-1], x.shape[-2])
    window = gaussian_window(window_size, sigma, x.dtype).to(x.device)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_x, mu_y = _local_mean(x, window), _local_mean(y, window)
    var_x = _local_mean(x * x, window) - mu_x**2
    var_y = _local_mean(y * y, window) - mu_y**2
    cov = _local_mean(x * y, window) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = DATA_RANGE, window_size: int = WINDOW,
         sigma: float = WINDOW_SIGMA) -> torch.Tensor:
    """Mean SSIM per image (B,), differentiable; 1 for identical images."""
    return ssim_map(x, y, data_range, window_size, sigma).flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = DATA_RANGE, ceiling: float = 120.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image (B,) in dB: 10 log10(L^2 / MSE), at most `ceiling`
    (identical images)."""
    mse = ((x.double() - y.double()) ** 2).flatten(1).mean(1)
    floor = data_range**2 * 10 ** (-ceiling / 10)
    return (10 * torch.log10(data_range**2 / mse.clamp(min=floor))).to(x.dtype)


def reconstruction_metrics(x: torch.Tensor, x_hat: torch.Tensor, data_range: float = DATA_RANGE) -> dict:
    """Mean PSNR (dB) and SSIM of reconstructions `x_hat` of images `x` in [-1, 1], with the standard
    errors of the means."""
    values = {"psnr": psnr(x, x_hat, data_range), "ssim": ssim(x, x_hat.clamp(-1, 1), data_range)}
    result = {}
    for name, per_image in values.items():
        per_image = per_image.double()
        result[name] = float(per_image.mean())
        spread = float(per_image.std()) if len(per_image) > 1 else 0.0
        result[f"{name}_se"] = spread / math.sqrt(len(per_image))
    return result

