"""A multistep solver whose weights are fitted on the model itself.

Every explicit multistep solver of the probability-flow ODE (Euler/DDIM, DPM-Solver++(2M/3M), UniPC's
predictor-corrector) writes each new state as a fixed linear combination of the starting noise and the
denoiser outputs so far,
    x_{k+1} = a_k x_0 + sum_{j <= k} b_{kj} D(x_j, sigma_j),
with weights from a Taylor expansion that assumes D is smooth in log-SNR. With a handful of steps it is
not, and the best weights for the model at hand can be measured instead (the non-stationary solvers of
Shaul et al. 2024): on calibration trajectories whose accurate solution x*(sigma) is known, the weights of
step k are the weighted least-squares fit of x*(sigma_{k+1}) from that basis, in closed form. The steps
are fitted one after another, each on the states the fitted earlier steps produce, so errors do not
compound unseen. A small ridge toward the first-order exponential integrator,
    x_{k+1} = e^{-h} x_k + (1 - e^{-h}) D_k,   h = log(sigma_k / sigma_{k+1})   (Lu et al. 2022b, Eq. 9),
keeps the normal equations well posed when outputs at nearby small sigmas are almost collinear.

With a `start`, the first model call is replaced by a constant. At sigma_max the denoiser hardly looks at
its input (its output is the data mean plus terms of order Cov / sigma_max^2), so its average over the
calibration noise stands in for it and the call is spent lower, where trajectories choose their mode (the
analytical first step of Zhou et al. 2024, here measured on the model instead of assumed to be zero). A
conditional model's mean depends on its condition, so `start` is for unconditional sampling only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..ode import denoise

RIDGE = 1e-8  # relative to the mean diagonal of the normal equations


@dataclass
class Trajectory:
    """An accurate ODE solution recorded at its solver's nodes; dx/dlambda = D - x with lambda = -log
    sigma, so states and denoiser outputs give a cubic Hermite interpolant between nodes."""
    lambdas: Tensor  # (nodes,) increasing
    states: Tensor  # (nodes, batch, *shape)
    denoised: Tensor  # (nodes, batch, *shape)
    final: Tensor  # the solution at sigma = 0

    def at(self, sigma: float) -> Tensor:
        if sigma == 0:
            return self.final
        lam = min(max(-math.log(sigma), float(self.lambdas[0])), float(self.lambdas[-1]))
        i = int(torch.searchsorted(self.lambdas, torch.tensor(lam, dtype=self.lambdas.dtype)))
        i = min(max(i, 1), len(self.lambdas) - 1)
        h = float(self.lambdas[i] - self.lambdas[i - 1])
        t = (lam - float(self.lambdas[i - 1])) / h
        x0, x1 = self.states[i - 1], self.states[i]
        slope0, slope1 = (self.denoised[i - 1] - x0) * h, (self.denoised[i] - x1) * h
        return ((2 * t**3 - 3 * t**2 + 1) * x0 + (t**3 - 2 * t**2 + t) * slope0
                + (3 * t**2 - 2 * t**3) * x1 + (t**3 - t**2) * slope1)


def record_trajectory(D, x: Tensor, sigmas: Tensor, solver: Callable) -> Trajectory:
    """Solve from x on `sigmas` with `solver`, recording every model call's input and output."""
    calls: list[tuple[float, Tensor, Tensor]] = []

    def recording(x_in, sigma, cond=None):
        out = D(x_in, sigma, cond)
        calls.append((float(sigma.flatten()[0]), x_in.clone(), out.clone()))
        return out

    final = solver(recording, x.clone(), sigmas)
    lambdas = torch.tensor([-math.log(s) for s, _, _ in calls], dtype=torch.float64)
    return Trajectory(lambdas, torch.stack([c[1] for c in calls]), torch.stack([c[2] for c in calls]), final)


