"""Forward processes: x_t = alpha_t * x0 + s_t * eps, seen through the VE sigma = s_t / alpha_t.

Every process exposes the same small surface so that the rest of the library only needs `sigma`:
- `alpha_s(t)`: the signal and noise coefficients in the process's own coordinates,
- `sigma(t)`, `t_of_sigma(sigma)`: the variance-exploding noise level and its inverse,
- `coefficients(sigma)`: (alpha, s) for a VE sigma (the input scaling a network of this process expects),
- `noise_input(sigma)`: the network's noise-conditioning scalar, in a DDPM-like range [0, ~1000],
- `q_sample(x0, t, noise)`: closed-form sampling of q(x_t | x0).
Arithmetic is float64; tensors come back in the dtype of the input.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import unknown_name

# A zero-terminal-SNR chain has sigma_T = inf; samplers start from this finite floor instead
# (alpha_bar = 2^-24, sigma ~ 4096), the same floor other libraries use for this case.
ALPHA_BAR_FLOOR = 2.0**-24


def _f64(t) -> Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


class Process:
    """Common interface. `kind` is "vp" (alpha^2 + s^2 = 1), "ve" (alpha = 1) or "flow" (alpha + s = 1)."""

    kind: str = "vp"
    name: str = ""

    def alpha_s(self, t) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def sigma(self, t) -> Tensor:
        alpha, s = self.alpha_s(t)
        return s / alpha

    def t_of_sigma(self, sigma) -> Tensor:
        raise NotImplementedError

    @property
    def sigma_min(self) -> float:
        raise NotImplementedError

    @property
    def sigma_max(self) -> float:
        raise NotImplementedError

    def coefficients(self, sigma) -> tuple[Tensor, Tensor]:
        """(alpha, s) with s / alpha = sigma: x_process = alpha * x_ve."""
        sigma = _f64(sigma)
        if self.kind == "ve":
            return torch.ones_like(sigma), sigma
        alpha = torch.rsqrt(1.0 + sigma**2)  # alpha^2 + s^2 = 1
        return alpha, sigma * alpha

    def snr(self, t) -> Tensor:
        """Signal-to-noise ratio alpha^2 / s^2 (0 at the top of a zero-terminal-SNR chain)."""
        alpha, s = self.alpha_s(t)
        return alpha**2 / s**2

    def noise_input(self, sigma) -> Tensor:
        """Noise-conditioning input of a network trained on this process: 1000 t for t in [0, 1]."""
        return 1000 * self.t_of_sigma(sigma)

    def q_sample(self, x0: Tensor, t, noise: Tensor) -> Tensor:
        """x_t ~ q(x_t | x0) in process coordinates: alpha_t x0 + s_t eps (Eq. 4, Ho et al. 2020)."""
        alpha, s = self.alpha_s(t)
        shape = (-1,) + (1,) * (x0.dim() - 1)
        alpha = alpha.to(x0.dtype).reshape(shape)
        s = s.to(x0.dtype).reshape(shape)
        return alpha * x0 + s * noise

    def config(self) -> dict:
        """Registry name and config fields: `process_from_config` rebuilds the same process."""
        return {"name": self.name, **self.cfg.__dict__}


# ----------------------------------------------------------------------------- discrete DDPM


def linear_betas(steps: int, beta_start: float, beta_end: float) -> Tensor:
    """Linear schedule of Ho et al. 2020 (defaults 1e-4 .. 0.02 at 1000 steps)."""
    return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)


def cosine_betas(steps: int, offset: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Cosine schedule, Eq. 17 of Nichol & Dhariwal 2021: alpha_bar(t) = cos^2((t/T + s)/(1 + s) pi/2)."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + offset) / (1 + offset) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


def sigmoid_betas(steps: int, beta_start: float, beta_end: float) -> Tensor:
    """Betas following a sigmoid from beta_start to beta_end over x in [-6, 6]."""
    x = torch.linspace(-6, 6, steps, dtype=torch.float64)
    return torch.sigmoid(x) * (beta_end - beta_start) + beta_start


def rescale_zero_terminal_snr(betas: Tensor) -> Tensor:
    """Shift and scale sqrt(alpha_bar) so that it ends at exactly 0 (Alg. 1, Lin et al. 2024)."""
    root = torch.cumprod(1 - betas, 0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)
    alpha_bar = root**2
    alphas = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1 - alphas


BETA_SCHEDULES = {"linear", "cosine", "sigmoid", "scaled_linear"}  # scaled_linear: Stable Diffusion's


@dataclass(frozen=True)
class DiscreteConfig:
    schedule: str = "linear"
    steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    zero_terminal_snr: bool = False


class DiscreteDDPM(Process):
    """The DDPM Markov chain q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I), t = 0..T-1.

    Timestep index t (0-based, as networks see it) has alpha_bar[t] = prod_{i<=t} (1 - beta_i).
    Fractional t interpolates log-sigma linearly between neighbouring steps.
    """

    kind = "vp"
    name = "ddpm"

    def __init__(self, config: DiscreteConfig = DiscreteConfig()):
        self.cfg = config
        self.betas = _make_betas(config)
        self.alphas = 1 - self.betas
        self.alpha_bar = torch.cumprod(self.alphas, 0)
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        self.sigmas = ((1 - self.alpha_bar) / self.alpha_bar).sqrt()  # VE sigma per step, inf at ZTSNR
        self.log_sigmas = self.sigmas.log()

    @property
    def steps(self) -> int:
        return len(self.betas)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        """Largest finite sigma a sampler can start from (floored for zero terminal SNR)."""
        floor = math.sqrt((1 - ALPHA_BAR_FLOOR) / ALPHA_BAR_FLOOR)
        return min(float(self.sigmas[-1]), floor)

    def alpha_s(self, t) -> tuple[Tensor, Tensor]:
        t = _f64(t)
        if _is_integral(t):
            ab = self.alpha_bar[t.long()]
            return ab.sqrt(), (1 - ab).sqrt()
        return self.coefficients(self.sigma(t))

    def sigma(self, t) -> Tensor:
        t = _f64(t)
        if _is_integral(t):
            return self.sigmas[t.long()]
        low = t.floor().long().clamp(0, self.steps - 1)
        high = (low + 1).clamp(max=self.steps - 1)
        w = t - low
        log_sigma = (1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]
        return log_sigma.exp()

    def t_of_sigma(self, sigma) -> Tensor:
        """Fractional timestep with sigma(t) = sigma, linear in log-sigma between steps."""
        log_sigma = _f64(sigma).log()
        finite = self.log_sigmas[torch.isfinite(self.log_sigmas)]
        last = len(finite) - 1
        high = torch.searchsorted(finite, log_sigma.clamp(finite[0], finite[-1])).clamp(1, last)
        low = high - 1
        w = (log_sigma - finite[low]) / (finite[high] - finite[low])
        t = low + w.clamp(0, 1)
        if last < self.steps - 1:  # zero terminal SNR: anything past the last finite sigma maps to T-1
            t = torch.where(log_sigma > finite[-1], torch.full_like(t, self.steps - 1.0), t)
        return t

    def noise_input(self, sigma) -> Tensor:
        return self.t_of_sigma(sigma)

    def posterior(self, x_t: Tensor, x0: Tensor, t) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x0), Eqs. 6-7 of Ho et al. 2020 (integer t >= 1)."""
        t = _f64(t).long()
        ab, ab_prev, beta = self.alpha_bar[t], self.alpha_bar_prev[t], self.betas[t]
        coef_x0 = ab_prev.sqrt() * beta / (1 - ab)
        coef_xt = self.alphas[t].sqrt() * (1 - ab_prev) / (1 - ab)
        variance = beta * (1 - ab_prev) / (1 - ab)
        shape = (-1,) + (1,) * (x0.dim() - 1)
        mean = _bcast(coef_x0, shape, x0) * x0 + _bcast(coef_xt, shape, x0) * x_t
        return mean, variance.to(x0.dtype)



