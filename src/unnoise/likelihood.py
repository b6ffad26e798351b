"""Log-likelihood through the probability-flow ODE (Song et al. 2021, Sec. 4.3 and App. D.2).

In VE coordinates and log-sigma time u = log sigma the ODE is dx/du = x - D(x, e^u). Along a solution the
instantaneous change of variables (Chen et al. 2018, Thm. 1) gives
    log p_start(x(u_start)) = log p_prior(x(u_max)) + integral_{u_start}^{u_max} (d - div_x D(x, e^u)) du,
integrated jointly with x by an adaptive Dormand-Prince 5(4) solver. The divergence is exact (d
backward passes, for small d) or Hutchinson's estimate eps^T (dD/dx) eps (Hutchinson 1989) with a probe
eps per draw held fixed along the trajectory (Rademacher or Gaussian); each draw is an unbiased estimate,
and the draws share the trajectory. The prior is N(0, prior_std^2 I): the VP chain's N(0, I) seen in VE
coordinates (std sqrt(1 + sigma_max^2)), or N(0, sigma_max^2 I) for VE processes.

Discrete data (`levels` values on [-1, 1], bin width w = 2 / (levels - 1)) is dequantized uniformly,
y = x + w (u - 1/2): then -log P(x) <= E_u[-log p(y)] - d log w, so bits/dim = (-log p(y) / d - log w) / ln 2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .errors import UnnoiseError, unknown_name
from .param import model_dtype

PROBES = ("rademacher", "gaussian")
DIVERGENCES = ("exact", "hutchinson")


@dataclass
class LikelihoodResult:
    log_p: Tensor  # (K, B) log-density at the start level in nats, one row per divergence draw (K = 1: exact)
    dims: int
    nfe: int  # denoiser evaluations (forward passes) of the solve
    steps: int  # accepted solver steps
    settings: dict

    def nll(self) -> Tensor:
        """(B,) negative log-likelihood in nats, averaged over the draws."""
        return -self.log_p.mean(0)

    def bits_per_dim(self, levels: int = 0) -> Tensor:
        """(B,) bits/dim; with `levels`, of the discrete data the dequantized y came from."""
        nats = self.nll() / self.dims
        if levels:
            nats = nats - math.log(2.0 / (levels - 1))
        return nats / math.log(2)


def prior_std(process) -> float:
    """Std of the prior at process.sigma_max in VE coordinates."""
    sigma_max = process.sigma_max
    return math.sqrt(1.0 + sigma_max**2) if process.kind == "vp" else sigma_max


def _sigma_batch(u: float, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), math.exp(u), dtype=torch.float64, device=x.device)


def exact_divergence(D, x: Tensor, sigma: Tensor, cond=None) -> tuple[Tensor, Tensor]:
    """(D(x), trace of dD/dx) per sample, with one backward pass per dimension."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = D(x.to(model_dtype(D, x.dtype)), sigma, cond)
        flat = out.reshape(x.shape[0], -1)
        trace = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        for j in range(flat.shape[1]):
            (grad,) = torch.autograd.grad(flat[:, j].sum(), x, retain_graph=True)
            trace += grad.reshape(x.shape[0], -1)[:, j].double()
    return out.detach(), trace[None]


