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
from .cg import conjugate_gradients, tolerance

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B
MEAN = (1 / 3, 1 / 3, 1 / 3)  # the plain channel mean


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
        return x * self.on(x).to(x.dtype)

    adjoint = pinv = forward

    def on(self, x: Tensor) -> Tensor:
        """The boolean mask on x's device, checked to broadcast to x's shape."""
        try:
            fits = torch.broadcast_shapes(self.mask.shape, x.shape) == x.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise UnnoiseError(f"mask of shape {tuple(self.mask.shape)} does not fit images of shape {tuple(x.shape)}")
        return self.mask.to(x.device)

    def project(self, x: Tensor, y: Tensor) -> Tensor:
        """Known pixels set to y bit for bit, the others kept from x."""
        return torch.where(self.on(x), y, x)


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
    by default, MEAN for the plain average). A A^T = |w|^2, so A^T y = w y and A^+ y = w y / |w|^2."""

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
    """Circular convolution with a separable Gaussian kernel of width `sigma` pixels. `size` (odd) truncates
    the kernel to size x size taps, renormalised; None keeps the ideal Gaussian filter, whose frequency
    response is exp(-2 pi^2 sigma^2 |f|^2). Circular padding makes A a symmetric circulant,
    A = F^-1 diag(h) F with h = h_y h_x^T real, so A^T = A exactly (reflect padding would not be
    self-adjoint at the borders). The pseudo-inverse divides by h where |h| > cutoff and zeroes the rest:
    the exact Moore-Penrose pseudo-inverse of the blur with its responses under the cutoff set to zero
    (exact for the blur itself when none is under it, e.g. sigma <= 1 pixel on small images)."""

    def __init__(self, sigma: float, size: int | None = None, cutoff: float = 1e-3):
        if not sigma > 0:
            raise UnnoiseError(f"blur sigma must be > 0 pixels, got {sigma}")
        if size is not None and (size < 1 or size % 2 == 0):
            raise UnnoiseError(f"blur kernel size must be odd and >= 1, got {size}")
        self.sigma, self.size, self.cutoff = float(sigma), size, float(cutoff)

    def _response_1d(self, n: int, device) -> Tensor:
        f = torch.fft.fftfreq(n, dtype=torch.float64, device=device)
        if self.size is None:
            return torch.exp(-2 * math.pi**2 * self.sigma**2 * f**2)
        k = torch.arange(self.size, dtype=torch.float64, device=device) - self.size // 2
        w = torch.exp(-(k**2) / (2 * self.sigma**2))
        return (w / w.sum()) @ torch.cos(2 * math.pi * k[:, None] * f[None])  # DFT of the symmetric taps

    def response(self, height: int, width: int, like: Tensor) -> Tensor:
        """The frequency response h (H, W) on the DFT grid: the outer product of the 1-D responses."""
        return self._response_1d(height, like.device)[:, None] * self._response_1d(width, like.device)[None]

    def _filter(self, x: Tensor, gain: Tensor) -> Tensor:
        _check_image(x, "GaussianBlur")
        spectrum = torch.fft.fft2(x.to(torch.float64)) * gain
        return torch.fft.ifft2(spectrum).real.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self._filter(x, self.response(*x.shape[-2:], x))

    adjoint = forward

    def pinv(self, y: Tensor) -> Tensor:
        h = self.response(*y.shape[-2:], y)
        kept = h.abs() > self.cutoff
        return self._filter(y, torch.where(kept, 1 / torch.where(kept, h, 1.0), 0.0))


class Compose(LinearOperator):
    """A_n ... A_1: `Compose(a, b)` applies a first, then b; the adjoint is the reversed chain of adjoints.
    The pseudo-inverse: pinv='cgls' (default) solves the normal equations A^T A x = A^T y by conjugate
    gradients from x = 0, whose limit is the minimum-norm least-squares solution A^+ y for any chain
    (to the solver's tolerance, at most rank(A) iterations); pinv='factors' takes the reversed product
    of the factors' pseudo-inverses, cheaper but the Moore-Penrose pseudo-inverse only when the factors
    act on separate axes (a Kronecker product, e.g. Grayscale then Downsample, or a (1, 1, H, W) Mask
    then Grayscale) and wrong in general (e.g. Mask then Downsample, or GaussianBlur then Downsample)."""

    def __init__(self, *operators: LinearOperator, pinv: str = "cgls", iterations: int = 500):
        if not operators:
            raise UnnoiseError("Compose needs at least one operator")
        if pinv not in ("cgls", "factors"):
            raise UnnoiseError(f"Compose pinv must be 'cgls' or 'factors', got {pinv!r}")
        self.operators, self.pinv_method, self.iterations = operators, pinv, iterations
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
        if self.pinv_method == "cgls":
            rhs = self.adjoint(y)  # A^T y; CG on A^T A from 0 stays in the row space of A
            return conjugate_gradients(lambda v: self.adjoint(self.forward(v)), rhs, self.iterations,
                                       tolerance(rhs.dtype))
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


def measurement_like(y: Tensor, ax: Tensor, batch: int | None = None) -> Tensor:
    """y on ax's device and dtype, checked against the shape of A x (ax) for a batch of `batch` (default
    ax's own); a y of batch 1 broadcasts."""
    batch = ax.shape[0] if batch is None else batch
    if y.shape[1:] != ax.shape[1:] or y.shape[0] not in (1, batch):
        expected = (batch, *ax.shape[1:])
        raise UnnoiseError(f"measurement y has shape {tuple(y.shape)}, expected {expected} (the operator's output)")
    return y.to(ax.device, ax.dtype)
