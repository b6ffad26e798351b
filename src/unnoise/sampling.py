"""Sampling a trained run: pick the grid, seed every sample, batch the work."""
from __future__ import annotations

import torch
from torch import Tensor

from .grids import sigma_grid
from .sample import generate, get_sampler
from .train.config import RunConfig

# Options each sampler accepts from the command line (`--eta`, `--churn`).
SAMPLER_OPTIONS = {"ddim": ("eta",), "heun": ("churn",)}


def grid_for(denoiser, config: RunConfig, steps: int | None = None, grid: str | None = None) -> Tensor:
    """The sigma grid for sampling `denoiser` with the run's (or the given) grid and step count."""
    return sigma_grid(grid or config.sample.grid, denoiser.process, steps or config.sample.steps)


@torch.no_grad()
def sample_run(denoiser, config: RunConfig, *, n: int, seed: int = 0, sampler: str | None = None,
               steps: int | None = None, grid: str | None = None, options: dict | None = None,
               cond: Tensor | None = None, callback=None, batch_size: int = 250) -> Tensor:
    """n samples with per-sample seeds seed, seed+1, ...: any batch size gives the same samples."""
    fn = get_sampler(sampler or config.sample.sampler, **(options or {}))
    sigmas = grid_for(denoiser, config, steps, grid)
    chunks = []
    for start in range(0, n, batch_size):
        seeds = range(seed + start, seed + min(n, start + batch_size))
        chunk_cond = None if cond is None else cond[start:start + len(seeds)]
        chunks.append(generate(denoiser, config.data_shape, sigmas, fn, seeds=seeds, cond=chunk_cond,
                               callback=callback))
    return torch.cat(chunks).float()
