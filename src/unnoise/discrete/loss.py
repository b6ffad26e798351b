"""Continuous-time ELBO of categorical diffusion, per sequence in nats, for a model returning x_0 logits.

The absorbing bound is a weighted cross-entropy on the masked positions (Sahoo et al. 2024 eq. 10;
Shi et al. 2024 eq. 5). The uniform bound is the continuous-time limit of the D3PM bound (Austin et al. 2021
eq. 1) for a CTMC (Campbell et al. 2022 Prop. 2), written as the diffusion-weighted denoising score entropy of
Lou et al. 2024 eq. 9 with the probability ratios p_t(y) / p_t(x_t) taken from the model's x_0 posterior.
Both are computed in float64 and include every constant, so with the exact posterior they equal -log p(x_0).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..errors import unknown_name
from .process import CategoricalProcess

Model = Callable[[Tensor, Tensor], Tensor]  # (tokens (B, L), t (B,)) -> x_0 logits (B, L, K)

TIME_SAMPLING = ("stratified", "antithetic", "iid")
TIME_MARGIN = 1e-7  # t is kept in [margin, 1 - margin]: the rate -alpha'/alpha is infinite at t = 1


def sample_times(batch: int, generator: torch.Generator | None = None, method: str = "stratified",
                 device=None) -> Tensor:
    """Training times (B,) in float64 on (0, 1).

    'stratified': one uniform offset u and t_i = (u + i / B) mod 1, a low-discrepancy set with one point in
    each 1/B stratum (Kingma et al. 2021 app. I.2; Sahoo et al. 2024 sec. 3.5); 'antithetic': pairs (u, 1 - u);
    'iid': independent uniforms. All three are unbiased for the time integral.
    """
    if method not in TIME_SAMPLING:
        raise unknown_name("time sampling", method, TIME_SAMPLING)
    if method == "iid":
        t = torch.rand(batch, generator=generator, dtype=torch.float64)
    elif method == "stratified":
        offset = torch.rand(1, generator=generator, dtype=torch.float64)
        t = torch.remainder(offset + torch.arange(batch, dtype=torch.float64) / batch, 1.0)
    else:
        half = torch.rand((batch + 1) // 2, generator=generator, dtype=torch.float64)
        t = torch.cat([half, 1.0 - half])[:batch]
    return t.clamp(TIME_MARGIN, 1.0 - TIME_MARGIN).to(device)


def absorbing_elbo(process: CategoricalProcess, logits: Tensor, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
    """-alpha'(t) / (1 - alpha(t)) * sum over masked n of -log p(x_0^n | x_t): (B,) nats (Sahoo et al. eq. 10)."""
    schedule = process.schedule
    weight = -schedule.alpha_derivative(t) / (1.0 - schedule.alpha(t))  # (B,)
    log_probs = torch.log_softmax(logits.to(torch.float64), -1)  # (B, L, K)
    nll = -log_probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1)  # (B, L)
    masked = x_t == process.mask_id
    return weight * torch.where(masked, nll, torch.zeros_like(nll)).sum(-1)


def _ratio_divergence(ratio_model: Tensor, ratio_true: Tensor) -> Tensor:
    """Score entropy s - r log s + r (log r - 1) = r * phi(s / r), phi(x) = x - 1 - log x >= 0 (Lou et al. eq. 5)."""
    quotient = ratio_model / ratio_true
    return ratio_true * (quotient - 1.0 - torch.log(quotient))


def uniform_elbo(process: CategoricalProcess, logits: Tensor, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
    """Sum over positions n and tokens b != x_t^n of rate * r_b * phi(s_b / r_b): (B,) nats (Lou et al. eq. 9).

    The forward rate into x_t^n from b is beta / K with beta = -alpha'/alpha; r_b = q_t(b | x_0^n) / q_t(x_t^n | x_0^n)
    is the true ratio and s_b = sum_c p(c | x_t) q_t(b | c) / q_t(x_t^n | c) the model's.
    """
    size = process.vocab_size
    alpha = process.alpha(t).view(-1, 1, 1)
    beta = (-process.schedule.alpha_derivative(t) / process.alpha(t)).view(-1, 1, 1)
    noise = (1.0 - alpha) / size  # the uniform part of q_t, u = (1 - alpha) / K
    probs = torch.softmax(logits.to(torch.float64), -1)  # (B, L, K)
    current = torch.nn.functional.one_hot(x_t, size).to(torch.float64)
    clean = torch.nn.functional.one_hot(x0, size).to(torch.float64)
    prob_current = (probs * current).sum(-1, keepdim=True)
    ratio_model = 1.0 + probs * (alpha / noise) - prob_current * (alpha / (alpha + noise))  # s_b, b != x_t^n
    ratio_true = (alpha * clean + noise) / (alpha * (clean * current).sum(-1, keepdim=True) + noise)  # r_b
    terms = _ratio_divergence(ratio_model, ratio_true)
    terms = torch.where(current.bool(), torch.zeros_like(terms), terms)  # y = x_t is not a jump
    return (beta / size).view(-1) * terms.sum((-1, -2))


def elbo_terms(process: CategoricalProcess, logits: Tensor, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
    """The ELBO's integrand at time t for each sequence: (B,) nats; its time average over t ~ U(0, 1) is the bound."""
    if process.kind == "absorbing":
        return absorbing_elbo(process, logits, x0, x_t, t)
    return uniform_elbo(process, logits, x0, x_t, t)


def diffusion_loss(model: Model, process: CategoricalProcess, x0: Tensor, generator: torch.Generator | None = None,
                   time_sampling: str = "stratified") -> Tensor:
    """One-sample Monte Carlo estimate of the ELBO per sequence (B,) in nats: t ~ U(0,1), x_t ~ q_t(. | x_0)."""
    batch = x0.shape[0]
    t = sample_times(batch, generator, time_sampling)
    uniforms = torch.rand((2, *x0.shape), generator=generator, dtype=torch.float64)
    t, uniforms = t.to(x0.device), uniforms.to(x0.device)
    x_t = process.corrupt(x0, t, uniforms)
    logits = model(x_t, t)  # float64 times; a network casts them to its own dtype
    return elbo_terms(process, logits, x0, x_t, t)


@torch.no_grad()
def estimate_elbo(model: Model, process: CategoricalProcess, x0: Tensor, draws: int,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Mean and standard error (B,), (B,) of the ELBO in nats per sequence over `draws` stratified times."""
    values = torch.stack([diffusion_loss(model, process, x0, generator) for _ in range(int(draws))])
    error = values.std(0) / draws ** 0.5 if draws > 1 else torch.full_like(values[0], float("nan"))
    return values.mean(0), error
