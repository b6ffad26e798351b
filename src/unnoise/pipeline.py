"""Sampling a trained run: pick the grid, seed every sample, batch the work."""
from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import torch
from torch import Tensor

from .conditions import conditions_for, named_condition, slice_condition
from .grids import sigma_grid
from .guide import cfg
from .sample import SAMPLERS, generate, get_sampler
from .sample.auto.budget import auto_solver, calibrate_auto
from .sample.auto.fitted import FittedSteps
from .run.checkpoint import write_json
from .run.config import RunConfig

# Options each sampler accepts from the command line (`--eta`, `--churn`).
SAMPLER_OPTIONS = {"ddim": ("eta",), "heun": ("churn",), "euler_ancestral": ("eta",)}
SAMPLER_NAMES = sorted([*SAMPLERS, "auto"])
log = logging.getLogger("unnoise.sample")


def calibration_effort(shape) -> dict:
    """How hard `auto` calibrates for samples of this shape. Small samples (points, 8x8 digits) get the
    full grid search; larger ones come with networks that cost far more per call, so the batch shrinks
    and, beyond 1,024 values per sample, the search keeps to choosing the solver and the best of the
    fixed starting grids by their measured error (28 sampler runs on 16 trajectories, against about
    800 runs on 64 for the full search). Depends on the shape only, so it is reproducible."""
    size = math.prod(shape)
    if size <= 256:
        return dict(batch=64, sweeps=4, pool_factor=8)
    if size <= 1024:
        return dict(batch=32, sweeps=1, pool_factor=4)
    return dict(batch=16, sweeps=0, pool_factor=2)


def auto_sampler(denoiser, config: RunConfig, steps: int, cache_dir: Path | None = None):
    """The `auto` sampler for a run: the solver and grid calibrated on the run's own model for `steps` model
    calls, cached in cache_dir/calibration-<steps>.json so the calibration runs once per budget."""
    path = None if cache_dir is None else Path(cache_dir) / f"calibration-{steps}.json"
    weights = weights_sha256(denoiser)
    if path is not None and path.is_file():
        try:
            saved = json.loads(path.read_text())
            if saved.get("weights_sha256") == weights:
                return _saved_auto(saved)
            log.info("auto: %s was calibrated on other weights (retrained or resumed run)", path)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # damaged or foreign: calibrate again
            log.warning("auto: ignoring unreadable calibration cache %s (%s: %s)", path, type(exc).__name__, exc)
    log.info("auto: calibrating a %d-step grid on this model (once%s)", steps,
             f"; cached in {path}" if path is not None else "")
    conditional = conditions_for(config).guidable
    choice = calibrate_auto(denoiser, denoiser.process, steps, config.data_shape, dtype=torch.float32,
                            unconditional=not conditional, **calibration_effort(config.data_shape))
    result = choice.calibration
    saved = {"solver": choice.name, "sigmas": result.sigmas.tolist(), "error": result.error,
             "start_error": result.start_error, "evaluations": result.evaluations, "weights_sha256": weights}
    if choice.fitted is not None:
        saved["fitted"] = choice.fitted.to_dict()
    if path is not None:
        write_json(path, saved)  # through a temporary file: a crash never leaves half a calibration
    return _saved_auto(saved)


def weights_sha256(denoiser) -> str | None:
    """SHA-256 of the denoiser's parameters and buffers (through any guidance wrapper), naming which
    weights a calibration was made on; None for a plain function."""
    model = denoiser
    while not hasattr(model, "state_dict") and hasattr(model, "D"):
        model = model.D
    if not hasattr(model, "state_dict"):
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _saved_auto(saved: dict):
    """(solver, grid) from a saved calibration."""
    fitted = FittedSteps.from_dict(saved["fitted"]) if "fitted" in saved else None
    return auto_solver(saved["solver"], fitted), torch.tensor(saved["sigmas"], dtype=torch.float64)


def guided(denoiser, config: RunConfig, scale=None, interval=None, rescale=None):
    """The run's denoiser with classifier-free guidance (the sample section's settings unless given).
    The null condition is the null class label, `config.num_classes`, or the empty caption for text."""
    s = config.sample
    scale = s.guidance if scale is None else scale
    interval = tuple(s.guidance_interval if interval is None else interval) or None
    rescale = s.guidance_rescale if rescale is None else rescale
    conditions = conditions_for(config)
    if scale == 1.0 and not rescale and "caption" not in conditions:
        return denoiser  # (a text network always needs a condition: the wrapper supplies the empty caption)
    return cfg(denoiser, scale, conditions.null, interval=interval, rescale=rescale)


def grid_for(denoiser, config: RunConfig, steps: int | None = None, grid: str | None = None) -> Tensor:
    """The sigma grid for sampling `denoiser` with the run's (or the given) grid and step count."""
    return sigma_grid(grid or config.sample.grid, denoiser.process, steps or config.sample.steps)


@torch.no_grad()
def sample_run(denoiser, config: RunConfig, *, n: int, seed: int = 0, sampler: str | None = None,
               steps: int | None = None, grid: str | None = None, options: dict | None = None,
               cond: Tensor | None = None, callback=None, batch_size: int = 250,
               cache_dir: Path | None = None, guidance: float | None = None,
               guidance_interval: tuple | None = None, guidance_rescale: float | None = None) -> Tensor:
    """n samples with per-sample seeds seed, seed+1, ...: any batch size gives the same samples.
    With `cond`, classifier-free guidance at `guidance` (default: the run's sample.guidance)."""
    name = sampler or config.sample.sampler
    if cond is not None:
        cond = named_condition(cond)  # labels (n,) or a text dict: as named parts
        denoiser = guided(denoiser, config, guidance, guidance_interval, guidance_rescale)
    if name == "auto":
        fn, sigmas = auto_sampler(denoiser, config, steps or config.sample.steps, cache_dir)
    else:
        fn = get_sampler(name, **(options or {}))
        sigmas = grid_for(denoiser, config, steps, grid)
    chunks = []
    for start in range(0, n, batch_size):
        seeds = range(seed + start, seed + min(n, start + batch_size))
        chunk_cond = slice_condition(cond, slice(start, start + len(seeds)))
        chunks.append(generate(denoiser, config.data_shape, sigmas, fn, seeds=seeds, cond=chunk_cond,
                               callback=callback))
    return torch.cat(chunks).float()
