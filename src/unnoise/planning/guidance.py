"""Denoiser transforms for trajectory diffusion: inpainting of known states (start and goal), policy guidance
(policy-guided diffusion, Jackson et al. 2024) and value guidance. Each returns a denoiser, so every sampler
composes with them and with each other.

Inpainting (Diffuser's conditioning, Janner et al. 2022, Sec. 3.3): the known entries (a mask over the
(C, L) channels) are written into the sample before the network sees it, and into its x0 estimate:
    D_c(x, sigma) = m * y + (1 - m) * D(m * y + (1 - m) * x, sigma)
or, with a fixed noise draw e per sample, D's input holds y + sigma * e there (in distribution at level sigma).
Every sampler's last step to sigma = 0 returns (up to rounding) the last x0 estimate, so the known entries
come out equal to y; `impose` writes them exactly.

Policy guidance: the behaviour-data model's score is tilted by the target policy's action log-likelihood,
    grad log p_lambda(tau) = grad log p(tau) + lambda * sum_t grad_{a_t} log pi(a_t | s_t)
on the action channels only (Jackson et al. 2024, Eq. 5). In x0 form a score term g adds sigma^2 g to D
(Tweedie); we evaluate g at the x0 estimate (the policy never sees noisy states) and take the step that
multiplies the Gaussian N(D, sigma^2) by pi^lambda exactly when pi is Gaussian with std tau:
    D_lambda = D + lambda * s2 * grad_a log pi(a | s) |_(D),   s2 = sigma^2 tau^2 / (tau^2 + lambda sigma^2)
which is D + lambda sigma^2 grad log pi to first order in sigma^2 and stays bounded at large sigma. lambda = 0
returns D unchanged (the added term is 0 * finite). `policy.log_prob(states, actions)` works on the
normalised channels: states (B, 4, L), actions (B, 2, L) -> (B, L); `policy.std` is tau.

Value guidance (Diffuser, Sec. 3.4): D + alpha sigma^2 grad J(D), J a learned return model of the
normalised trajectory, (B, C, L) -> (B,).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import UnnoiseError
from ..guide import DenoiserTransform
from .dataset import ACTION


def _sigma_column(sigma, x: Tensor) -> Tensor:
    """sigma as a (B, 1, 1) float64 tensor for samples x (B, C, L)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
    return sigma.expand(x.shape[0]).reshape(-1, 1, 1) if sigma.ndim <= 1 else sigma.reshape(-1, 1, 1)


class Inpainted(DenoiserTransform):
    """D with the entries where `mask` is true fixed to `known` (module docstring). mask and known broadcast
    against the samples (B, C, L). With `noise` (like the samples), the network sees the known entries at
    the current level, y + sigma * noise (the replacement method, Song et al. 2021, App. I.2), instead of y."""

    def __init__(self, D, known: Tensor, mask: Tensor, noise: Tensor | None = None):
        super().__init__(D)
        self.known, self.mask, self.noise = known, mask.bool(), noise

    def impose(self, x: Tensor) -> Tensor:
        """x with the known entries written in."""
        return torch.where(self.mask.to(x.device), self.known.to(x.device, x.dtype), x)

    def noised(self, x: Tensor, sigma) -> Tensor:
        """x with the known entries written in at level sigma: y + sigma * noise (y without noise)."""
        if self.noise is None:
            return self.impose(x)
        level = (self.known.to(x.device, torch.float64) + _sigma_column(sigma, x) * self.noise.to(x.device)).to(x.dtype)
        return torch.where(self.mask.to(x.device), level, x)

    def denoised(self, x: Tensor, sigma, cond, inner) -> Tensor:
        return self.impose(inner(self.noised(x, sigma), sigma, cond))


class PolicyGuided(DenoiserTransform):
    """D tilted towards the target `policy`'s actions with weight `scale` = lambda (module docstring)."""

    def __init__(self, D, policy, scale: float):
        super().__init__(D)
        if not scale >= 0 or scale == float("inf"):
            raise UnnoiseError(f"policy guidance weight lambda must be a finite number >= 0, got {scale}")
        self.policy, self.scale = policy, float(scale)

    def denoised(self, x: Tensor, sigma, cond, inner) -> Tensor:
        x0 = inner(x, sigma, cond)
        with torch.enable_grad():
            actions = x0[:, ACTION].detach().requires_grad_(True)
            log_prob = self.policy.log_prob(x0[:, :ACTION.start].detach(), actions).sum()
            grad = torch.autograd.grad(log_prob, actions)[0]  # grad_a log pi(a | s) at the x0 estimate
        s2 = _sigma_column(sigma, x) ** 2
        tau2 = float(self.policy.std) ** 2
        step = s2 * tau2 / (tau2 + self.scale * s2)  # the Gaussian-product step (module docstring)
        guided = x0.clone()
        guided[:, ACTION] = x0[:, ACTION] + (self.scale * step).to(x0.dtype) * grad.to(x0.dtype)
        return guided


class ValueGuided(DenoiserTransform):
    """D + alpha sigma^2 grad J(D(x)) for a differentiable return model J: (B, C, L) -> (B,)."""

    def __init__(self, D, value, scale: float):
        super().__init__(D)
        if not scale >= 0 or scale == float("inf"):
            raise UnnoiseError(f"value guidance scale must be a finite number >= 0, got {scale}")
        self.value, self.scale = value, float(scale)

    def denoised(self, x: Tensor, sigma, cond, inner) -> Tensor:
        x0 = inner(x, sigma, cond)
        with torch.enable_grad():
            z = x0.detach().requires_grad_(True)
            grad = torch.autograd.grad(self.value(z).sum(), z)[0]
        return x0 + (self.scale * _sigma_column(sigma, x) ** 2).to(x0.dtype) * grad.to(x0.dtype)
