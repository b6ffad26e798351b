"""Sampling grids (decreasing sigmas ending at 0) and training noise densities."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .errors import UnnoiseError, unknown_name
from .process import DiscreteDDPM, Process

SPACINGS = ("trailing", "leading", "linspace")


def _append_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho (Eq. 5, Karras et al.)."""
    _check_steps(n)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    inv_max, inv_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return _append_zero((inv_max + ramp * (inv_min - inv_max)) ** rho)


def log_snr_uniform(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Steps uniform in log-SNR = -2 log sigma."""
    _check_steps(n)
    sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64).exp()
    sigmas[-1] = sigma_min  # the ends exactly, not exp(log(.)) rounded (a single step starts at sigma_max)
    sigmas[0] = sigma_max
    return _append_zero(sigmas)


def ddpm_timesteps(steps: int, n: int, spacing: str = "trailing") -> Tensor:
    """Decreasing integer timesteps of a T-step chain (Table 2, Lin et al. 2024, names the spacings).

    trailing: starts at T-1 (the top of the schedule) in strides of T/n; linspace: n points from T-1 to 0
    inclusive; leading: multiples of T//n from 0, which never reaches the top (kept for compatibility).
    """
    _check_steps(n)
    if n > steps:
        raise UnnoiseError(f"--steps {n} exceeds the {steps}-step chain")
    if spacing == "trailing":
        t = torch.round(torch.arange(steps, 0, -steps / n, dtype=torch.float64)) - 1
    elif spacing == "linspace":
        t = torch.round(torch.linspace(steps - 1, 0, n, dtype=torch.float64))
    elif spacing == "leading":
        t = (torch.arange(n, dtype=torch.float64) * (steps // n)).flip(0)
    else:
        raise unknown_name("timestep spacing", spacing, SPACINGS)
    return t.long()


def ddpm_sigmas(process: DiscreteDDPM, n: int, spacing: str = "trailing") -> Tensor:
    """The sigmas of `ddpm_timesteps`, then 0; an infinite top sigma is floored to process.sigma_max."""
    t = ddpm_timesteps(process.steps, n, spacing)
    sigmas = process.sigmas[t].clamp(max=process.sigma_max)
    return _append_zero(sigmas)


GRIDS = ("karras", "log_snr", "ddpm", "nested")  # nested: sample/consistency.nested_karras (few-step students)


def sigma_grid(name: str, process: Process, n: int, **options) -> Tensor:
    """A named grid of n steps for `process` (n + 1 sigmas, the last 0)."""
    sigma_min = options.pop("sigma_min", process.sigma_min)
    sigma_max = options.pop("sigma_max", process.sigma_max)
    if name == "karras":
        return karras(n, sigma_min, sigma_max, **options)
    if name == "log_snr":
        return log_snr_uniform(n, sigma_min, sigma_max)
    if name == "nested":
        from .sample.consistency import nested_karras

        return nested_karras(n, sigma_min, sigma_max, **options)
    if name == "ddpm":
        if not isinstance(process, DiscreteDDPM):
            raise UnnoiseError(f"grid 'ddpm' needs the discrete ddpm process, not {process.name!r}")
        return ddpm_sigmas(process, n, **options)
    raise unknown_name("grid", name, GRIDS)


def _check_steps(n: int) -> None:
    if n < 1:
        raise UnnoiseError(f"steps must be >= 1, got {n}")


# ----------------------------------------------------------------------------- training densities

DENSITIES = ("uniform", "lognormal", "importance")


def sample_training_t(
    process: Process, n: int, generator: torch.Generator | None = None, density: str = "uniform",
    p_mean: float = -1.2, p_std: float = 1.2,
) -> Tensor:
    """Training times in the process's own units.

    uniform: integer t ~ U{0..T-1} for the discrete chain (Alg. 1, Ho et al. 2020), t ~ U[t_min, 1] for
    continuous processes, sigma ~ U over log-sigma range for EDM; lognormal: ln sigma ~ N(p_mean, p_std^2)
    (Sec. 5, Karras et al. 2022), converted to the process's time.
    """
    if density == "lognormal":
        sigma = (torch.randn(n, generator=generator, dtype=torch.float64) * p_std + p_mean).exp()
        return process.t_of_sigma(sigma)
    if density == "importance":
        raise ValueError("density 'importance' draws t from a loss history: use train.timesteps.LossAwareTimesteps")
    if density != "uniform":
        raise unknown_name("training density", density, DENSITIES)
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    if isinstance(process, DiscreteDDPM):
        return (u * process.steps).floor().clamp(max=process.steps - 1)
    t_min = process.t_of_sigma(torch.tensor(process.sigma_min))
    t_max = process.t_of_sigma(torch.tensor(process.sigma_max))
    return t_min + u * (t_max - t_min)