@dataclass
class FittedSteps:
    """The fitted solver for one grid: weights[k] combine [x_0, D_0, ..., D_k] into x_{k+1}."""
    sigmas: Tensor
    weights: list[Tensor]
    start: Tensor | None = None  # stands in for D(x, sigma_0), or None: the first call is made

    @property
    def model_calls(self) -> int:
        return len(self.weights) - (self.start is not None)

    def to_dict(self) -> dict:
        start = None if self.start is None else {"shape": list(self.start.shape),
                                                 "values": self.start.flatten().tolist()}
        return {"sigmas": self.sigmas.tolist(), "weights": [w.tolist() for w in self.weights], "start": start}

    @classmethod
    def from_dict(cls, saved: dict) -> "FittedSteps":
        start = saved.get("start")
        if start is not None:
            start = torch.tensor(start["values"], dtype=torch.float64).reshape(start["shape"])
        return cls(torch.tensor(saved["sigmas"], dtype=torch.float64),
                   [torch.tensor(w, dtype=torch.float64) for w in saved["weights"]], start)


def _prior(previous: Tensor, h: float | None) -> Tensor:
    """First-order exponential integrator weights in the basis [x_0, D_0..D_k], given x_k's weights."""
    if h is None:  # last step, to sigma = 0: x = D_k
        return torch.cat([torch.zeros_like(previous), torch.ones(1, dtype=torch.float64)])
    return torch.cat([math.exp(-h) * previous, torch.tensor([-math.expm1(-h)], dtype=torch.float64)])


def _least_squares(basis: list[Tensor], target: Tensor, sample_weights: Tensor, prior: Tensor,
                   ridge: float) -> Tensor:
    """argmin_w sum_i s_i |sum_j w_j basis_j[i] - target[i]|^2 + mu |w - prior|^2, in float64."""
    B = torch.stack([b.flatten(1).double() for b in basis], -1)  # (batch, values, m)
    s = sample_weights.double().to(B.device)
    gram = torch.einsum("bvi,bvj,b->ij", B, B, s)
    residual = target.flatten(1).double() - B @ prior.to(B.device)
    rhs = torch.einsum("bvi,bv,b->i", B, residual, s)
    mu = ridge * float(gram.diagonal().mean())
    eye = torch.eye(len(prior), dtype=torch.float64, device=B.device)
    return prior + torch.linalg.solve(gram + mu * eye, rhs).cpu()


def _run(D, x: Tensor, sigmas: Tensor, choose: Callable, start: Tensor | None, cond, callback) -> Tensor:
    sigmas_list = sigmas.tolist()
    basis, previous = [x], torch.ones(1, dtype=torch.float64)
    for k, (sigma, sigma_next) in enumerate(zip(sigmas_list[:-1], sigmas_list[1:])):
        if k == 0 and start is not None:
            x0 = start.to(device=x.device, dtype=x.dtype).expand_as(x)
        else:
            x0 = denoise(D, x, sigma, cond)
        if callback is not None:
            callback(k, sigma, x, x0)
        basis.append(x0)
        h = None if sigma_next == 0 else math.log(sigma / sigma_next)
        previous = choose(k, basis, _prior(previous, h), sigma_next)
        x = sum(w * b for w, b in zip(previous.tolist(), basis))
    return x


def fit_steps(D, x: Tensor, sigmas: Tensor, target: Callable[[float], Tensor], sample_weights: Tensor, *,
              start: Tensor | None = None, ridge: float = RIDGE) -> tuple[FittedSteps, Tensor]:
    """Fit the solver on calibration noise x (target(sigma) is the accurate state at sigma); returns the
    fitted steps and the fitted solver's output from x."""
    weights: list[Tensor] = []

    def choose(k, basis, prior, sigma_next):
        weights.append(_least_squares(basis, target(sigma_next), sample_weights, prior, ridge))
        return weights[-1]

    with torch.no_grad():
        out = _run(D, x, sigmas, choose, start, None, None)
    return FittedSteps(sigmas.clone(), weights, start), out


def fitted_multistep(D, x: Tensor, sigmas: Tensor, *, steps: FittedSteps, cond=None, noise=None,
                     callback=None) -> Tensor:
    """Run fitted steps from x; `sigmas` must be the grid they were fitted on."""
    if len(sigmas) != len(steps.sigmas) or not torch.allclose(sigmas.double().cpu(), steps.sigmas):
        raise ValueError(f"the fitted solver was fitted on the grid {steps.sigmas.tolist()}, got {sigmas.tolist()}")
    return _run(D, x, sigmas, lambda k, basis, prior, sigma_next: steps.weights[k], steps.start, cond, callback)