def _make_betas(cfg: DiscreteConfig) -> Tensor:
    if cfg.schedule == "linear":
        betas = linear_betas(cfg.steps, cfg.beta_start, cfg.beta_end)
    elif cfg.schedule == "cosine":
        betas = cosine_betas(cfg.steps)
    elif cfg.schedule == "sigmoid":
        betas = sigmoid_betas(cfg.steps, cfg.beta_start, cfg.beta_end)
    elif cfg.schedule == "scaled_linear":  # linear in sqrt(beta) (Rombach et al. 2022's latent models)
        betas = linear_betas(cfg.steps, cfg.beta_start**0.5, cfg.beta_end**0.5) ** 2
    else:
        raise unknown_name("beta schedule", cfg.schedule, BETA_SCHEDULES)
    return rescale_zero_terminal_snr(betas) if cfg.zero_terminal_snr else betas


def _is_integral(t: Tensor) -> bool:
    return bool(torch.all(t == t.round()))


def _bcast(coef: Tensor, shape, like: Tensor) -> Tensor:
    return coef.to(like.dtype).reshape(shape) if coef.dim() else coef.to(like.dtype)


# ----------------------------------------------------------------------------- continuous processes


@dataclass(frozen=True)
class VPConfig:
    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3


class ContinuousVP(Process):
    """VP SDE of Song et al. 2021, beta(t) = beta_min + t (beta_max - beta_min), t in [t_min, 1].

    log alpha_bar(t) = -(beta_min t + (beta_max - beta_min) t^2 / 2)   (Eq. 33, Song et al. 2021)
    """

    kind = "vp"
    name = "vp"

    def __init__(self, config: VPConfig = VPConfig()):
        self.cfg = config

    def _log_alpha_bar(self, t: Tensor) -> Tensor:
        c = self.cfg
        return -(c.beta_min * t + 0.5 * (c.beta_max - c.beta_min) * t**2)

    def alpha_s(self, t) -> tuple[Tensor, Tensor]:
        log_ab = self._log_alpha_bar(_f64(t))
        return (0.5 * log_ab).exp(), (-torch.expm1(log_ab)).sqrt()

    def sigma(self, t) -> Tensor:
        return torch.expm1(-self._log_alpha_bar(_f64(t))).sqrt()  # sigma^2 = 1/alpha_bar - 1

    def t_of_sigma(self, sigma) -> Tensor:
        """Solve (beta_max - beta_min)/2 t^2 + beta_min t = log(1 + sigma^2) for t >= 0."""
        c = self.cfg
        rhs = torch.log1p(_f64(sigma) ** 2)
        a = 0.5 * (c.beta_max - c.beta_min)
        if a == 0:
            return rhs / c.beta_min
        return 2 * rhs / (c.beta_min + (c.beta_min**2 + 4 * a * rhs).sqrt())

    @property
    def sigma_min(self) -> float:
        return float(self.sigma(self.cfg.t_min))

    @property
    def sigma_max(self) -> float:
        return float(self.sigma(1.0))



