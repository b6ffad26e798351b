"""Log-likelihood of molecules by the probability-flow ODE in the zero-centre-of-mass subspace.

The ODE of likelihood.py (dx/du = x - D(x, e^u), u = log sigma) restricted to each molecule's subspace
(Hoogeboom et al. 2022, Sec. 3.1; the positions lose the 3 degrees of freedom of the centre of mass):
    log p(x | N) = log p_prior(x(u_max)) + integral (d_N - div_S D(x, e^u)) du,
with d_N = (n - 1) * 3 + n * F the subspace dimension of a molecule of n real atoms, div_S the divergence
within the subspace, and the prior the subspace Gaussian N(0, prior_std^2 I_d) (zero_com.py). The divergence
is Hutchinson's estimate with probes projected onto the subspace, eps = P z: E[eps^T J eps] = tr(P J P).
A molecule's log-likelihood adds log p(N), the atom-count histogram: log p(x) = log p(x | N) + log p(N).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..likelihood import dopri5, draw_probes, hutchinson_divergence, prior_std
from .features import ATOM_MASK
from .zero_com import project, subspace_dimension, subspace_gaussian_log_density


def molecule_log_likelihood(D, x: Tensor, mask: Tensor, process, *, draws: int = 2, rtol: float = 1e-5,
                            atol: float = 1e-5, generator: torch.Generator | None = None, cond: dict | None = None
                            ) -> dict:
    """log p(x | N) in nats per molecule and draw (K, B) of molecules x (B, N, 3 + F) at zero centre of
    mass with atom mask (B, N), read as samples at process.sigma_min; with "dims" (B,), "nfe" and "steps".
    `cond`: other condition parts for D (e.g. a property run's null part); the atom mask is added."""
    x = project(x.double(), mask)
    dims = subspace_dimension(mask, x.shape[-1] - 3).to(torch.float64)  # (B,)
    probes = torch.stack([project(z, mask) for z in draw_probes("rademacher", draws, x.shape, generator, x.dtype)])
    cond = {**(cond or {}), ATOM_MASK: mask}
    calls = 0

    def f(u: float, state: Tensor) -> tuple[Tensor, Tensor]:
        nonlocal calls
        calls += 1
        sigma = torch.full((len(state),), math.exp(u), dtype=torch.float64, device=state.device)
        d_out, trace = hutchinson_divergence(D, state, sigma, probes, cond)
        return project(state - d_out.double(), mask), dims - trace  # dx/du in the subspace, d(log-det)/du

    delta = torch.zeros(draws, x.shape[0], dtype=torch.float64)
    x_end, delta, steps = dopri5(f, x, delta, math.log(process.sigma_min), math.log(process.sigma_max), rtol, atol)
    prior = subspace_gaussian_log_density(x_end, mask, torch.tensor(prior_std(process), dtype=torch.float64))
    return {"log_p": prior[None] + delta, "dims": dims, "nfe": calls, "steps": steps}
