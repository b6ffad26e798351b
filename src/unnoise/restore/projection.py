"""Zero-shot restoration of noiseless linear measurements by range/null-space projection (DDNM).

Wang et al. 2022 (Eq. 13): given y = A x0, every denoised estimate x0_hat = D(x, sigma) is replaced by
x0_hat + A^+ (y - A x0_hat), which keeps the model's null-space content and takes the range-space
content from the measurement. Any sampler run with the transformed denoiser ends on D's output at
sigma = 0, so its samples satisfy A x = y up to rounding; `consistent` then enforces it exactly (for a
mask: the known pixels equal the input bit for bit).
"""
from __future__ import annotations

from torch import Tensor

from .operators import LinearOperator


class RangeNullDenoiser:
    """D'(x, sigma, cond) = P(D(x, sigma, cond)) with P(z) = z + A^+ (y - A z) (Eq. 13, Wang et al. 2022)."""

    def __init__(self, denoiser, operator: LinearOperator, y: Tensor):
        self.D, self.operator, self.y = denoiser, operator, y
        self.process = getattr(denoiser, "process", None)  # as in guide.Guided: samplers may need it

    def __call__(self, x: Tensor, sigma: Tensor, cond=None) -> Tensor:
        return self.operator.project(self.D(x, sigma, cond), self.y.to(x.device, x.dtype))



def ddnm(denoiser, operator: LinearOperator, y: Tensor) -> RangeNullDenoiser:
    """The denoiser transform of range/null-space projection onto {x : A x = y}."""
    return RangeNullDenoiser(denoiser, operator, y)


def consistent(x: Tensor, operator: LinearOperator, y: Tensor) -> Tensor:
    """Final samples made exactly consistent with the measurement: x + A^+ (y - A x)."""
    return operator.project(x, y.to(x.device, x.dtype))
