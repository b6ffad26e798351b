"""Sampling at a budget of model calls (NFE): how many steps each sampler gets, and on which grid."""
from __future__ import annotations

from torch import Tensor

from ..grids import sigma_grid
from ..process import Process

# Samplers that are deterministic functions of the starting noise.
DETERMINISTIC = ("euler", "heun", "ddim")
# Model calls per step, and calls saved on the last step (Heun skips its correction at sigma = 0).
CALLS_PER_STEP = {"heun": 2}
SAVED_ON_LAST = {"heun": 1}


def steps_for_nfe(name: str, nfe: int) -> int:
    """The most steps of sampler `name` whose model calls fit in `nfe`."""
    per_step, saved = CALLS_PER_STEP.get(name, 1), SAVED_ON_LAST.get(name, 0)
    return max(1, (nfe + saved) // per_step)


def budget_grid(name: str, process: Process, nfe: int, grid: str = "karras") -> Tensor:
    return sigma_grid(grid, process, steps_for_nfe(name, nfe))


def run_budget(name: str, D, x: Tensor, *, nfe: int, process: Process, grid: str = "karras") -> Tensor:
    """Run sampler `name` from x (VE coordinates, at process.sigma_max) within `nfe` model calls."""
    from . import get_sampler

    return get_sampler(name)(D, x, budget_grid(name, process, nfe, grid))
