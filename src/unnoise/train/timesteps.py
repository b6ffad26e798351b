"""Importance sampling of the discrete training step t by a running history of its loss.

Nichol & Dhariwal 2021 (Sec. 3.3, Eq. 18): keep the last `history` values of L_t, the training loss at
step t, for every t (for the hybrid loss the whole per-step loss, as their code does: recording its VLB
term alone measured worse, 4.41 against 4.17 bits/dim in benchmarks/likelihood.py); once every
t has a full history, draw t with p_t proportional to sqrt(E[L_t^2]) (mixed with a little of the uniform
distribution so no step starves) and weight its loss by 1 / (T p_t), which keeps the objective's
expectation that of uniform sampling. Until then t is uniform with weight 1.
"""
from __future__ import annotations

import torch
from torch import Tensor

UNIFORM_SHARE = 0.001


class LossAwareTimesteps:
    def __init__(self, steps: int, history: int = 10):
        self.steps = steps
        self.losses = torch.zeros(steps, history, dtype=torch.float64)  # ring buffer per t
        self.counts = torch.zeros(steps, dtype=torch.long)

    def probabilities(self) -> Tensor:
        if bool((self.counts < self.losses.shape[1]).any()):
            return torch.full((self.steps,), 1.0 / self.steps, dtype=torch.float64)
        p = self.losses.pow(2).mean(1).sqrt()
        p = p / p.sum()
        return p * (1 - UNIFORM_SHARE) + UNIFORM_SHARE / self.steps

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(integer steps t (n,) as float64, loss weights 1 / (T p_t))."""
        p = self.probabilities()
        t = torch.multinomial(p, n, replacement=True, generator=generator)
        return t.double(), 1.0 / (self.steps * p[t])

    def update(self, t: Tensor, losses: Tensor) -> None:
        """Record per-sample (unweighted) losses at steps t."""
        for step, loss in zip(t.long().tolist(), losses.detach().double().tolist()):
            slot = int(self.counts[step]) % self.losses.shape[1]
            self.losses[step, slot] = loss
            self.counts[step] += 1

    def state(self) -> dict[str, Tensor]:
        return {"timestep_losses": self.losses.clone(), "timestep_counts": self.counts.clone()}

    def load(self, state: dict[str, Tensor]) -> None:
        self.losses.copy_(state["timestep_losses"])
        self.counts.copy_(state["timestep_counts"])
