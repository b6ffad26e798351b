"""Goal-conditioned behaviour cloning (the baseline, and the offline agent of policy-guided diffusion).

The policy is Gaussian, pi(a | s, g) = N(mu_theta(s, g), tau^2 I), on the normalised channels of
dataset.py (state s = (x, y, vx, vy), goal g = (x, y), action a in [-1, 1]^2); trained by maximum likelihood
(mean squared error with tau fixed) on hindsight-relabelled windows: the goal of step t is the position at
a later step t + k of the same window, k uniform in 1..L-1-t (Andrychowicz et al. 2017's relabelling).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from .dataset import ACTION, POSITION, TrajectoryScale

POLICY_STD = 0.3  # tau, in normalised action units


class GoalPolicy(nn.Module):
    """mu_theta(s, g): an MLP from state (4) and goal (2) to the action mean (2) in [-1, 1] (tanh)."""

    def __init__(self, hidden: int = 256, depth: int = 3):
        super().__init__()
        layers, width = [], 6
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, 2), nn.Tanh())
        self.std = POLICY_STD

    def forward(self, states: Tensor, goals: Tensor) -> Tensor:
        """Action means (N, 2) for states (N, 4) and goals (N, 2)."""
        return self.net(torch.cat([states, goals], -1))

    def log_prob(self, states: Tensor, actions: Tensor, goals: Tensor) -> Tensor:
        """log N(a; mu(s, g), tau^2 I) per row (N,) for states (N, 4), actions (N, 2), goals (N, 2)."""
        mean = self(states, goals)
        return -0.5 * ((actions - mean) ** 2).sum(-1) / self.std**2 - 2 * math.log(self.std * math.sqrt(2 * math.pi))


class GoalBound:
    """A goal-conditioned policy with one goal per trajectory, in the form PolicyGuided reads:
    log_prob(states (B, 4, L), actions (B, 2, L)) -> (B, L), and std."""

    def __init__(self, policy: GoalPolicy, goals: Tensor):
        self.policy, self.goals, self.std = policy, goals, policy.std

    def log_prob(self, states: Tensor, actions: Tensor) -> Tensor:
        b, _, length = states.shape
        s = states.transpose(1, 2).reshape(b * length, -1)  # (B, 4, L) -> (B L, 4)
        a = actions.transpose(1, 2).reshape(b * length, -1)
        g = self.goals.to(states.dtype)[:, None].expand(b, length, 2).reshape(b * length, 2)
        return self.policy.log_prob(s.float(), a.float(), g.float()).reshape(b, length).to(states.dtype)


def relabelled(windows: Tensor, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """(states (N, 4), actions (N, 2), goals (N, 2)) with hindsight goals from windows (B, 6, L): every step
    but the last of each window, its goal a later position of the same window."""
    b, _, length = windows.shape
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(length - 1).expand(b, -1)  # (B, L - 1)
    offset = (torch.rand(b, length - 1, generator=generator) * (length - 1 - t)).long() + 1  # 1..L-1-t
    rows = torch.arange(b)[:, None]
    steps = windows.transpose(1, 2)  # (B, L, 6)
    states, actions = steps[:, :-1, :ACTION.start], steps[:, :-1, ACTION]
    goals = steps[rows, t + offset, POSITION]
    return states.reshape(-1, 4), actions.reshape(-1, 2), goals.reshape(-1, 2)


def train_policy(windows: Tensor, steps: int = 2000, batch: int = 512, lr: float = 1e-3, seed: int = 0) -> GoalPolicy:
    """A GoalPolicy fitted to hindsight-relabelled windows (B, 6, L) by Adam on the mean squared error."""
    torch.manual_seed(seed)
    states, actions, goals = relabelled(windows, seed)
    policy = GoalPolicy()
    optimiser = torch.optim.Adam(policy.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(len(states), (batch,), generator=generator)
        loss = ((policy(states[index], goals[index]) - actions[index]) ** 2).sum(-1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return policy.eval()


class PolicyController:
    """A GoalPolicy acting in the maze (reset(starts, goals), act(p, v) on (N, 2) arrays, maze units)."""

    def __init__(self, policy: GoalPolicy, scale: TrajectoryScale):
        self.policy, self.scale = policy, scale
        self.goals = None

    def reset(self, starts: np.ndarray, goals: np.ndarray) -> None:
        self.goals = torch.from_numpy(self.scale.normalise_positions(goals)).float()

    @torch.no_grad()
    def act(self, p: np.ndarray, v: np.ndarray) -> np.ndarray:
        from .maze import SPEED_LIMIT

        states = torch.from_numpy(np.concatenate([self.scale.normalise_positions(p), v / SPEED_LIMIT], 1)).float()
        return self.policy(states, self.goals).double().numpy()
