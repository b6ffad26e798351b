"""Categorical diffusion processes in continuous time t in [0, 1], one token position at a time.

Every position is corrupted independently: q_t(x_t | x_0) = alpha(t) * onehot(x_0) + (1 - alpha(t)) * pi, with
pi the point mass on a [MASK] token (absorbing, Austin et al. 2021 sec. 3.1; Sahoo et al. 2024 eq. 2) or the
uniform distribution over the K tokens (uniform, Austin et al. 2021 eq. 9 in continuous time). alpha(0) = 1
(clean) and alpha(1) = 0 (pure noise) exactly. Times and schedule values are float64.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import UnnoiseError, unknown_name


class LinearSchedule:
    """alpha(t) = 1 - t (Sahoo et al. 2024; Shi et al. 2024 'linear')."""

    name = "linear"

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - t.to(torch.float64)

    def alpha_derivative(self, t: Tensor) -> Tensor:
        return torch.full_like(t, -1.0, dtype=torch.float64)


class CosineSchedule:
    """alpha(t) = 1 - cos(pi/2 (1 - t)) = 1 - sin(pi t / 2) (Shi et al. 2024, 'cosine'), endpoints pinned."""

    name = "cosine"

    def alpha(self, t: Tensor) -> Tensor:
        t = t.to(torch.float64)
        value = 1.0 - torch.sin(0.5 * math.pi * t)
        return torch.where(t >= 1.0, torch.zeros_like(value), torch.where(t <= 0.0, torch.ones_like(value), value))

    def alpha_derivative(self, t: Tensor) -> Tensor:
        return -0.5 * math.pi * torch.cos(0.5 * math.pi * t.to(torch.float64))


SCHEDULES = {"linear": LinearSchedule, "cosine": CosineSchedule}


def make_schedule(name: str):
    if name not in SCHEDULES:
        raise unknown_name("masking schedule", name, SCHEDULES)
    return SCHEDULES[name]()


class CategoricalProcess:
    """Shared parts of the absorbing and uniform processes over `vocab_size` real tokens."""

    kind = ""
    time_conditioned = True  # whether the exact posterior p(x_0 | x_t) depends on t beyond x_t

    def __init__(self, vocab_size: int, schedule: str = "linear"):
        if int(vocab_size) < 2:
            raise UnnoiseError(f"{self.kind} process: vocab_size must be >= 2, got {vocab_size!r}")
        self.vocab_size = int(vocab_size)
        self.schedule = make_schedule(schedule)

    @property
    def input_size(self) -> int:
        """Number of token ids a model reads (K, plus the mask id for the absorbing process)."""
        return self.vocab_size

    def alpha(self, t: Tensor) -> Tensor:
        return self.schedule.alpha(t)

    def describe(self) -> dict:
        return {"process": self.kind, "schedule": self.schedule.name, "vocab_size": self.vocab_size}

    def alpha_ratio(self, s: float, t: float) -> float:
        """alpha_{t|s} = alpha(t) / alpha(s): the probability that a token is untouched between s and t."""
        s, t = torch.tensor(s, dtype=torch.float64), torch.tensor(t, dtype=torch.float64)
        return float(self.alpha(t) / self.alpha(s))

    def marginal_matrix(self, t: float) -> Tensor:
        """q_t(x_t = j | x_0 = i) as an (input_size, input_size) float64 matrix (rows: x_0)."""
        raise NotImplementedError

    def transition_matrix(self, s: float, t: float) -> Tensor:
        """q(x_t = j | x_s = i) for s < t as an (input_size, input_size) float64 matrix."""
        raise NotImplementedError


class AbsorbingProcess(CategoricalProcess):
    """Masked diffusion: each token turns into [MASK] (id K) with probability 1 - alpha(t) and stays there."""

    kind = "absorbing"
    time_conditioned = False  # p(x_0 | x_t) is the data's conditional given the unmasked tokens (Ou et al. 2024)

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    @property
    def input_size(self) -> int:
        return self.vocab_size + 1

    def corrupt(self, x0: Tensor, t: Tensor, uniforms: Tensor) -> Tensor:
        """x_t ~ q_t(. | x_0) for tokens (B, L), times (B,) and uniforms (2, B, L) on [0, 1)."""
        masked = uniforms[0] < (1.0 - self.alpha(t)).unsqueeze(-1)
        return torch.where(masked, torch.full_like(x0, self.mask_id), x0)

    def prior(self, shape, device=None) -> Tensor:
        return torch.full(tuple(shape), self.mask_id, dtype=torch.long, device=device)

    def marginal_matrix(self, t: float) -> Tensor:
        alpha = float(self.alpha(torch.tensor(t, dtype=torch.float64)))
        matrix = torch.eye(self.input_size, dtype=torch.float64) * alpha
        matrix[:, self.mask_id] += 1.0 - alpha
        return matrix

    def transition_matrix(self, s: float, t: float) -> Tensor:
        ratio = self.alpha_ratio(s, t)
        matrix = torch.eye(self.input_size, dtype=torch.float64) * ratio
        matrix[:, self.mask_id] += 1.0 - ratio
        return matrix

    def reverse_probs(self, x0_probs: Tensor, x_t: Tensor, t: Tensor, s: Tensor) -> Tensor:
        """p(x_s | x_t) per position (B, L, K+1) for s < t: a masked token is revealed with probability
        (alpha_s - alpha_t) / (1 - alpha_t) as a draw from p(x_0 | x_t) (Sahoo et al. 2024 eq. 7)."""
        alpha_t, alpha_s = self.alpha(t).view(-1, 1, 1), self.alpha(s).view(-1, 1, 1)
        reveal = (alpha_s - alpha_t) / (1.0 - alpha_t)
        masked = (x_t == self.mask_id).unsqueeze(-1)  # (B, L, 1)
        probs = torch.cat([x0_probs.to(torch.float64) * reveal, (1.0 - reveal).expand_as(x0_probs[..., :1])], -1)
        probs = probs * masked  # an unmasked token keeps its value with probability one:
        return probs.scatter_add_(-1, x_t.unsqueeze(-1), (~masked).to(torch.float64))


class UniformProcess(CategoricalProcess):
    """Uniform-noise diffusion: each token is redrawn uniformly over the K tokens at rate -alpha'/alpha."""

    kind = "uniform"

    def corrupt(self, x0: Tensor, t: Tensor, uniforms: Tensor) -> Tensor:
        """x_t ~ q_t(. | x_0) for tokens (B, L), times (B,) and uniforms (2, B, L) on [0, 1)."""
        redrawn = uniforms[0] < (1.0 - self.alpha(t)).unsqueeze(-1)
        noise = (uniforms[1] * self.vocab_size).long().clamp(max=self.vocab_size - 1)
        return torch.where(redrawn, noise, x0)

    def prior(self, shape, device=None, uniforms: Tensor | None = None) -> Tensor:
        if uniforms is None:
            raise UnnoiseError("uniform process: the prior draw needs uniforms")
        return (uniforms * self.vocab_size).long().clamp(max=self.vocab_size - 1)

    def marginal_matrix(self, t: float) -> Tensor:
        alpha = float(self.alpha(torch.tensor(t, dtype=torch.float64)))
        size = self.vocab_size
        return torch.eye(size, dtype=torch.float64) * alpha + (1.0 - alpha) / size

    def transition_matrix(self, s: float, t: float) -> Tensor:
        ratio = self.alpha_ratio(s, t)
        size = self.vocab_size
        return torch.eye(size, dtype=torch.float64) * ratio + (1.0 - ratio) / size

    def reverse_probs(self, x0_probs: Tensor, x_t: Tensor, t: Tensor, s: Tensor) -> Tensor:
        """p(x_s | x_t) per position (B, L, K) for s < t: sum_c p(c | x_t) q(x_t | x_s) q(x_s | c) / q(x_t | c)
        (Austin et al. 2021 eq. 3 and 4, with the posterior marginal over x_0 in closed form)."""
        size = self.vocab_size
        alpha_t, alpha_s = self.alpha(t).view(-1, 1, 1), self.alpha(s).view(-1, 1, 1)
        current = torch.nn.functional.one_hot(x_t, size).to(torch.float64)  # (B, L, K)
        probs = x0_probs.to(torch.float64)
        weights = probs / (alpha_t * current + (1.0 - alpha_t) / size)  # p(c | x_t) / q_t(x_t | c)
        forward = (alpha_t / alpha_s) * current + (1.0 - alpha_t / alpha_s) / size  # q(x_t | x_s = b)
        reached = alpha_s * weights + (1.0 - alpha_s) / size * weights.sum(-1, keepdim=True)  # sum_c w_c q_s(b|c)
        return forward * reached


PROCESSES = {"absorbing": AbsorbingProcess, "uniform": UniformProcess}


def make_process(kind: str, vocab_size: int, schedule: str = "linear") -> CategoricalProcess:
    """The categorical process `kind` ('absorbing' or 'uniform') over `vocab_size` tokens."""
    if kind not in PROCESSES:
        raise unknown_name("categorical process", kind, PROCESSES)
    return PROCESSES[kind](vocab_size, schedule)
