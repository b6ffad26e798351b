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
    does not depend on the rest of the batch. A sample whose M shows non-positive curvature (a learned
    denoiser's Jacobian need not be PSD) keeps its last iterate instead of diverging."""
    u, res = torch.zeros_like(r), r.clone()
    p, rr = res.clone(), dot(res, res)
    threshold = tol**2 * rr
    done = rr <= threshold
    for _ in range(iterations):
        if bool(done.all()):
            break
        mp = apply(p)
        curvature = dot(p, mp)
        done = done | ~(curvature > 0)  # p^T M p <= 0 or NaN: M is not PSD here (a learned Jacobian); stop
        alpha = rr / torch.where(done, 1.0, curvature)
        u = torch.where(done, u, u + alpha * p)
        res = torch.where(done, res, res - alpha * mp)
        rr_next = dot(res, res)
        p = torch.where(done, p, res + (rr_next / torch.where(done, 1.0, rr)) * p)
        rr = rr_next
        done = done | (rr <= threshold)
    return u


def tolerance(dtype: torch.dtype) -> float:
    """A relative residual that `dtype` can reach: 1e-13 in float64, about 1e-5 in float32."""
    return max(100 * torch.finfo(dtype).eps, 1e-13)
