"""The discrete process of a diffusers scheduler config (scheduler/scheduler_config.json).

A diffusers U-Net was trained on a T-step DDPM chain whose cumulative products alpha_bar were held in
float32. `process_from_scheduler` rebuilds that chain as a `DiscreteDDPM` with the same float32 values
(stored in float64), so that our sampler, fed sigma, asks the network about the same timestep the
diffusers schedulers would:
  - betas: linear, scaled_linear (linear in sqrt(beta)), squaredcos_cap_v2 (Eq. 17 of Nichol & Dhariwal
    2021, capped at 0.999), or the config's trained_betas;
  - rescale_betas_zero_snr: Alg. 1 of Lin et al. 2024; the top alpha_bar, 0 after rescaling, is floored at
    2^-24 so that the top sigma (about 4096) is finite, the convention of diffusers' sigma-based schedulers;
  - sigmas and their logarithms in float32, and t_of_sigma interpolating linearly in log sigma between the
    last step whose log sigma is at most log sigma and the next, as those schedulers map sigma to a
    fractional timestep; a sigma equal to a step's own sigma maps to that integer step.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import UnnoiseError
from ..process import ALPHA_BAR_FLOOR, DiscreteConfig, DiscreteDDPM, cosine_betas

SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}
PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}


def scheduler_betas(config: dict, where: str) -> Tensor:
    """The float32 betas of a scheduler config, before any zero-SNR rescaling."""
    steps = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 1e-4)), float(config.get("beta_end", 0.02))
    if config.get("trained_betas") is not None:
        return torch.tensor(config["trained_betas"], dtype=torch.float32)
    schedule = config.get("beta_schedule", "linear")
    if schedule == "linear":
        return torch.linspace(start, end, steps, dtype=torch.float32)
    if schedule == "scaled_linear":  # beta_t = (linear in sqrt(beta))^2
        return torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float32) ** 2
    if schedule == "squaredcos_cap_v2":
        return cosine_betas(steps).to(torch.float32)
    raise UnnoiseError(f"{where}: beta_schedule {schedule!r} is not supported; valid: "
                       f"{', '.join(SCHEDULES)} (or trained_betas)")


def zero_terminal_snr_betas(betas: Tensor) -> Tensor:
    """Alg. 1 of Lin et al. 2024 in the betas' dtype: shift sqrt(alpha_bar) to end at 0, scale it to keep
    its first value, and return the betas of the rescaled alpha_bar (whose cumulative product the
    scheduler takes again, so alpha_bar is rounded as theirs is)."""
    root = torch.cumprod(1 - betas, 0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    alpha_bar = root**2
    return 1 - torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])


class DiffusersDDPM(DiscreteDDPM):
    """A `DiscreteDDPM` whose alpha_bar comes from a diffusers scheduler config (module docstring)."""

    def __init__(self, alpha_bar32: Tensor, config: DiscreteConfig):
        self.cfg = config
        self.alpha_bar = alpha_bar32.to(torch.float64)
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        self.alphas = self.alpha_bar / self.alpha_bar_prev
        self.betas = 1 - self.alphas
        sigmas32 = ((1 - alpha_bar32) / alpha_bar32) ** 0.5  # float32, as the schedulers hold them
        self.sigmas = sigmas32.to(torch.float64)
        self.log_sigmas = sigmas32.log().to(torch.float64)

    @property
    def sigma_max(self) -> float:
        """The top step's sigma (about 4096 for a zero-terminal-SNR chain, below the finite sigma before it)."""
        return float(self.sigmas[-1])

    def t_of_sigma(self, sigma) -> Tensor:
        """Fractional timestep: t = low + w with low the last step whose log sigma is <= log sigma (at most
        T-2) and w linear in log sigma to step low + 1, clamped to [0, 1]; a step's own sigma gives its index."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        log_sigma = sigma.clamp_min(1e-10).log()
        steps = torch.arange(self.steps)
        below = self.log_sigmas <= log_sigma[..., None]  # (..., T)
        low = torch.where(below, steps, 0).amax(-1).clamp(max=self.steps - 2)
        log_low, log_high = self.log_sigmas[low], self.log_sigmas[low + 1]
        w = ((log_low - log_sigma) / (log_low - log_high)).clamp(0, 1)
        t = (1 - w) * low + w * (low + 1)
        hits = sigma[..., None] == self.sigmas  # a step's own sigma: exactly that step
        return torch.where(hits.any(-1), hits.to(torch.float64).argmax(-1).to(torch.float64), t)

    def noise_input(self, sigma) -> Tensor:
        return self.t_of_sigma(sigma)


def process_from_scheduler(config: dict, where: str = "scheduler_config.json") -> DiffusersDDPM:
    """The DiffusersDDPM of a scheduler config dict (one-line errors naming `where` and the field)."""
    schedule = config.get("beta_schedule", "linear")
    betas = scheduler_betas(config, where)
    if betas.dim() != 1 or len(betas) < 2 or not bool(((betas > 0) & (betas < 1)).all()):
        raise UnnoiseError(f"{where}: betas must be a list of at least 2 values in (0, 1)")
    zero_snr = bool(config.get("rescale_betas_zero_snr", False))
    alpha_bar = torch.cumprod(1 - (zero_terminal_snr_betas(betas) if zero_snr else betas), 0)
    if zero_snr:
        alpha_bar[-1] = ALPHA_BAR_FLOOR
    ours = SCHEDULES.get(schedule, "linear") if config.get("trained_betas") is None else "trained"
    cfg = DiscreteConfig(schedule=ours, steps=len(betas), beta_start=float(config.get("beta_start", 1e-4)),
                         beta_end=float(config.get("beta_end", 0.02)), zero_terminal_snr=zero_snr)
    return DiffusersDDPM(alpha_bar, cfg)


def prediction_of(config: dict, where: str = "scheduler_config.json") -> str:
    """Our name for the scheduler's prediction_type (epsilon -> eps, v_prediction -> v, sample -> x0)."""
    name = config.get("prediction_type", "epsilon")
    if name not in PREDICTIONS:
        raise UnnoiseError(f"{where}: prediction_type {name!r} is not supported; valid: {', '.join(PREDICTIONS)}")
    return PREDICTIONS[name]


def learned_variance_of(config: dict) -> bool:
    """Whether the network also emits the reverse variance (variance_type learned_range, Nichol & Dhariwal)."""
    return config.get("variance_type") in ("learned_range",)
