"""Linear degradation operators y = A x on image batches (B, C, H, W), with adjoint and pseudo-inverse.

Each operator acts per image and exposes `forward` (also `__call__`), `adjoint` (A^T, so that
<A x, y> = <x, A^T y>) and `pinv` (the Moore-Penrose pseudo-inverse A^+, satisfying A A^+ A = A and
A^+ A A^+ = A^+). `project(x, y)` returns the point of {x' : A x' = y} that differs from x only in the
row space of A: x + A^+ (y - A x) (the range/null-space split of Wang et al. 2022, Eq. 9).
`Compose` chains operators; `AddNoise` marks a measurement as noisy (y = A x + std n).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UnnoiseError

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B


class LinearOperator:
    """A linear map on (B, ...) tensors with its adjoint and pseudo-inverse."""

    noise_std = 0.0

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def adjoint(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def pinv(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def project(self, x: Tensor, y: Tensor) -> Tensor:
        """x with its row-space part replaced so that A x = y: x + A^+ (y - A x)."""
        return x + self.pinv(y - self.forward(x))


def _check_image(x: Tensor, name: str) -> None:
    if x.ndim != 4:
        raise UnnoiseError(f"{name} expects (B, C, H, W) images, got shape {tuple(x.shape)}")


class Mask(LinearOperator):
    """Keep the pixels where `mask` is 1, zero the rest: A = diag(m), an orthogonal projection,
    so A^T = A^+ = A. `mask` broadcasts against the images, e.g. (1, 1, H, W) or (B, C, H, W)."""

    def __init__(self, mask: Tensor):
        mask = torch.as_tensor(mask)
        values = torch.unique(mask)
        if not all(v in (0, 1) for v in values.tolist()):
            raise UnnoiseError(f"mask must be binary (0 or 1), got values {values[:5].tolist()}")
        self.mask = mask.bool()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask.to(x.device, x.dtype)

    adjoint = pinv = forward

    def project(self, x: Tensor, y: Tensor) -> Tensor:
        """Known pixels set to y bit for bit, the others kept from x."""
        return torch.where(self.mask.to(x.device), y, x)


class Downsample(LinearOperator):
    """Average over factor x factor blocks: (B, C, H, W) -> (B, C, H/f, W/f). Its rows are orthogonal
    with norm 1/f, so A A^T = I / f^2, A^T y = nearest-upsample(y) / f^2 and A^+ = nearest-upsample."""

    def __init__(self, factor: int):
        if factor not in (2, 4):
            raise UnnoiseError(f"downsampling factor must be 2 or 4, got {factor}")
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        _check_image(x, "Downsample")
        if x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise UnnoiseError(f"image size {tuple(x.shape[-2:])} is not divisible by the factor {self.factor}")
        return F.avg_pool2d(x, self.factor)

    def adjoint(self, y: Tensor) -> Tensor:
        return self.pinv(y) / self.factor**2

    def pinv(self, y: Tensor) -> Tensor:
        _check_image(y, "Downsample")
        return y.repeat_interleave(self.factor, dim=-2).repeat_interleave(self.factor, dim=-1)


class Grayscale(LinearOperator):
    """Weighted sum of the channels, (B, C, H, W) -> (B, 1, H, W), y = w^T x per pixel (luma weights
    by default). A A^T = |w|^2, so A^T y = w y and A^+ y = w y / |w|^2."""

    def __init__(self, weights=LUMA):
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        if self.weights.ndim != 1 or not bool((self.weights.abs().sum() > 0)):
            raise UnnoiseError(f"grayscale weights must be a non-zero vector, got {weights}")

    def _w(self, like: Tensor) -> Tensor:
        return self.weights.to(like.device, like.dtype).view(1, -1, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        _check_image(x, "Grayscale")
        if x.shape[1] != len(self.weights):
            raise UnnoiseError(f"Grayscale expects {len(self.weights)} channels, got {x.shape[1]}")
        return (x * self._w(x)).sum(1, keepdim=True)

    def adjoint(self, y: Tensor) -> Tensor:
        return y * self._w(y)

    def pinv(self, y: Tensor) -> Tensor:
        return y * self._w(y) / float((self.weights**2).sum())


class GaussianBlur(LinearOperator):
    """Circular convolution with a normalised Gaussian kernel of width `sigma` pixels, applied in the
    Fourier domain: A = F^-1 diag(h) F with h real and symmetric, so A^T = A. The pseudo-inverse
    divides by h where |h| > cutoff and zeroes the rest; it is the exact Moore-Penrose pseudo-inverse
    of the blur whose response below the cutoff is taken as zero (exact for the blur itself when no
    frequency falls under the cutoff, e.g. sigma <= 1 pixel)."""

    def __init__(self, sigma: float, cutoff: float = 1e-3):
        if not sigma > 0:
            raise UnnoiseError(f"blur sigma must be > 0 pixels, got {sigma}")
        self.sigma, self.cutoff = float(sigma), float(cutoff)

    def response(self, height: int, width: int, like: Tensor) -> Tensor:
        """The kernel's frequency response (H, W): the DFT of the periodised Gaussian, exp(-2 pi^2 s^2 f^2)."""
        fy = torch.fft.fftfreq(height, dtype=torch.float64, device=like.device).view(-1, 1)
        fx = torch.fft.fftfreq(width, dtype=torch.float64, device=like.device).view(1, -1)
        return torch.exp(-2 * math.pi**2 * self.sigma**2 * (fx**2 + fy**2))

    def _filter(self, x: Tensor, gain: Tensor) -> Tensor:
        _check_image(x, "GaussianBlur")
        spectrum = torch.fft.fft2(x.to(torch.float64)) * gain
        return torch.fft.ifft2(spectrum).real.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self._filter(x, self.response(*x.shape[-2:], x))

    adjoint = forward

    def pinv(self, y: Tensor) -> Tensor:
        h = self.response(*y.shape[-2:], y)
        kept = h > self.cutoff
        return self._filter(y, torch.where(kept, 1 / torch.where(kept, h, 1.0), 0.0))


