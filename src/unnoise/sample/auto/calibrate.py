"""Calibrated step grids: choose where a sampler's few steps go by measuring it on the model itself.

Given a denoiser, a sampler and a budget of n steps, draw a small calibration batch of starting noise,
solve its probability-flow ODE accurately (many steps of a high-order solver, checked against half as
many), then search over grids sigma_max = sigma_0 > sigma_1 > ... > sigma_{n-1} > sigma_n = 0 for the one
whose n-step solution is closest to the accurate one. Nothing about the data is assumed: the grid is
fitted to whatever the model's trajectories look like, from noise that is never the user's.

Trajectories that end in a different mode than the reference after a small error are rare but dominate
the RMS (an error there is the distance between modes, and its probability grows only linearly with the
solver's error). A plain random batch sees too few of them, so the batch is stratified: a pool of
`pool_factor * batch` noises is screened with two cheap solves (n and 2n steps), the `hard_fraction` of the
batch whose two solves disagree most is kept as its own stratum, and the rest of the batch is a random
sample of the remaining pool, weighted up to stand for it. The weighted loss is an unbiased estimate of
the RMS over the whole pool with far less variance in the rare-event part.

The grid is a smooth monotone warp of the step index onto log-sigma with a few pieces, so it cannot fit
the quirks of the calibration batch. The search is derivative-free (a compass search over the warp's
softmax parameters, restarted from the best few fixed grids), so it needs nothing but forward calls of
the model: about `restarts * sweeps * 2 * pieces` sampler runs on the calibration batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from ...grids import karras, log_snr_uniform
from .fitted import Trajectory, record_trajectory
from ..noise import SeededNoise

CALIBRATION_SEED = 2**31 - 7  # calibration noise comes from seeds no user run starts at


@dataclass
class Calibration:
    sigmas: Tensor  # the calibrated grid (n + 1 values, last 0)
    error: float  # RMS error of the sampler on the calibration batch with this grid
    start_error: float  # the same for the best starting grid
    reference_error: float  # RMS difference of the reference solution at half its steps (its accuracy)
    evaluations: int  # sampler runs spent


def grid_from_params(theta: Tensor, steps: int, sigma_max: float, sigma_floor: float) -> Tensor:
    """A smooth monotone warp of the step index onto log-sigma: K = len(theta) equal pieces of the index
    range [0, 1] rise by softmax(theta) each (piecewise linear), and step i of n sits at warp(i / n) of
    the way from log sigma_max to log sigma_floor. K stays small whatever n is, so the grid cannot
    fit the quirks of the calibration batch."""
    heights = torch.softmax(theta, 0)
    knots = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(heights, 0)])  # warp at j / K
    u = torch.arange(1, steps, dtype=torch.float64) / steps * len(theta)
    piece = u.floor().long().clamp(max=len(theta) - 1)
    fractions = knots[piece] + (u - piece) * heights[piece]
    log_sigma = math.log(sigma_max) + fractions * (math.log(sigma_floor) - math.log(sigma_max))
    head = torch.tensor([sigma_max], dtype=torch.float64)
    return torch.cat([head, log_sigma.exp(), torch.zeros(1, dtype=torch.float64)])


def params_from_grid(sigmas: Tensor, pieces: int, sigma_floor: float) -> Tensor:
    """Warp parameters whose grid approximates `sigmas` (read off at the piece boundaries)."""
    log_s = sigmas[:-1].log()
    n = len(log_s)
    total = math.log(sigma_floor) - float(log_s[0])
    position = torch.cat([(log_s - log_s[0]) / total, torch.ones(1, dtype=torch.float64)])  # at i / n, i = 0..n
    grid_u = torch.arange(n + 1, dtype=torch.float64) / n
    at_knots = torch.tensor([float(_interp(j / pieces, grid_u, position)) for j in range(pieces + 1)])
    return at_knots.diff().clamp_min(1e-6).log()


def _interp(u: float, xs: Tensor, ys: Tensor) -> float:
    i = int(torch.searchsorted(xs, torch.tensor(u, dtype=torch.float64)).clamp(1, len(xs) - 1))
    w = (u - float(xs[i - 1])) / float(xs[i] - xs[i - 1])
    return float(ys[i - 1]) * (1 - w) + float(ys[i]) * w


def reference_solution(D, x: Tensor, sigma_max: float, sigma_floor: float, solver: Callable,
                       steps: int = 256) -> tuple[Trajectory, float]:
    """An accurate ODE solution from x with `solver` on a log-SNR grid reaching far below the floor, recorded
    at the solver's nodes, and the RMS change of its end point when the step count is halved (an estimate
    of its own error)."""
    low = sigma_floor * 1e-3
    fine = record_trajectory(D, x, log_snr_uniform(steps, low, sigma_max), solver)
    coarse = solver(D, x.clone(), log_snr_uniform(steps // 2, low, sigma_max))
    return fine, _rms(fine.final, coarse)


def _rms(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).pow(2).mean().sqrt())


@dataclass
class CalibrationBatch:
    x: Tensor  # starting noise (batch, *shape)
    weights: Tensor  # per-sample weights, summing to 1
    trajectory: Trajectory  # accurate ODE solutions from x, recorded along the way
    reference_error: float  # their estimated accuracy (RMS change at half the steps)

    @property
    def reference(self) -> Tensor:
        return self.trajectory.final


def calibration_batch(D, shape: Sequence[int], steps: int, sigma_max: float, sigma_min: float, *,
                      reference_solver: Callable, batch: int = 256, pool_factor: int = 8,
                      hard_fraction: float = 0.25, dtype: torch.dtype = torch.float64) -> CalibrationBatch:
    """Stratified calibration noise with its weights and reference solutions (see module docstring)."""
    pool = batch * pool_factor
    x = SeededNoise(range(CALIBRATION_SEED, CALIBRATION_SEED + pool)).initial(shape, sigma_max, dtype)
    weights = torch.full((batch,), 1.0 / batch, dtype=torch.float64)
    with torch.no_grad():
        if pool_factor > 1:
            coarse = reference_solver(D, x.clone(), log_snr_uniform(steps, sigma_min, sigma_max))
            fine = reference_solver(D, x.clone(), log_snr_uniform(2 * steps, sigma_min, sigma_max))
            disagreement = (coarse.double() - fine.double()).pow(2).flatten(1).mean(1)
            order = disagreement.argsort(descending=True)
            hard = max(1, int(batch * hard_fraction))
            generator = torch.Generator().manual_seed(CALIBRATION_SEED)
            rest = order[hard:][torch.randperm(pool - hard, generator=generator)[: batch - hard]]
            x = x[torch.cat([order[:hard], rest])]
            weights = torch.cat([torch.ones(hard, dtype=torch.float64),
                                 torch.full((batch - hard,), (pool - hard) / (batch - hard), dtype=torch.float64)])
            weights = weights / pool
        trajectory, reference_error = reference_solution(D, x, sigma_max, sigma_min, reference_solver)
    return CalibrationBatch(x, weights, trajectory, reference_error)


def calibrate(D, sampler: Callable, steps: int, shape: Sequence[int], sigma_max: float, sigma_min: float, *,
              reference_solver: Callable, batch: int = 256, sweeps: int = 8,
              floor_factor: float = 0.5, extra_starts: Sequence[Tensor] = (), pieces: int = 6, restarts: int = 3,
              dtype: torch.dtype = torch.float64, pool_factor: int = 8,
              prepared: CalibrationBatch | None = None) -> Calibration:
    """Fit a `steps`-step grid for `sampler` on D (see module docstring); `prepared` reuses a batch."""
    sigma_floor = sigma_min * floor_factor
    cal = prepared or calibration_batch(D, shape, steps, sigma_max, sigma_min, reference_solver=reference_solver,
                                        batch=batch, pool_factor=pool_factor, dtype=dtype)
    x, reference_error = cal.x, cal.reference_error
    with torch.no_grad():
        def loss(grid: Tensor) -> float:
            error = sampler(D, x.clone(), grid).double() - cal.reference.double()
            return float((error.pow(2).flatten(1).mean(1) * cal.weights).sum().sqrt())

        starts = [log_snr_uniform(steps, sigma_min, sigma_max), *list(extra_starts)]
        starts += [karras(steps, sigma_min, sigma_max, rho=rho) for rho in (1.0, 2.0, 3.0, 5.0, 7.0)]
        start_losses = [loss(g) for g in starts]
        ranked = sorted(range(len(starts)), key=start_losses.__getitem__)
        grid, final, evaluations = starts[ranked[0]], start_losses[ranked[0]], len(starts)
        pieces = min(pieces, steps)
        for index in ranked[:restarts] if steps > 1 else []:  # compass search from the best few starts
            theta = params_from_grid(starts[index], pieces, sigma_floor)
            theta, value, evaluations = _compass_search(
                lambda t: loss(grid_from_params(t, steps, sigma_max, sigma_floor)), theta, sweeps, evaluations)
            if value < final:
                grid, final = grid_from_params(theta, steps, sigma_max, sigma_floor), value
        return Calibration(grid, final, min(start_losses), reference_error, evaluations)


def _compass_search(f: Callable[[Tensor], float], theta: Tensor, sweeps: int, evaluations: int,
                    step: float = 1.0) -> tuple[Tensor, float, int]:
    """Coordinate-wise pattern search: try +-step on each coordinate, keep improvements, halve the step
    after a sweep without one."""
    best = f(theta)
    evaluations += 1
    for _ in range(sweeps):
        improved = False
        for i in range(len(theta)):
            for direction in (1.0, -1.0):
                trial = theta.clone()
                trial[i] += direction * step
                value = f(trial)
                evaluations += 1
                if value < best:
                    theta, best, improved = trial, value, True
                    break
        if not improved:
            step *= 0.5
    return theta, best, evaluations
