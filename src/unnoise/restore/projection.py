"""Zero-shot restoration of noiseless linear measurements by range/null-space projection (DDNM).

Wang et al. 2022 (Eq. 13): given y = A x0, every denoised estimate x0_hat = D(x, sigma) is replaced by
x0_hat + A^+ (y - A x0_hat), which keeps the model's null-space content and takes the range-space
content from the measurement. Any sampler run with the transformed denoiser ends on D's output at
sigma = 0, so its samples satisfy A x = y up to rounding; `consistent` then enforces it exactly (for a
mask: the known pixels equal the input bit for bit).

When is it exact? The posterior's denoiser is E[x0 | x, y]; DDNM uses the range-replaced E[x0 | x],
whose null-space part still reads the noisy range-space coordinates of x instead of y. For a Gaussian
prior N(mu, S) the two agree, and DDNM samples p(x0 | y) exactly (as exactly as the sampler samples its
data), if and only if S commutes with the projection P = A^+ A (no prior correlation between the range
and null spaces: then p(x0 | y) is y's range part times the prior's null-space marginal). Otherwise its
null-space mean and covariance are biased; `tweedie_conditioned` (posterior.py) is the exact transform.
"""
from __future__ import annotations

from torch import Tensor

from ..errors import UnnoiseError, unknown_name
from ..guide import DenoiserTransform
from .operators import LinearOperator, measurement_like
from .posterior import tweedie_conditioned


class RangeNullDenoiser(DenoiserTransform):
    """D'(x, sigma, cond) = P(D(x, sigma, cond)) with P(z) = z + A^+ (y - A z) (Eq. 13, Wang et al. 2022)."""

    def __init__(self, denoiser, operator: LinearOperator, y: Tensor):
        super().__init__(denoiser)
        self.operator, self.y = operator, y

    def denoised(self, x: Tensor, sigma: Tensor, cond, inner) -> Tensor:
        x0 = inner(x, sigma, cond)
        return consistent(x0, self.operator, self.y)


def ddnm(denoiser, operator: LinearOperator, y: Tensor) -> RangeNullDenoiser:
    """The denoiser transform of range/null-space projection onto {x : A x = y}; noiseless operators only."""
    if operator.noise_std > 0:
        raise UnnoiseError(f"ddnm needs a noiseless operator (noise std {operator.noise_std}); "
                           "use tweedie_conditioned or dps_sample")
    return RangeNullDenoiser(denoiser, operator, y)


def consistent(x: Tensor, operator: LinearOperator, y: Tensor) -> Tensor:
    """Final samples made exactly consistent with the measurement: x + A^+ (y - A x) (for a mask:
    torch.where on the mask, so the known pixels are y bit for bit)."""
    y = measurement_like(y, operator(x))  # the whole batch: an operator may act per row (one mask per image)
    return operator.project(x, y.expand(x.shape[0], *y.shape[1:]))


METHODS = {"ddnm": ddnm, "tweedie": tweedie_conditioned}


def restore(D, operator: LinearOperator, y: Tensor, x: Tensor, sigmas: Tensor, *, method="tweedie",
            sampler=None, cond=None, noise=None, callback=None) -> Tensor:
    """Posterior samples given y = A x0: `sampler` (default DDPM ancestral) run from x (at sigmas[0]) with
    the `method` transform of D (a name in METHODS, or a callable (D, A, y) -> denoiser), then, for a
    noiseless operator, made exactly consistent with y."""
    if not callable(method) and method not in METHODS:
        raise unknown_name("restoration method", method, METHODS)
    transform = method if callable(method) else METHODS[method]
    if sampler is None:
        from ..sample.sde import ddpm_ancestral as sampler
    out = sampler(transform(D, operator, y), x, sigmas, cond=cond, noise=noise, callback=callback)
    return out if operator.noise_std > 0 else consistent(out, operator, y)