@dataclass(frozen=True)
class VEConfig:
    sigma_min: float = 0.01
    sigma_max: float = 50.0


class _ConfiguredRange(Process):
    """A process whose sigma range is given directly by its config (VE, EDM)."""

    @property
    def sigma_min(self) -> float:
        return self.cfg.sigma_min

    @property
    def sigma_max(self) -> float:
        return self.cfg.sigma_max


class VarianceExploding(_ConfiguredRange):
    """VE SDE (NCSN), sigma(t) = sigma_min (sigma_max / sigma_min)^t, t in [0, 1] (Song et al. 2021)."""

    kind = "ve"
    name = "ve"

    def __init__(self, config: VEConfig = VEConfig()):
        self.cfg = config
        self._log_ratio = math.log(config.sigma_max / config.sigma_min)

    def alpha_s(self, t) -> tuple[Tensor, Tensor]:
        sigma = self.cfg.sigma_min * (self._log_ratio * _f64(t)).exp()
        return torch.ones_like(sigma), sigma

    def t_of_sigma(self, sigma) -> Tensor:
        return (_f64(sigma) / self.cfg.sigma_min).log() / self._log_ratio



@dataclass(frozen=True)
class EDMConfig:
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5


class EDM(_ConfiguredRange):
    """EDM process of Karras et al. 2022: alpha = 1 and t = sigma (Table 1)."""

    kind = "ve"
    name = "edm"

    def __init__(self, config: EDMConfig = EDMConfig()):
        self.cfg = config

    def alpha_s(self, t) -> tuple[Tensor, Tensor]:
        sigma = _f64(t)
        return torch.ones_like(sigma), sigma

    def t_of_sigma(self, sigma) -> Tensor:
        return _f64(sigma)

    def noise_input(self, sigma) -> Tensor:
        return 250 * _f64(sigma).log()  # 1000 * c_noise, c_noise = ln(sigma) / 4 (Table 1, Karras et al.)