class Compose(LinearOperator):
    """A_n ... A_1: `Compose(a, b)` applies a first, then b. The adjoint reverses the order. The
    pseudo-inverse is the reversed product of the factors' pseudo-inverses: the Moore-Penrose
    pseudo-inverse when the factors act on separate axes (a Kronecker product, e.g. Grayscale then
    Downsample), not guaranteed for other chains."""

    def __init__(self, *operators: LinearOperator):
        if not operators:
            raise UnnoiseError("Compose needs at least one operator")
        self.operators = operators
        self.noise_std = max(op.noise_std for op in operators)

    def forward(self, x: Tensor) -> Tensor:
        for op in self.operators:
            x = op.forward(x)
        return x

    def adjoint(self, y: Tensor) -> Tensor:
        for op in reversed(self.operators):
            y = op.adjoint(y)
        return y

    def pinv(self, y: Tensor) -> Tensor:
        for op in reversed(self.operators):
            y = op.pinv(y)
        return y


class AddNoise(LinearOperator):
    """A noisy measurement y = A x + std n, n ~ N(0, I): the linear part is `operator`'s;
    `measure(x, generator)` draws y."""

    def __init__(self, operator: LinearOperator, std: float):
        if not std >= 0:
            raise UnnoiseError(f"noise std must be >= 0, got {std}")
        self.operator, self.noise_std = operator, float(std)

    def forward(self, x: Tensor) -> Tensor:
        return self.operator.forward(x)

    def adjoint(self, y: Tensor) -> Tensor:
        return self.operator.adjoint(y)

    def pinv(self, y: Tensor) -> Tensor:
        return self.operator.pinv(y)

    def measure(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        clean = self.forward(x)
        noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype).to(clean.device)
        return clean + self.noise_std * noise
