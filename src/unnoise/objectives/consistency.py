"""Consistency distillation and consistency training (Song et al. 2023; improved recipe, Song & Dhariwal 2023).

The student f_theta (sample/consistency.ConsistencyDenoiser: f(x, sigma_min) = x by its output scalings)
is trained so that two points of one probability-flow trajectory at adjacent boundaries
sigma_i < sigma_{i+1} map to the same output:
    loss = lambda(sigma_i) d(f_theta(x_{i+1}, sigma_{i+1}), f_theta-(x_i, sigma_i))      (Eq. 7 / Eq. 10)
- distillation: x_{i+1} = x0 + sigma_{i+1} z and x_i is one Heun step of the teacher's PF-ODE from it
  (EDM Alg. 2 without churn: Euler, then the trapezoidal correction);
- training (no teacher): x_i = x0 + sigma_i z with the same z, the unbiased one-sample estimate.
Boundaries are Karras' rho-grid of N(k) points from sigma_min to sigma_max. The improved recipe
(Song & Dhariwal 2023) is the default for training: N(k) = min(s0 2^floor(k / K'), s1) + 1 with
K' = floor(K / (log2 floor(s1 / s0) + 1)) over K training steps, i drawn with probability proportional to
erf((ln sigma_{i+1} - P_mean) / (sqrt2 P_std)) - erf((ln sigma_i - P_mean) / (sqrt2 P_std)) (lognormal),
lambda = 1 / (sigma_{i+1} - sigma_i), the pseudo-Huber metric d(a, b) = sqrt(|a - b|^2 + c^2) - c (LPIPS
weights cannot be downloaded here), and theta- = stopgrad(theta) (target_ema 0). Distillation keeps an EMA
target network theta- <- mu theta- + (1 - mu) theta (Song et al. 2023, mu = 0.95 at N = 18); this target
network is separate from the trainer's EMA, whose weights are what gets sampled.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from ..errors import UnnoiseError
from ..grids import karras
from ..sample.consistency import ConsistencyDenoiser
from .base import trainable
from .progressive import _per_sample, _to_device

INDEX_DENSITIES = ("lognormal", "uniform")
WEIGHTINGS = ("inverse_gap", "uniform")


def boundaries(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """The N increasing boundaries sigma_1 = sigma_min < ... < sigma_N = sigma_max (float64)."""
    if n < 2:
        raise UnnoiseError(f"consistency models need at least 2 boundaries, got {n}")
    sigmas = karras(n, sigma_min, sigma_max, rho)[:-1].flip(0)
    sigmas[0], sigmas[-1] = sigma_min, sigma_max  # exactly: f(x, sigma_1) = x needs sigma_1 == sigma_min
    return sigmas


def curriculum(step: int, total_steps: int, start: int, end: int) -> int:
    """N(k) of the improved recipe (Song & Dhariwal 2023, Eq. 6): boundaries at training step k of K,
    doubling the s0 intervals at equal stages up to s1 (start == end: a fixed N = start + 1)."""
    if start == end:
        return start + 1
    stages = math.floor(math.log2(math.floor(end / start))) + 1
    stage_length = max(1, total_steps // stages)
    return min(start * 2 ** (step // stage_length), end) + 1


def index_probabilities(sigmas: Tensor, density: str, p_mean: float = -1.1, p_std: float = 2.0) -> Tensor:
    """Probabilities of the N - 1 pairs (sigma_i, sigma_{i+1}): lognormal mass between them, or uniform."""
    if density == "uniform":
        return torch.full((len(sigmas) - 1,), 1.0 / (len(sigmas) - 1), dtype=torch.float64)
    if density != "lognormal":
        raise UnnoiseError(f"model.distill.index_density: unknown {density!r}; valid: {', '.join(INDEX_DENSITIES)}")
    cdf = torch.erf((sigmas.log() - p_mean) / (math.sqrt(2) * p_std))
    mass = cdf[1:] - cdf[:-1]
    return mass / mass.sum()


def pair_weight(sigma_low: Tensor, sigma_high: Tensor, weighting: str) -> Tensor:
    """lambda(sigma_i): 1 / (sigma_{i+1} - sigma_i) (improved recipe) or 1."""
    if weighting == "inverse_gap":
        return 1.0 / (sigma_high - sigma_low)
    if weighting == "uniform":
        return torch.ones_like(sigma_low)
    raise UnnoiseError(f"model.distill.weighting: unknown {weighting!r}; valid: {', '.join(WEIGHTINGS)}")


def pseudo_huber(a: Tensor, b: Tensor, c: float) -> Tensor:
    """sqrt(|a - b|^2 + c^2) - c per sample (Song & Dhariwal 2023, Sec. 3.3)."""
    squared = (a - b).pow(2).flatten(1).sum(1)
    return (squared + c**2).sqrt() - c


def default_huber_c(shape) -> float:
    """c = 0.00054 sqrt(d) for d-dimensional data (Song & Dhariwal 2023, Sec. 3.3)."""
    return 0.00054 * math.sqrt(math.prod(shape))


@torch.no_grad()
def heun_between(teacher, x: Tensor, sigma_high: Tensor, sigma_low: Tensor, cond=None) -> Tensor:
    """One Heun step of the teacher's PF-ODE dx/dsigma = (x - T(x, sigma)) / sigma from sigma_high down to
    sigma_low > 0 (per sample): Euler, then the trapezoidal correction (Alg. 2, Karras et al. 2022)."""
    high, low = _per_sample(sigma_high, x), _per_sample(sigma_low, x)
    slope = (x - teacher(x, sigma_high, cond)) / high
    x_euler = x + (low - high) * slope
    slope_next = (x_euler - teacher(x_euler, sigma_low, cond)) / low
    return x + (low - high) * 0.5 * (slope + slope_next)


class ConsistencyObjective:
    """Consistency distillation (`teacher` given) or training (`teacher` None) of `student`, a
    ConsistencyDenoiser whose `net` is trained; `recipe` holds the run's model.distill values (see
    run/distill.py for their defaults) and `total_steps` the K of the curriculum."""

    def __init__(self, student: ConsistencyDenoiser, teacher, conditions, recipe: dict, total_steps: int,
                 *, cond_dropout: float = 0.0):
        if not isinstance(student, ConsistencyDenoiser):
            raise UnnoiseError("consistency objectives need a ConsistencyDenoiser student (model.distill.method)")
        self.student, self.teacher, self.conditions = student, teacher, conditions
        self.recipe, self.total_steps, self.cond_dropout = dict(recipe), int(total_steps), cond_dropout
        self.model = student.net
        self.mu = float(self.recipe["target_ema"])
        self.target_net = copy.deepcopy(self.model).requires_grad_(False) if self.mu > 0 else None
        self.step = self.target_updates = 0
        self.use_module(self.model)

    def denoiser_for(self, module: nn.Module) -> ConsistencyDenoiser:
        s = self.student
        return ConsistencyDenoiser(module, s.process, s.prediction, s.sigma_data, sigma_min=s.sigma_min)

    def use_module(self, module: nn.Module) -> None:
        self.train_denoiser = self.denoiser_for(module)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return trainable(self.model)

    def boundaries_at(self, step: int) -> Tensor:
        r = self.recipe
        n = curriculum(step, self.total_steps, r["discretization_start"], r["discretization_end"])
        return boundaries(n, self.student.sigma_min, r["sigma_max"], r["rho"])

    @torch.no_grad()
    def update_target(self) -> None:
        """theta- <- mu theta- + (1 - mu) theta, once per optimizer step taken since the last update."""
        if self.target_net is not None and self.target_updates < self.step:
            for target, online in zip(self.target_net.parameters(), self.model.parameters()):
                target.lerp_(online.detach().to(target.device), 1 - self.mu)
            for target, online in zip(self.target_net.buffers(), self.model.buffers()):
                target.copy_(online)
            self.target_updates = self.step  # one update per step: the previous step's parameters

    def draw(self, batch: dict, generator: torch.Generator) -> dict:
        """The boundary pair (sigma_i, sigma_{i+1}) per sample at this step's N(k), the noise z, the conditions."""
        self.update_target()
        x0 = batch["x"]
        sigmas = self.boundaries_at(self.step)
        probabilities = index_probabilities(sigmas, self.recipe["index_density"], self.recipe["p_mean"],
                                            self.recipe["p_std"])
        index = torch.multinomial(probabilities, len(x0), replacement=True, generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        cond = self.conditions.dropout(self.conditions.from_batch(batch), self.cond_dropout, generator)
        return {"x0": x0, "sigma_low": sigmas[index], "sigma_high": sigmas[index + 1], "noise": noise, "cond": cond}

    def pair(self, rows: dict) -> tuple[Tensor, Tensor]:
        """(x_{i+1}, x_i): the noisy point and its neighbour on the same trajectory at sigma_i."""
        x0, noise, cond = rows["x0"], rows["noise"], rows["cond"]
        high, low = rows["sigma_high"].to(x0.device), rows["sigma_low"].to(x0.device)
        x_high = x0 + _per_sample(high, x0) * noise
        if self.teacher is None:
            return x_high, x0 + _per_sample(low, x0) * noise
        _to_device(self.teacher, x0.device)
        return x_high, heun_between(self.teacher, x_high, high, low, cond)

    @torch.no_grad()
    def target(self, x_low: Tensor, sigma_low: Tensor, cond) -> Tensor:
        """f_theta-(x_i, sigma_i): the EMA target network, or the online network without gradient."""
        if self.target_net is None:
            return self.train_denoiser(x_low, sigma_low, cond)
        _to_device(self.target_net, x_low.device)
        return self.denoiser_for(self.target_net)(x_low, sigma_low, cond)

    def loss_of(self, rows: dict) -> Tensor:
        x_high, x_low = self.pair(rows)
        high, low = rows["sigma_high"].to(x_high.device), rows["sigma_low"].to(x_high.device)
        target = self.target(x_low, low, rows["cond"])
        prediction = self.train_denoiser(x_high, high, rows["cond"])
        weight = pair_weight(low, high, self.recipe["weighting"])
        return weight.to(prediction.dtype) * pseudo_huber(prediction, target, self.recipe["huber_c"])

    def loss(self, batch: dict, generator: torch.Generator) -> Tensor:
        return self.loss_of(self.draw(batch, generator))

    def observe(self, rows: dict, losses: Tensor) -> None:
        self.step += 1  # the optimizer step follows; the target catches up at the next draw

    def state(self) -> dict[str, Tensor]:
        """The step count (the curriculum's k) and the target network, for an exact resume."""
        state = {"distill.step": torch.tensor([self.step]), "distill.target_updates": torch.tensor([self.target_updates])}
        if self.target_net is not None:
            state.update({f"distill.target.{k}": v.detach().cpu().clone() for k, v in self.target_net.state_dict().items()})
        return state

    def load_state(self, state: dict[str, Tensor]) -> None:
        self.step = int(state["distill.step"][0])
        self.target_updates = int(state["distill.target_updates"][0])
        if self.target_net is not None:
            prefix = "distill.target."
            self.target_net.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})

    def describe(self, rows: dict) -> str:
        kind = "distillation" if self.teacher is not None else "training"
        return (f"consistency {kind} at step {self.step}, sigma_{{i+1}} in [{float(rows['sigma_high'].min()):.4g}, "
                f"{float(rows['sigma_high'].max()):.4g}]")
