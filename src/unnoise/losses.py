"""Denoising losses in each network's own output space, with SNR weightings from the process.

Weightings are stated in x0 space, lambda(sigma) ||D - x0||^2, and converted to the network's output
space with the factor k^2 from `param.x0_error_scales`:
  none      plain MSE on the network's own target (L_simple of Ho et al. 2020 for eps)
  min_snr   lambda = min(SNR, gamma)                                   (Hang et al. 2023)
  edm       lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2   (Eq. 8 / Table 1, Karras et al. 2022)
A model with learned variances (discrete DDPM chain) adds the hybrid term of Nichol & Dhariwal 2021,
L_hybrid = L_simple + lambda L_vlb with L_vlb = T * L_t (bits/dim) at the sampled step t, through the
variance output only: the mean enters L_t with a stop-gradient (their Sec. 3.1).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .errors import unknown_name
from .param import Denoiser, x0_error_scales

WEIGHTINGS = ("none", "min_snr", "edm")


def loss_weight(denoiser: Denoiser, alpha: Tensor, s: Tensor, weighting: str, gamma: float = 5.0) -> Tensor:
    """Per-sample weight on the output-space MSE; finite wherever the process is (incl. SNR = 0)."""
    if weighting == "none":
        return torch.ones_like(alpha)
    k2, snr_k2 = x0_error_scales(denoiser.prediction, alpha, s, denoiser.sigma_data)
    if weighting == "min_snr":
        return torch.minimum(snr_k2, gamma * k2)  # min(SNR, gamma) * k^2 without 0 * inf
    if weighting == "edm":
        return k2 / denoiser.sigma_data**2 + snr_k2  # (1/sigma_data^2 + SNR) * k^2
    raise unknown_name("loss weighting", weighting, WEIGHTINGS)


def denoising_loss(
    denoiser: Denoiser,
    x0: Tensor,
    t: Tensor,
    noise: Tensor,
    *,
    cond=None,
    weighting: str = "none",
    gamma: float = 5.0,
    vlb_weight: float = 0.0,
    levels: int | None = None,
) -> Tensor:
    """Per-sample weighted MSE between the network output at x_t ~ q(x_t | x0) and its target, plus
    vlb_weight * T * L_t (bits/dim) for a model with learned variances (`levels`: the data's
    quantization levels for the decoder term at t = 0, None for continuous data)."""
    alpha, s = denoiser.process.alpha_s(t)
    alpha, s = alpha.to(x0.device), s.to(x0.device)
    x_in, noise_in = denoiser.network_input(x0, noise, alpha, s)
    out, v = denoiser.split_output(denoiser.net(x_in, noise_in, cond), x0)
    target = denoiser.target(x0, noise, alpha, s)
    mse = (out - target).pow(2).flatten(1).mean(1)
    loss = mse * loss_weight(denoiser, alpha, s, weighting, gamma).to(mse.dtype)
    if vlb_weight > 0:
        loss = loss + vlb_weight * denoiser.process.steps * vlb_bits(denoiser, x0, x_in, t, out.detach(), v, levels)
    return loss


def vlb_bits(denoiser: Denoiser, x0: Tensor, x_t: Tensor, t: Tensor, out: Tensor, v: Tensor,
             levels: int | None) -> Tensor:
    """Per-sample L_t in bits/dim at VP state x_t, integer steps t, from the network's (detached)
    prediction `out` and variance output v."""
    from .vlb import chain_log_variance, chain_to_ve, reverse_terms

    process = denoiser.process
    x_ve, sigma = chain_to_ve(process, x_t, t)
    x0_hat = denoiser.to_x0(out, x_ve, sigma)
    log_var = chain_log_variance(process, t, "learned", v, like=x0)
    bin_width = None if levels is None else 2.0 / (levels - 1)
    nats = reverse_terms(process, x0, x_t, t, x0_hat, log_var, bin_width)
    return (nats.flatten(1).mean(1) / math.log(2)).to(x0.dtype)
