"""Classifier-free guidance (Ho & Salimans 2022) as a denoiser transform.

`cfg(D, scale, null)` returns a denoiser that extrapolates from the unconditional estimate (the network's
learned null condition) towards the conditional one:

    D_w(x, sigma, c) = D(x, sigma, null) + w (D(x, sigma, c) - D(x, sigma, null))     # Eq. 6, Ho & Salimans

Written on x0 estimates this is the same as the paper's form on epsilon (eps = (x - D) / sigma is affine in
D at fixed x and sigma), and the guided score is (1 - w) grad log p(x) + w grad log p(x | c). Both branches
run as one batched network call. Options:
  interval  (sigma_lo, sigma_hi): guide only where sigma_lo < sigma <= sigma_hi, plain conditional elsewhere
            (Kynkaenniemi et al. 2024, "Applying guidance in a limited interval").
  rescale   phi in [0, 1]: scale the guided estimate's per-sample std back towards the conditional one's and
            blend by phi (Lin et al. 2024, Sec. 3.4, Alg. 2), applied to x0 estimates.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .conditions import concat_conditions, map_part
from .errors import UnnoiseError

Cond = Tensor | dict | None


class DenoiserTransform:
    """Base of denoisers built from another denoiser `D` (guidance, restoration, gradient guidance).

    A subclass implements `denoised(x, sigma, cond, inner)`, the transformed x0 estimate, calling the
    wrapped denoiser only through `inner(x, sigma, cond)`. The base forwards what samplers read from a
    denoiser: `process`, `parameters()` (its dtype), `learned_variance`, and `denoise_with_variance`,
    whose variance is that of the first `inner` call's first len(x) rows (a guided call puts its
    conditional rows first). An attribute the wrapped denoiser lacks raises AttributeError naming both,
    so `getattr(D, name, default)` still works and nothing is silently dropped."""

    def __init__(self, D):
        self.D = D

    def denoised(self, x: Tensor, sigma: Tensor, cond, inner) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Tensor, sigma, cond: Cond = None) -> Tensor:
        return self.denoised(x, sigma, cond, self.D)

    def _inner(self, name: str):
        try:
            return getattr(self.D, name)
        except AttributeError:
            raise AttributeError(f"{type(self).__name__} wraps {type(self.D).__name__}, which has no {name!r}") from None

    @property
    def process(self):
        return self._inner("process")

    @property
    def learned_variance(self) -> bool:
        return bool(self._inner("learned_variance"))

    @property
    def parameters(self):
        """The wrapped denoiser's `parameters` method (their dtype decides the sampler's working dtype)."""
        return self._inner("parameters")

    def denoise_with_variance(self, x: Tensor, sigma, cond: Cond = None) -> tuple[Tensor, Tensor | None]:
        """The transformed x0 estimate and the wrapped denoiser's learned variance output v for x."""
        with_variance, variances = self._inner("denoise_with_variance"), []

        def inner(x_, sigma_, cond_=None):
            x0, v = with_variance(x_, sigma_, cond_)
            variances.append(v)
            return x0

        x0 = self.denoised(x, sigma, cond, inner)
        v = variances[0] if variances else None
        return x0, None if v is None else v[: len(x)].detach()


class Guided(DenoiserTransform):
    """The guided denoiser returned by `cfg`; calls `D` once per step on a doubled batch (conditional rows
    first, so a learned variance comes from the conditional branch)."""

    def __init__(self, D, scale: float, null, interval: tuple[float, float] | None = None, rescale: float = 0.0):
        super().__init__(D)
        self.scale, self.null, self.rescale = float(scale), null, float(rescale)
        self.interval = None if interval is None else (float(interval[0]), float(interval[1]))

    def denoised(self, x: Tensor, sigma, cond: Cond, inner) -> Tensor:
        sigma = torch.as_tensor(sigma, device=x.device)
        sigma = sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma
        active = self._active(sigma)
        if cond is None:  # unconditional: the null condition (what calibrating a sampler sees)
            return inner(x, sigma, null_like(self.null, len(x), x.device))
        if self.scale == 1.0 or not bool(active.any()):
            return inner(x, sigma, cond)
        null = null_like(self.null, len(x), x.device)
        both = inner(torch.cat([x, x]), torch.cat([sigma, sigma]), concat_conditions(cond, null))
        d_cond, d_null = both.chunk(2)
        guided = d_null + self.scale * (d_cond - d_null)  # Eq. 6, Ho & Salimans 2022 (in x0 form)
        if self.rescale > 0:
            guided = rescaled(guided, d_cond, self.rescale)
        return torch.where(active.reshape(-1, *([1] * (x.ndim - 1))), guided, d_cond)

    def _active(self, sigma: Tensor) -> Tensor:
        if self.interval is None:
            return torch.ones_like(sigma, dtype=torch.bool)
        lo, hi = self.interval
        return (sigma > lo) & (sigma <= hi)


def cfg(D, scale: float, null, *, interval: tuple[float, float] | None = None, rescale: float = 0.0) -> Guided:
    """Classifier-free guided version of denoiser `D` at guidance scale `scale` (1 = conditional, 0 =
    unconditional). `null` is the null condition: an int (the null class label), a condition of batch 1
    (expanded), or a callable batch_size -> condition."""
    if not scale >= 0 or scale != scale or scale == float("inf"):
        raise UnnoiseError(f"guidance scale must be a finite number >= 0, got {scale}")
    if not 0.0 <= rescale <= 1.0:
        raise UnnoiseError(f"guidance rescale must be in [0, 1], got {rescale}")
    if interval is not None and not (0 <= interval[0] < interval[1]):
        raise UnnoiseError(f"guidance interval must be (sigma_lo, sigma_hi) with 0 <= lo < hi, got {interval}")
    return Guided(D, scale, null, interval, rescale)


def rescaled(guided: Tensor, conditional: Tensor, phi: float) -> Tensor:
    """Alg. 2, Lin et al. 2024: match the guided estimate's per-sample std to the conditional one's, blend."""
    dims = tuple(range(1, guided.ndim))
    factor = conditional.std(dims, keepdim=True) / guided.std(dims, keepdim=True).clamp_min(1e-12)
    return guided * (phi * factor + (1 - phi))


def null_like(null, batch: int, device) -> Cond:
    """The null condition for a batch of `batch`."""
    if callable(null):
        return map_part(null(batch), lambda part: part.to(device))
    if isinstance(null, int):
        return torch.full((batch,), null, dtype=torch.long, device=device)
    if isinstance(null, dict):
        return {k: v.expand(batch, *v.shape[1:]) for k, v in null.items()}
    return null.expand(batch, *null.shape[1:])


def drop_conditions(labels: Tensor, p: float, null: int, generator: torch.Generator) -> Tensor:
    """Replace each label by the null label with probability p (condition dropout for guidance training)."""
    if p <= 0:
        return labels
    drop = torch.rand(labels.shape, generator=generator) < p
    return torch.where(drop, torch.full_like(labels, null), labels)

