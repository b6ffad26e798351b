"""From a sampler name and a budget to what runs: the sampler function and its sigma grid.

One meaning of budget: `nfe` is the number of model calls for every sampler (a step of Heun costs two,
minus one on its last step; `auto` is calibrated for exactly `nfe` calls). `steps` is the number of grid
steps of a fixed sampler; for `auto`, whose solvers make one call per step, steps and calls agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from torch import Tensor

from ..errors import UnnoiseError
from ..grids import sigma_grid
from .registry import sampler_spec


@dataclass(frozen=True)
class SamplingPlan:
    """What runs: `function(D, x, sigmas, ...)` on `sigmas`; `name` the sampler; `nfe` its model calls;
    `choice` the candidate `auto` kept (None for fixed samplers)."""

    name: str
    function: Callable
    sigmas: Tensor
    nfe: int
    choice: str | None = None

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1


def plan_sampling(name: str, D, process, shape: Sequence[int], *, nfe: int | None = None,
                  steps: int | None = None, grid: str | None = None, options: dict | None = None,
                  conditional: bool = False, cache_dir: Path | None = None,
                  memory: dict | None = None) -> SamplingPlan:
    """The sampler `name` for a budget of `nfe` model calls or of `steps` grid steps (one of them), on
    `grid` (default: the sampler's registered grid). `auto` is calibrated on D (or read from its cache;
    see sample/auto/cache.py); the others are the registered functions with `options` bound."""
    spec = sampler_spec(name)
    options = dict(options or {})
    if nfe is not None and steps is not None:
        raise UnnoiseError(f"give a budget in model calls (nfe={nfe}) or in grid steps (steps={steps}), not both")
    for what, value in (("nfe", nfe), ("steps", steps)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise UnnoiseError(f"{what} must be an integer >= 1, got {value!r}")
    if nfe is None and steps is None:
        raise UnnoiseError("a sampling budget is needed: nfe (model calls) or steps (grid steps)")
    if spec.calibrated:
        if grid is not None:
            raise UnnoiseError(f"grid {grid!r} does not apply to sampler {name!r} (it calibrates its own grid); "
                               "name another sampler to use a fixed grid")
        spec.check_options(options)
        from .auto.cache import auto_sampler

        auto = auto_sampler(D, process, nfe or steps, shape, conditional=conditional, cache_dir=cache_dir,
                            memory=memory)
        return SamplingPlan(name, auto.solver(), auto.sigmas, nfe or steps, auto.name)
    function = spec.bind(**options)
    steps = spec.steps_for_nfe(nfe, options) if steps is None else steps
    sigmas = sigma_grid(grid or spec.grid, process, steps)
    return SamplingPlan(name, function, sigmas, spec.model_calls(steps, options))


def run_budget(name: str, D, x: Tensor, *, nfe: int, process, grid: str | None = None,
               conditional: bool = False) -> Tensor:
    """Run sampler `name` from x (VE coordinates, at process.sigma_max) within `nfe` model calls."""
    plan = plan_sampling(name, D, process, tuple(x.shape[1:]), nfe=nfe, grid=grid, conditional=conditional)
    return plan.function(D, x, plan.sigmas)