@dataclass(frozen=True)
class FlowConfig:
    t_min: float = 1e-3
    t_max: float = 0.999


class FlowMatching(Process):
    """Rectified flow / conditional flow matching with the linear path x_t = (1 - t) x0 + t eps,
    t in [0, 1] (Liu et al. 2023, Eq. 1; Lipman et al. 2023, Sec. 4.1 with sigma_min = 0): alpha = 1 - t,
    s = t, so sigma = t / (1 - t) and t = sigma / (1 + sigma). Its velocity dx_t/dt = eps - x0 is the
    "velocity" prediction of `param.Denoiser`. t_max < 1 keeps the sampler's starting sigma finite."""

    kind = "flow"
    name = "flow"

    def __init__(self, config: FlowConfig = FlowConfig()):
        from .errors import UnnoiseError

        if not 0 < config.t_min < config.t_max < 1:
            raise UnnoiseError(f"process flow: need 0 < t_min < t_max < 1, got t_min={config.t_min}, "
                               f"t_max={config.t_max}")
        self.cfg = config

    def alpha_s(self, t) -> tuple[Tensor, Tensor]:
        t = _f64(t)
        return 1 - t, t

    def sigma(self, t) -> Tensor:
        t = _f64(t)
        return t / (1 - t)

    def t_of_sigma(self, sigma) -> Tensor:
        sigma = _f64(sigma)
        return torch.where(torch.isinf(sigma), torch.ones_like(sigma), sigma / (1 + sigma))

    def coefficients(self, sigma) -> tuple[Tensor, Tensor]:
        """(alpha, s) = (1 - t, t) with t = sigma / (1 + sigma); finite at sigma = inf (t = 1)."""
        alpha = 1 / (1 + _f64(sigma))
        return alpha, 1 - alpha

    @property
    def sigma_min(self) -> float:
        return float(self.sigma(self.cfg.t_min))

    @property
    def sigma_max(self) -> float:
        return float(self.sigma(self.cfg.t_max))


PROCESSES = {
    "ddpm": (DiscreteConfig, DiscreteDDPM),
    "vp": (VPConfig, ContinuousVP),
    "ve": (VEConfig, VarianceExploding),
    "edm": (EDMConfig, EDM),
    "flow": (FlowConfig, FlowMatching),
}


def make_process(name: str = "ddpm", **options) -> Process:
    """Build a process from its registry name and config fields."""
    if name not in PROCESSES:
        raise unknown_name("process", name, PROCESSES)
    config_cls, process_cls = PROCESSES[name]
    from .run.fields import build_dataclass

    return process_cls(build_dataclass(config_cls, options, f"process {name}"))


def process_from_config(d: dict) -> Process:
    d = dict(d)
    return make_process(d.pop("name"), **d)
