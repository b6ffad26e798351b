"""`auto`'s candidates and their calibration for a budget of model calls (NFE).

`auto` calibrates on the model itself, for the requested budget, on a stratified batch
of trajectories (see calibrate.py), several candidate solvers: predictor-corrector multistep solvers
(order 2 or 3, last step 'denoise' or 'midpoint') on a calibrated grid, and the fitted multistep solver
(fitted.py) whose weights are fitted on the same trajectories, with or, for unconditional sampling, without
its first model call. It keeps the candidate with the lowest calibration error. cache.py keeps the
calibrations (per weights, budget and shape) and is the entry point that ships.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from ...grids import ddpm_sigmas
from ...process import DiscreteDDPM, Process
from .calibrate import Calibration, CalibrationBatch, calibrate, calibration_batch
from .fitted import FittedSteps, fit_steps, fitted_multistep
from ..multistep import multistep
from ..ode import denoise

GRID_CANDIDATES = {
    "pc2": dict(order=2, corrector=True),
    "pc3": dict(order=3, corrector=True),
    "pc2_midpoint": dict(order=2, corrector=True, final="midpoint"),
    "pc3_midpoint": dict(order=3, corrector=True, final="midpoint"),
}
FITTED_CANDIDATES = {"fitted": False, "fitted_start": True}  # name: replaces the first call by a constant
# The constant first step errs a little, and differently for every input: enough to send a trajectory near
# a boundary between modes to the other mode once in thousands, which a calibration batch does not see.
# So it must buy a clear gain: at most this fraction of the best calibration error with every call made.
START_MARGIN = 0.75
SEARCH_UP_TO_NFE = 25  # beyond this the fixed starting grids are already accurate; only pick the best


@dataclass
class AutoChoice:
    """The candidate `auto` kept for one budget: its name, its calibration, and its fitted weights."""
    name: str
    calibration: Calibration
    fitted: FittedSteps | None = None
    candidates: dict[str, float] | None = None  # every candidate's calibration error

    @property
    def sigmas(self) -> Tensor:
        return self.calibration.sigmas

    def solver(self) -> Callable:
        return auto_solver(self.name, self.fitted)


def auto_solver(name: str, fitted: FittedSteps | None = None) -> Callable:
    """The solver of `auto` candidate `name`: its fitted steps when it has them, else its multistep solver."""
    if fitted is not None:
        return functools.partial(fitted_multistep, steps=fitted)
    return functools.partial(multistep, **GRID_CANDIDATES[name])


def calibrate_auto(D, process: Process, nfe: int, shape: Sequence[int], *, batch: int = 1024,
                   sweeps: int = 8, dtype=torch.float64, pieces: int = 8, pool_factor: int = 8,
                   unconditional: bool = True) -> AutoChoice:
    """Calibrate every candidate on one stratified calibration batch and keep the one with the lowest
    calibration error; `unconditional=False` leaves out the candidate whose first call is a constant."""
    reference = functools.partial(multistep, order=3, corrector=True)
    prepared = calibration_batch(D, shape, nfe, process.sigma_max, process.sigma_min, reference_solver=reference,
                                 batch=batch, pool_factor=pool_factor, dtype=dtype)
    options = dict(reference_solver=reference, sweeps=sweeps if nfe <= SEARCH_UP_TO_NFE else 0, dtype=dtype,
                   pieces=pieces, prepared=prepared)
    best, errors = None, {}
    discrete_starts = _discrete_starts(process, nfe)
    for name, options_of in GRID_CANDIDATES.items():
        result = calibrate(D, functools.partial(multistep, **options_of), nfe, shape, process.sigma_max,
                           process.sigma_min, extra_starts=discrete_starts, **options)
        errors[name] = result.error
        if best is None or result.error < best.calibration.error:
            best = AutoChoice(name, result)
    for name, with_start in FITTED_CANDIDATES.items():
        if with_start and not unconditional:
            continue
        start = _mean_first_output(D, prepared, process.sigma_max) if with_start else None
        steps = nfe + 1 if with_start else nfe
        fits: dict[tuple, FittedSteps] = {}  # every grid tried: the search's best is kept without refitting

        def fitted(D, x, sigmas, start=start, fits=fits):
            fit, out = fit_steps(D, x, sigmas, prepared.trajectory.at, prepared.weights, start=start)
            fits[tuple(sigmas.tolist())] = fit
            return out

        result = calibrate(D, fitted, steps, shape, process.sigma_max, process.sigma_min,
                           extra_starts=_discrete_starts(process, steps), **options)
        errors[name] = result.error
        bar = best.calibration.error * (START_MARGIN if with_start else 1.0)
        if result.error < bar:
            best = AutoChoice(name, result, fits[tuple(result.sigmas.tolist())])
    best.candidates = errors
    return best


def _discrete_starts(process: Process, steps: int) -> list[Tensor]:
    """A DDPM chain's own trailing timesteps as an extra starting grid."""
    discrete = isinstance(process, DiscreteDDPM) and steps <= process.steps
    return [ddpm_sigmas(process, steps, "trailing")] if discrete else []


def _mean_first_output(D, cal: CalibrationBatch, sigma_max: float) -> Tensor:
    """The calibration-weighted mean of D(x, sigma_max) over the calibration noise."""
    with torch.no_grad():
        out = denoise(D, cal.x, sigma_max, None).double()
    weights = cal.weights.to(out.device).reshape(-1, *[1] * (out.dim() - 1))
    return (out * weights).sum(0).cpu()
