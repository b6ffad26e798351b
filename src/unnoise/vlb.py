"""The variational bound of the discrete DDPM chain, learned reverse variances, and bits/dim.

With the chain's steps indexed t = 0..T-1 as networks see them (x_t has alpha_bar[t]; the data is the
level "before" t = 0), the negative log-likelihood is bounded by (Eq. 5, Ho et al. 2020)
    -log p(x0) <= L_prior + sum_{t=1}^{T-1} L_t + L_decoder,
    L_prior   = KL(q(x_{T-1} | x0) || N(0, I)),
    L_t       = KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)),  x_t ~ q(x_t | x0),
    L_decoder = -log p(x0 | x_0), a Gaussian at the model's x0 estimate, discretized into the data's
                quantization bins for 8-bit (or any `levels`-valued) data (Eq. 13, Ho et al. 2020).
Everything is in the chain's own (variance-preserving) coordinates and in nats, summed over dimensions.

The reverse step p(x_{t-1} | x_t) has the posterior mean at the model's x0 estimate and one of three
variances: `fixed_large` (beta_t), `fixed_small` (the posterior variance beta~_t) or `learned`, the
"learned range" of Nichol & Dhariwal 2021 (Eq. 15): log var = f log beta_t + (1 - f) log beta~_t with
f = (v + 1) / 2 from the network's extra output channels v. As in their code, beta~_0 = 0 is replaced by
beta~_1 in the logarithm.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import UnnoiseError, unknown_name
from .param import model_dtype
from .process import DiscreteDDPM

VARIANCES = ("fixed_large", "fixed_small", "learned")


# ----------------------------------------------------------------------------- Gaussian pieces


def normal_kl(mean_q: Tensor, log_var_q: Tensor, mean_p: Tensor, log_var_p: Tensor) -> Tensor:
    """Elementwise KL(N(mean_q, e^log_var_q) || N(mean_p, e^log_var_p)) in nats."""
    return 0.5 * (log_var_p - log_var_q + torch.exp(log_var_q - log_var_p)
                  + (mean_q - mean_p) ** 2 * torch.exp(-log_var_p) - 1.0)


def gaussian_nll(x: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """Elementwise -log N(x; mean, e^log_var) in nats (a density: for continuous data)."""
    return 0.5 * (math.log(2 * math.pi) + log_var + (x - mean) ** 2 * torch.exp(-log_var))


def discretized_gaussian_nll(x: Tensor, mean: Tensor, log_var: Tensor, bin_width: float) -> Tensor:
    """Elementwise -log P(bin of x) under N(mean, e^log_var) with bins [x - w/2, x + w/2]; the lowest and
    highest data values (-1 and 1) own the tails (Eq. 13, Ho et al. 2020). Data must lie on the bin grid."""
    inv_std = torch.exp(-0.5 * log_var)
    upper = (x - mean + bin_width / 2) * inv_std
    lower = (x - mean - bin_width / 2) * inv_std
    log_cdf_upper = torch.special.log_ndtr(upper)
    log_survival_lower = torch.special.log_ndtr(-lower)
    # log(Phi(upper) - Phi(lower)), computed on the side of the mean where it does not cancel
    log_mass = torch.where(
        lower > 0,
        log_survival_lower + _log1m_exp(torch.special.log_ndtr(-upper) - log_survival_lower),
        log_cdf_upper + _log1m_exp(torch.special.log_ndtr(lower) - log_cdf_upper))
    edge = 1e-3 * bin_width
    log_mass = torch.where(x < -1 + edge, log_cdf_upper, torch.where(x > 1 - edge, log_survival_lower, log_mass))
    return -log_mass


def _log1m_exp(d: Tensor) -> Tensor:
    """log(1 - e^d) for d < 0, kept finite (with finite gradients) where d rounds to 0: torch.where
    differentiates both branches, and the branch it discards may sit there."""
    return torch.log1p(-torch.exp(d.clamp(max=-1e-6)))


# ----------------------------------------------------------------------------- reverse-step variances


def step_log_betas(sigma: Tensor, sigma_next: Tensor) -> tuple[Tensor, Tensor]:
    """(log beta, log beta~) of the (possibly respaced) VP step from level sigma down to sigma_next > 0:
    alpha_bar = 1 / (1 + sigma^2), beta = 1 - alpha_bar / alpha_bar_next, beta~ = beta (1 - alpha_bar_next)
    / (1 - alpha_bar) (Eqs. 6-7 of Ho et al. 2020 for any pair of levels, as in Nichol & Dhariwal's
    respacing)."""
    s2, n2 = sigma.double() ** 2, sigma_next.double() ** 2
    log_beta = torch.log(s2 - n2) - torch.log1p(s2)  # beta = (sigma^2 - sigma'^2) / (1 + sigma^2)
    log_beta_tilde = log_beta + torch.log(n2) - torch.log1p(n2) - torch.log(s2) + torch.log1p(s2)
    return log_beta, log_beta_tilde


def learned_log_variance(v: Tensor, log_beta: Tensor, log_beta_tilde: Tensor) -> Tensor:
    """Eq. 15 of Nichol & Dhariwal 2021: interpolate log beta~ .. log beta by f = (v + 1) / 2."""
    f = (v + 1) / 2
    return f * log_beta + (1 - f) * log_beta_tilde


def chain_log_variance(process: DiscreteDDPM, t: Tensor, kind: str, v: Tensor | None = None,
                       like: Tensor | None = None) -> Tensor:
    """log variance of p(x_{t-1} | x_t) at integer steps t (B,), broadcastable against `like` (or v)."""
    if kind not in VARIANCES:
        raise unknown_name("reverse variance", kind, VARIANCES)
    t = torch.as_tensor(t).long()
    log_beta, log_tilde = _chain_log_betas(process)
    shape = (-1,) + (1,) * ((like if like is not None else v).dim() - 1)
    lb, lt = log_beta[t].reshape(shape), log_tilde[t].reshape(shape)
    if kind == "fixed_large":
        return torch.cat([log_tilde[1:2], log_beta[1:]])[t].reshape(shape)  # beta~_1 at t = 0, as in Ho et al.
    if kind == "fixed_small":
        return lt
    if v is None:
        raise UnnoiseError("reverse variance 'learned' needs the network's variance output")
    return learned_log_variance(v.double(), lb, lt)


def _chain_log_betas(process: DiscreteDDPM) -> tuple[Tensor, Tensor]:
    ab, ab_prev, beta = process.alpha_bar, process.alpha_bar_prev, process.betas
    tilde = beta * (1 - ab_prev) / (1 - ab)
    tilde = torch.cat([tilde[1:2], tilde[1:]])  # beta~_0 = 0: clipped to beta~_1 (Nichol & Dhariwal)
    return beta.log(), tilde.log()


# ----------------------------------------------------------------------------- the bound


@dataclass
class BoundTerms:
    """Per-example terms of the bound in nats (summed over dimensions)."""

    prior: Tensor  # (B,)
    steps: Tensor  # (B, T - 1): L_t for t = 1..T-1
    decoder: Tensor  # (B,)
    dims: int

    def total(self) -> Tensor:
        return self.prior + self.steps.sum(1) + self.decoder

    def bits_per_dim(self) -> Tensor:
        return self.total() / (self.dims * math.log(2))


def bound_unavailable(model, variance: str | None) -> str | None:
    """Why the bound cannot be computed for `model` with reverse variance `variance`, or None."""
    process = model.process
    if not isinstance(process, DiscreteDDPM):
        return (f"the variational bound needs the discrete DDPM chain; this model's process is "
                f"{getattr(process, 'name', type(process).__name__)!r} (continuous)")
    if variance is None and not getattr(model, "learned_variance", False):
        return ("the model has no learned variances (model.learned_variance=false), so its reverse steps have "
                "no variance to bound with; pass --vlb-variance (variance=) fixed_large or fixed_small")
    return None


def prior_kl(process: DiscreteDDPM, x0: Tensor) -> Tensor:
    """L_prior = KL(q(x_{T-1} | x0) || N(0, I)), (B,)."""
    ab = process.alpha_bar[-1]
    mean = ab.sqrt() * x0.double()
    log_var = torch.log1p(-ab).expand_as(mean)
    return normal_kl(mean, log_var, torch.zeros_like(mean), torch.zeros_like(mean)).flatten(1).sum(1)


def reverse_terms(process: DiscreteDDPM, x0: Tensor, x_t: Tensor, t: Tensor, x0_hat: Tensor, log_var: Tensor,
                  bin_width: float | None) -> Tensor:
    """Per-element L_t at integer steps t (B,): the KL to the true posterior for t >= 1, the decoder
    -log p(x0 | x_0) for t = 0 (discretized when bin_width is given), all in nats."""
    x0, x_t, x0_hat = x0.double(), x_t.double(), x0_hat.double()
    safe_t = t.clamp(min=1)
    mean_q, var_q = process.posterior(x_t, x0, safe_t)
    mean_p, _ = process.posterior(x_t, x0_hat, safe_t)
    shape = (-1,) + (1,) * (x0.dim() - 1)
    kl = normal_kl(mean_q, var_q.double().log().reshape(shape), mean_p, log_var)
    if bin_width is None:
        decoder = gaussian_nll(x0, x0_hat, log_var)
    else:
        decoder = discretized_gaussian_nll(x0, x0_hat, log_var, bin_width)
    return torch.where((t == 0).reshape(shape), decoder, kl)


@torch.no_grad()
def variational_bound(model, x0: Tensor, *, variance: str | None = None, levels: int | None = None, cond=None,
                      generator: torch.Generator | None = None, progress=None) -> BoundTerms:
    """All T terms of the bound for a batch x0 (one draw of x_t per step): T model calls.

    `model` is a Denoiser on a DiscreteDDPM process; `variance` defaults to 'learned' when the model has
    variance outputs. `levels` is the number of quantization levels of the data on [-1, 1] (256 for 8-bit
    images; None: continuous data, Gaussian-density decoder)."""
    reason = bound_unavailable(model, variance)
    if reason is not None:
        raise UnnoiseError(reason)
    process, variance = model.process, variance or "learned"
    bin_width = None if levels is None else 2.0 / (levels - 1)
    steps = torch.zeros(x0.shape[0], process.steps - 1, dtype=torch.float64)
    decoder = None
    for t in range(process.steps):
        tt = torch.full((x0.shape[0],), t, dtype=torch.long)
        term = _term_at(model, process, x0, tt, variance, bin_width, cond, generator).flatten(1).sum(1)
        if t == 0:
            decoder = term
        else:
            steps[:, t - 1] = term
        if progress is not None:
            progress(t + 1)
    return BoundTerms(prior_kl(process, x0), steps, decoder, x0[0].numel())


def _term_at(model, process: DiscreteDDPM, x0: Tensor, t: Tensor, variance: str, bin_width, cond, generator):
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    x_t = process.q_sample(x0, t, noise)  # VP coordinates
    x0_hat, v = model_reverse(model, x_t, t, cond)
    log_var = chain_log_variance(process, t, variance, v, like=x0)
    return reverse_terms(process, x0, x_t, t, x0_hat, log_var, bin_width)


def chain_to_ve(process: DiscreteDDPM, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """(VE state x_t / sqrt(alpha_bar_t), sigma_t) of the chain's state x_t at integer steps t."""
    sigma = process.sigma(t)
    alpha, _ = process.coefficients(sigma)
    return x_t / alpha.to(x_t.dtype).reshape((-1,) + (1,) * (x_t.dim() - 1)), sigma


def model_reverse(model, x_t: Tensor, t: Tensor, cond=None) -> tuple[Tensor, Tensor | None]:
    """The model's x0 estimate (and variance output v, or None) at VP state x_t, integer steps t."""
    x_ve, sigma = chain_to_ve(model.process, x_t, t)
    x_ve = x_ve.to(model_dtype(model, x_t.dtype))
    if getattr(model, "learned_variance", False):
        x0, v = model.denoise_with_variance(x_ve, sigma, cond)
        return x0.double(), v.double()
    return model(x_ve, sigma, cond).double(), None
