"""SSIM (Wang et al. 2004) and PSNR against brute-force loops and known values."""
from __future__ import annotations

import math

import torch

from unnoise.eval.reconstruction import K1, K2, gaussian_window, psnr, reconstruction_metrics, ssim, ssim_map

EPS64 = torch.finfo(torch.float64).eps


def _brute_force_ssim(x: torch.Tensor, y: torch.Tensor, size: int = 11, sigma: float = 1.5, L: float = 2.0):
    """Mean over channels and valid positions of eq. 13, every window summed by explicit loops."""
    taps = [math.exp(-((i - (size - 1) / 2) ** 2) / (2 * sigma**2)) for i in range(size)]
    total = sum(taps)
    w = [[a * b / total**2 for b in taps] for a in taps]
    c1, c2 = (K1 * L) ** 2, (K2 * L) ** 2
    values = []
    for c in range(x.shape[0]):
        for top in range(x.shape[1] - size + 1):
            for left in range(x.shape[2] - size + 1):
                mx = my = sxx = syy = sxy = 0.0
                for i in range(size):
                    for j in range(size):
                        a, b = float(x[c, top + i, left + j]), float(y[c, top + i, left + j])
                        mx += w[i][j] * a
                        my += w[i][j] * b
                        sxx += w[i][j] * a * a
                        syy += w[i][j] * b * b
                        sxy += w[i][j] * a * b
                vx, vy, cxy = sxx - mx * mx, syy - my * my, sxy - mx * my
                values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    return sum(values) / len(values)


def test_identical_images_have_ssim_one():
    x = torch.rand(3, 3, 24, 24, dtype=torch.float64) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64), atol=100 * EPS64, rtol=0)


def test_ssim_matches_a_brute_force_window_computation():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 13, 14, generator=generator, dtype=torch.float64) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=generator, dtype=torch.float64)).clamp(-1, 1)
    expected = _brute_force_ssim(x, y)
    found = float(ssim(x.unsqueeze(0), y.unsqueeze(0))[0])
    assert abs(found - expected) <= 1000 * EPS64, (found, expected)


def test_known_values_for_constant_images():
    # Constant images: sigma terms vanish, SSIM = (2 a b + C1) / (a^2 + b^2 + C1) at every position.
    a, b = 0.5, -0.25
    x, y = torch.full((1, 1, 16, 16), a, dtype=torch.float64), torch.full((1, 1, 16, 16), b, dtype=torch.float64)
    c1 = (K1 * 2.0) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert abs(float(ssim(x, y)[0]) - expected) <= 100 * EPS64
    assert ssim_map(x, y).shape == (1, 1, 6, 6)


def test_window_is_normalised_and_symmetric():
    window = gaussian_window(11, 1.5, torch.float64)
    assert abs(float(window.sum()) - 1) <= 10 * EPS64 and torch.equal(window, window.flip(0))


def test_psnr_known_value_and_ceiling():
    x = torch.zeros(1, 3, 8, 8)
    y = x + 0.02  # MSE 4e-4 on a range of 2: 10 log10(4 / 4e-4) = 40 dB
    assert abs(float(psnr(x, y)[0]) - 40.0) < 1e-4
    assert float(psnr(x, x)[0]) == 120.0
    metrics = reconstruction_metrics(x.expand(4, -1, -1, -1), y.expand(4, -1, -1, -1))
    # constant images 0 and 0.02: SSIM = C1 / (0.02^2 + C1) = 0.5 with C1 = (0.01 * 2)^2
    assert abs(metrics["psnr"] - 40.0) < 1e-4 and metrics["psnr_se"] < 1e-6 and abs(metrics["ssim"] - 0.5) < 1e-5