def hutchinson_divergence(D, x: Tensor, sigma: Tensor, probes: Tensor, cond=None) -> tuple[Tensor, Tensor]:
    """(D(x), eps_k^T (dD/dx) eps_k per probe k and sample): probes has shape (K, *x.shape)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = D(x.to(model_dtype(D, x.dtype)), sigma, cond)
        estimates = []
        for k, eps in enumerate(probes):
            (grad,) = torch.autograd.grad((out * eps).sum(), x, retain_graph=k < len(probes) - 1)
            estimates.append((grad * eps).reshape(x.shape[0], -1).sum(1).double())
    return out.detach(), torch.stack(estimates)


def draw_probes(kind: str, draws: int, shape, generator: torch.Generator | None, dtype) -> Tensor:
    if kind not in PROBES:
        raise unknown_name("probe", kind, PROBES)
    z = torch.randn((draws, *shape), generator=generator, dtype=dtype)
    return z.sign() if kind == "rademacher" else z


# Dormand-Prince 5(4) tableau (Dormand & Prince 1980): nodes, stage weights, 5th-order weights, error weights
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = ((), (1 / 5,), (3 / 40, 9 / 40), (44 / 45, -56 / 15, 32 / 9),
      (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
      (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
      (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)


def dopri5(f: Callable, x: Tensor, delta: Tensor, u0: float, u1: float, rtol: float, atol: float,
           max_steps: int = 10_000) -> tuple[Tensor, Tensor, int]:
    """Integrate (dx/du, d delta/du) = f(u, x) from u0 to u1 > u0, keeping the mixed relative/absolute
    RMS error estimate of both parts <= 1. FSAL: the last stage is the next step's first. Returns
    (x, delta, accepted steps)."""
    h = (u1 - u0) / 32
    u, k1, accepted = u0, f(u0, x), 0
    while u < u1 - 1e-12:
        h = min(h, u1 - u)
        stages = [k1]
        for i in range(1, 7):
            xi = x + h * _combine(_A[i], [k[0] for k in stages])
            stages.append(f(u + _C[i] * h, xi))
        x_new = xi  # the 7th node is the 5th-order solution (A[6] = b)
        delta_new = delta + h * _combine(_A[6], [k[1] for k in stages])
        norm = max(_error_norm(h * _combine(_E, [k[j] for k in stages]), old, new, rtol, atol)
                   for j, old, new in ((0, x, x_new), (1, delta, delta_new)))
        if norm <= 1.0:
            x, delta, u, k1, accepted = x_new, delta_new, u + h, stages[6], accepted + 1
            if accepted >= max_steps and u < u1 - 1e-12:
                raise UnnoiseError(f"likelihood ODE: {max_steps} steps reached at u = {u:.4g}; loosen rtol/atol")
        h *= min(10.0, max(0.2, 0.9 * max(norm, 1e-10) ** -0.2))
    return x, delta, accepted


def _combine(weights, values):
    return sum(w * v for w, v in zip(weights, values) if w != 0.0)


def _error_norm(error: Tensor, old: Tensor, new: Tensor, rtol: float, atol: float) -> float:
    scale = atol + rtol * torch.maximum(old.abs(), new.abs())
    return float((error / scale).double().pow(2).mean().sqrt())


def ode_log_likelihood(D, x: Tensor, process, *, divergence: str = "exact", draws: int = 1,
                       probe: str = "rademacher", rtol: float = 1e-5, atol: float = 1e-5,
                       sigma_start: float | None = None, cond=None, generator: torch.Generator | None = None,
                       log_prior: Callable[[Tensor], Tensor] | None = None) -> LikelihoodResult:
    """log p_{sigma_start}(x) for a batch x (VE coordinates, read as a sample at level sigma_start,
    default process.sigma_min) by the probability-flow ODE up to process.sigma_max (module docstring).
    `log_prior` replaces the Gaussian prior's log-density at sigma_max (e.g. by an exact one)."""
    if divergence not in DIVERGENCES:
        raise unknown_name("divergence", divergence, DIVERGENCES)
    sigma_start = process.sigma_min if sigma_start is None else sigma_start
    x = x.double()
    dims = x[0].numel()
    probes = draw_probes(probe, draws, x.shape, generator, x.dtype) if divergence == "hutchinson" else None
    calls = 0

    def f(u: float, state: Tensor) -> tuple[Tensor, Tensor]:
        nonlocal calls
        calls += 1
        sigma = _sigma_batch(u, state)
        if probes is None:
            d_out, trace = exact_divergence(D, state, sigma, cond)
        else:
            d_out, trace = hutchinson_divergence(D, state, sigma, probes.to(state.dtype), cond)
        return state - d_out.double(), dims - trace  # dx/du, d(log-det)/du

    rows = 1 if probes is None else draws
    delta = torch.zeros(rows, x.shape[0], dtype=torch.float64)
    x_end, delta, steps = dopri5(f, x, delta, math.log(sigma_start), math.log(process.sigma_max), rtol, atol)
    std = prior_std(process)
    flat = x_end.reshape(x.shape[0], -1)
    if log_prior is None:
        prior = -0.5 * (flat.pow(2).sum(1) / std**2 + dims * math.log(2 * math.pi * std**2))
    else:
        prior = log_prior(x_end).double()
    settings = {"method": "probability_flow_ode", "solver": "dopri5", "rtol": rtol, "atol": atol,
                "divergence": divergence, "sigma_start": sigma_start, "sigma_max": process.sigma_max,
                "prior_std": std}
    if probes is not None:
        settings.update(probe=probe, draws=draws)
    return LikelihoodResult(prior[None] + delta, dims, calls, steps, settings)


def dequantize(x: Tensor, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantization of data on the grid of `levels` values in [-1, 1]."""
    width = 2.0 / (levels - 1)
    return x.double() + width * (torch.rand(x.shape, generator=generator, dtype=torch.float64) - 0.5)
