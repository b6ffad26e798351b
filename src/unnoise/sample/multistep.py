"""Multistep exponential integrators of the probability-flow ODE in log-SNR time.

With lambda = -log sigma, the ODE dx/dsigma = (x - D) / sigma becomes dx/dlambda = D - x, whose exact
solution over a step of size h = lambda_t - lambda_s is (variation of constants, Lu et al. 2022, Eq. 9)
    x_t = e^{-h} x_s + integral_0^h e^{-(h - u)} D(lambda_s + u) du.
Replacing D by the polynomial through earlier (and, for a corrector, the new) model outputs and
integrating exactly gives weights built from phi_k(z) = sum_n z^n / (n + k)!:
    integral_0^h e^{-(h - u)} (u / h)^k du = k! h phi_{k+1}(-h).
Order 2/3 with past outputs only is DPM-Solver++(2M/3M) (Lu et al. 2022b); adding a corrector through the
new output, reused by the next step at no extra model call, is the predictor-corrector idea of UniPC
(Zhao et al. 2023). The stochastic variant integrates the SDE whose drift is twice the ODE's
(rate 2), adding fresh noise of variance sigma_t^2 (1 - e^{-2h}) (DPM-Solver++(2M) SDE).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .noise import default_noise
from .ode import denoise


def phi(k: int, z: float) -> float:
    """phi_k(z) = sum_{n>=0} z^n / (n + k)!, stable for small |z| (series) and large |z| (recurrence)."""
    if abs(z) < 1.0:
        return sum(z**n / math.factorial(n + k) for n in range(30))
    value = math.exp(z)  # phi_0
    for j in range(k):  # phi_{j+1}(z) = (phi_j(z) - 1/j!) / z
        value = (value - 1 / math.factorial(j)) / z
    return value


def exponential_weights(nodes: list[float], h: float, rate: float = 1.0) -> list[float]:
    """Weights w_j with sum_j w_j p(u_j) = integral_0^h rate e^{-rate (h - u)} p(u) du for every polynomial
    p of degree < len(nodes); nodes u_j are lambda offsets from the step's start."""
    m = len(nodes)
    big_h = rate * h
    moments = torch.tensor([math.factorial(k) * big_h * phi(k + 1, -big_h) for k in range(m)], dtype=torch.float64)
    scaled = torch.tensor(nodes, dtype=torch.float64) / h
    vandermonde = scaled[None, :] ** torch.arange(m, dtype=torch.float64)[:, None]  # (k, j) = v_j^k
    return torch.linalg.solve(vandermonde, moments).tolist()


def _combine(weights: list[float], outputs: list[Tensor]) -> Tensor:
    total = weights[0] * outputs[0]
    for w, out in zip(weights[1:], outputs[1:]):
        total = total + w * out
    return total


def _final(x: Tensor, x0: Tensor, final: str) -> Tensor:
    """Last step to sigma = 0. 'denoise': D(x, sigma). 'midpoint': (x + D) / 2, an Euler step in sigma^2,
    exact to O(sigma^4) because x(sigma) = x(0) + a sigma^2 + O(sigma^4) along the ODE near the data."""
    if final == "denoise":
        return x0
    if final == "midpoint":
        return 0.5 * (x + x0)
    raise ValueError(f"final must be 'denoise' or 'midpoint', got {final!r}")


def multistep(D, x: Tensor, sigmas: Tensor, *, cond=None, noise=None, callback=None, order: int = 3,
              corrector: bool = True, final: str = "denoise", stochastic: bool = False) -> Tensor:
    """Exponential Adams-Bashforth predictor of `order` (past outputs), optionally followed by the
    Adams-Moulton corrector through the new output (one more order, no extra model call)."""
    noise = noise or default_noise
    sigmas = sigmas.tolist()
    lambdas = [-math.log(s) if s > 0 else math.inf for s in sigmas]
    rate = 2.0 if stochastic else 1.0
    history: list[tuple[float, Tensor]] = []  # (lambda, D) of recent steps, newest first
    for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        x0 = denoise(D, x, sigma, cond)
        if callback is not None:
            callback(i, sigma, x, x0)
        if corrector and history and not stochastic:
            x = _correct(x_prev, history, (lambdas[i], x0), lambdas[i] - history[0][0], order)
        history = [(lambdas[i], x0)] + history[: order - 1]
        if sigma_next == 0:
            return _final(x, x0, final)
        h = lambdas[i + 1] - lambdas[i]
        nodes = [lam - lambdas[i] for lam, _ in history]
        weights = exponential_weights(nodes, h, rate)
        x_prev = x
        x = math.exp(-rate * h) * x + _combine(weights, [d for _, d in history])
        if stochastic:
            x = x + sigma_next * math.sqrt(-math.expm1(-2 * h)) * noise(x)
    return x


def _correct(x_prev: Tensor, history, newest, h: float, order: int) -> Tensor:
    """Redo the last step with the polynomial through the new output and `order` earlier ones."""
    lam_start = history[0][0]
    points = [newest] + history[:order]
    nodes = [lam - lam_start for lam, _ in points]
    weights = exponential_weights(nodes, h)
    return math.exp(-h) * x_prev + _combine(weights, [d for _, d in points])


def dpmpp_2m(D, x, sigmas, *, cond=None, noise=None, callback=None, final: str = "denoise"):
    """DPM-Solver++(2M): second-order multistep, data prediction, no corrector."""
    return multistep(D, x, sigmas, cond=cond, callback=callback, order=2, corrector=False, final=final)


def dpmpp_3m(D, x, sigmas, *, cond=None, noise=None, callback=None, final: str = "denoise"):
    """DPM-Solver++(3M): third-order multistep, data prediction, no corrector."""
    return multistep(D, x, sigmas, cond=cond, callback=callback, order=3, corrector=False, final=final)


def dpmpp_2m_sde(D, x, sigmas, *, cond=None, noise=None, callback=None):
    """DPM-Solver++(2M) SDE: the second-order multistep step of the reverse SDE, with fresh noise."""
    return multistep(D, x, sigmas, cond=cond, noise=noise, callback=callback, order=2, corrector=False,
                     stochastic=True)


def pc_multistep(D, x, sigmas, *, cond=None, noise=None, callback=None, order: int = 3,
                 final: str = "midpoint"):
    """Predictor-corrector multistep (UniPC-style): order-`order` predictor, order+1 corrector."""
    return multistep(D, x, sigmas, cond=cond, callback=callback, order=order, corrector=True, final=final)
