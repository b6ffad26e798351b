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

from .conditions import concat_conditions  # noqa: F401 (nested dicts of named parts)
from .errors import UnnoiseError

Cond = Tensor | dict | None


class Guided:
    """The guided denoiser returned by `cfg`; calls `D` once per step on a doubled batch."""

    def __init__(self, D, scale: float, null, interval: tuple[float, float] | None = None, rescale: float = 0.0):
        self.D, self.scale, self.null, self.rescale = D, float(scale), null, float(rescale)
        self.interval = None if interval is None else (float(interval[0]), float(interval[1]))
        self.process = getattr(D, "process", None)  # samplers that need the process still find it

    def __call__(self, x: Tensor, sigma, cond: Cond = None) -> Tensor:
        sigma = torch.as_tensor(sigma, device=x.device)
        sigma = sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma
        active = self._active(sigma)
        if cond is None:  # unconditional: the null condition (what calibrating a sampler sees)
            return self.D(x, sigma, null_like(self.null, len(x), x.device))
        if self.scale == 1.0 or not bool(active.any()):
            return self.D(x, sigma, cond)
        null = null_like(self.null, len(x), x.device)
        both = self.D(torch.cat([x, x]), torch.cat([sigma, sigma]), concat_conditions(cond, null))
        d_cond, d_null = both.chunk(2)
        guided = d_null + self.scale * (d_cond - d_null)  # Eq. 6, Ho & Salimans 2022 (in x0 form)
        if self.rescale > 0:
            guided = rescaled(guided, d_cond, self.rescale)
        return torch.where(active.reshape(-1, *([1] * (x.ndim - 1))), guided, d_cond)

    def parameters(self):
        """The guided denoiser's parameters (its dtype decides the sampler's working dtype)."""
        return self.D.parameters() if hasattr(self.D, "parameters") else iter(())

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
        return null(batch)
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

