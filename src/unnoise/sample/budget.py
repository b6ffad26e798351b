"""Sampling at a budget of model calls (NFE): how many steps each sampler gets, and on which grid.

`auto` is the default: a predictor-corrector multistep solver whose step grid is calibrated on the
model itself for the requested budget, on a stratified batch of trajectories (see calibrate.py); of the
candidates (order 2 or 3, last step 'denoise' or 'midpoint') it keeps the one that calibrates best.
The calibration is done once per (denoiser, budget, shape) and cached for as long as the denoiser lives.
"""
from __future__ import annotations

import functools
import weakref
from typing import Sequence

import torch
from torch import Tensor

from ..grids import ddpm_sigmas, sigma_grid
from ..process import DiscreteDDPM, Process
from .calibrate import Calibration, calibrate, calibration_batch
from .multistep import multistep

# Samplers that are deterministic functions of the starting noise.
DETERMINISTIC = ("euler", "heun", "ddim", "dpmpp_2m", "dpmpp_3m", "pc_multistep", "auto")
DEFAULT_SAMPLER = "auto"
# Model calls per step, and calls saved on the last step (Heun skips its correction at sigma = 0).
CALLS_PER_STEP = {"heun": 2}
SAVED_ON_LAST = {"heun": 1}
# The fixed grid each sampler uses when not calibrated.
DEFAULT_GRID = {"dpmpp_2m": "log_snr", "dpmpp_3m": "log_snr", "pc_multistep": "log_snr"}

AUTO_CANDIDATES = {
    "pc2": dict(order=2, corrector=True),
    "pc3": dict(order=3, corrector=True),
    "pc2_midpoint": dict(order=2, corrector=True, final="midpoint"),
    "pc3_midpoint": dict(order=3, corrector=True, final="midpoint"),
}
SEARCH_UP_TO_NFE = 25  # beyond this the fixed starting grids are already accurate; only pick the best
_calibrations: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # D -> {(nfe, shape): (name, result)}


def steps_for_nfe(name: str, nfe: int) -> int:
    """The most steps of sampler `name` whose model calls fit in `nfe`."""
    per_step, saved = CALLS_PER_STEP.get(name, 1), SAVED_ON_LAST.get(name, 0)
    return max(1, (nfe + saved) // per_step)


def budget_grid(name: str, process: Process, nfe: int, grid: str | None = None) -> Tensor:
    return sigma_grid(grid or DEFAULT_GRID.get(name, "karras"), process, steps_for_nfe(name, nfe))


def auto_solver(name: str) -> functools.partial:
    """The multistep solver of `auto` candidate `name`."""
    return functools.partial(multistep, **AUTO_CANDIDATES[name])


def calibrate_auto(D, process: Process, nfe: int, shape: Sequence[int], *, batch: int = 1024,
                   sweeps: int = 8, dtype=torch.float64, pieces: int = 8,
                   pool_factor: int = 8) -> tuple[str, Calibration]:
    """Calibrate a grid for each candidate solver (orders 2 and 3, last step 'denoise' or 'midpoint') on
    one stratified calibration batch, and keep the one with the lowest calibration error."""
    discrete = isinstance(process, DiscreteDDPM) and nfe <= process.steps
    extra = [ddpm_sigmas(process, nfe, "trailing")] if discrete else []
    reference = functools.partial(multistep, order=3, corrector=True)
    prepared = calibration_batch(D, shape, nfe, process.sigma_max, process.sigma_min, reference_solver=reference,
                                 batch=batch, pool_factor=pool_factor, dtype=dtype)
    best = None
    for name in AUTO_CANDIDATES:
        result = calibrate(D, auto_solver(name), nfe, shape, process.sigma_max, process.sigma_min,
                           reference_solver=reference, sweeps=sweeps if nfe <= SEARCH_UP_TO_NFE else 0,
                           extra_starts=extra, dtype=dtype, pieces=pieces, prepared=prepared)
        if best is None or result.error < best[1].error:
            best = (name, result)
    return best


def prepare_budget(name: str, D, *, nfe: int, process: Process, shape: Sequence[int], **options) -> None:
    """Run (and cache) whatever a sampler needs before sampling at this budget: `auto`'s calibration."""
    if name == "auto":
        cache = _calibrations.setdefault(D, {})
        if (nfe, tuple(shape)) not in cache:
            cache[(nfe, tuple(shape))] = calibrate_auto(D, process, nfe, shape, **options)


def run_budget(name: str, D, x: Tensor, *, nfe: int, process: Process, grid: str | None = None) -> Tensor:
    """Run sampler `name` from x (VE coordinates, at process.sigma_max) within `nfe` model calls."""
    if name == "auto":
        prepare_budget(name, D, nfe=nfe, process=process, shape=tuple(x.shape[1:]))
        solver_name, result = _calibrations[D][(nfe, tuple(x.shape[1:]))]
        return auto_solver(solver_name)(D, x, result.sigmas)
    from . import get_sampler

    return get_sampler(name)(D, x, budget_grid(name, process, nfe, grid))
