"""Conjugate gradients, batched: one independent solve per sample of a (B, ...) batch."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample inner products, (B, ...) x (B, ...) -> (B, 1, ..., 1)."""
    return (a * b).flatten(1).sum(1).view(-1, *[1] * (a.ndim - 1))


def conjugate_gradients(apply: Callable[[Tensor], Tensor], r: Tensor, iterations: int,
                        tol: float = 1e-10) -> Tensor:
    """Solve M u = r per sample for a symmetric positive semi-definite M given as `apply`, from u = 0
    (so for a consistent singular system u is the minimum-norm solution; Alg. 6.18, Saad 2003). Each
    sample stops on its own once its residual is under tol times its initial one, so a sample's result
    does not depend on the rest of the batch."""
    u, res = torch.zeros_like(r), r.clone()
    p, rr = res.clone(), dot(res, res)
    threshold = tol**2 * rr
    for _ in range(iterations):
        active = rr > threshold
        if not bool(active.any()):
            break
        mp = apply(p)
        alpha = torch.where(active, rr / dot(p, mp).clamp(min=1e-300), 0.0)
        u, res = u + alpha * p, res - alpha * mp
        rr_next = dot(res, res)
        p, rr = res + (rr_next / rr.clamp(min=1e-300)) * p, rr_next
    return u


def tolerance(dtype: torch.dtype) -> float:
    """A relative residual that `dtype` can reach: 1e-13 in float64, about 1e-5 in float32."""
    return max(100 * torch.finfo(dtype).eps, 1e-13)
