"""`auto` as it ships: a calibration per (weights, budget, shape, conditioning), kept in memory and, for a
run, on disk as RUN/calibration-<nfe>.json, keyed by the SHA-256 of the weights it was made on (a
retrained or resumed run is calibrated again). `auto_sampler` is the one entry point: the pipeline, the
command line and the sampler benchmark all go through it."""
from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from ...errors import UnnoiseError
from ...param import model_dtype
from .budget import AutoChoice, auto_solver, calibrate_auto
from .fitted import FittedSteps

log = logging.getLogger("unnoise.sample")


@dataclass
class AutoSampler:
    """A calibrated `auto`: the candidate kept (`name`), its grid and, for a fitted candidate, its weights."""

    name: str
    sigmas: Tensor
    fitted: FittedSteps | None = None
    error: float | None = None
    start_error: float | None = None
    evaluations: int | None = None
    candidates: dict = field(default_factory=dict)  # every candidate's calibration error (fresh ones only)

    def solver(self) -> Callable:
        """The sampler function `f(D, x, sigmas, *, cond, noise, callback)` to run on `self.sigmas`."""
        return auto_solver(self.name, self.fitted)

    def to_dict(self) -> dict:
        saved = {"solver": self.name, "sigmas": self.sigmas.tolist(), "error": self.error,
                 "start_error": self.start_error, "evaluations": self.evaluations}
        if self.fitted is not None:
            saved["fitted"] = self.fitted.to_dict()
        return saved

    @classmethod
    def from_dict(cls, saved: dict) -> "AutoSampler":
        fitted = FittedSteps.from_dict(saved["fitted"]) if "fitted" in saved else None
        auto_solver(saved["solver"], fitted)  # an unknown solver name fails here, not while sampling
        return cls(saved["solver"], torch.tensor(saved["sigmas"], dtype=torch.float64), fitted,
                   saved.get("error"), saved.get("start_error"), saved.get("evaluations"))

    @classmethod
    def from_choice(cls, choice: AutoChoice) -> "AutoSampler":
        c = choice.calibration
        return cls(choice.name, c.sigmas, choice.fitted, c.error, c.start_error, c.evaluations,
                   dict(choice.candidates or {}))


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


def weights_sha256(denoiser) -> str | None:
    """SHA-256 of the denoiser's parameters and buffers (through any transform), naming which weights a
    calibration was made on; None for a plain function (an exact denoiser)."""
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


def auto_sampler(D, process, nfe: int, shape: Sequence[int], *, conditional: bool = False,
                 cache_dir: Path | None = None, memory: dict | None = None) -> AutoSampler:
    """The `auto` sampler of denoiser D for `nfe` model calls on samples of `shape`: from `memory` (a dict
    its owner keeps, e.g. a Pipeline's), from cache_dir/calibration-<nfe>.json when it was made on these
    weights, else calibrated now (effort by `calibration_effort(shape)`, in D's dtype) and saved there.
    `conditional`: D is sampled with a condition, so the candidate whose first call is a constant is left
    out. A plain-function D (no weights to hash, e.g. an exact denoiser) is calibrated on every call."""
    if nfe < 1:
        raise UnnoiseError(f"auto needs a budget of at least 1 model call, got {nfe}")
    weights = weights_sha256(D)
    key = (weights, int(nfe), tuple(shape), bool(conditional))
    if memory is not None and weights is not None and key in memory:
        return memory[key]
    path = None if cache_dir is None else Path(cache_dir) / f"calibration-{nfe}.json"
    found = _read_cache(path, weights) if weights is not None else None
    if found is None:
        log.info("auto: calibrating a %d-call grid on this model (once%s)", nfe,
                 f"; cached in {path}" if path is not None else "")
        choice = calibrate_auto(D, process, nfe, shape, dtype=model_dtype(D, torch.float64),
                                unconditional=not conditional, **calibration_effort(shape))
        found = AutoSampler.from_choice(choice)
        if path is not None and weights is not None:
            _write_cache(path, {**found.to_dict(), "weights_sha256": weights})
    if memory is not None and weights is not None:
        memory[key] = found
    return found


def _read_cache(path: Path | None, weights: str) -> AutoSampler | None:
    if path is None or not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        if saved.get("weights_sha256") == weights:
            return AutoSampler.from_dict(saved)
        log.info("auto: %s was calibrated on other weights (retrained or resumed run)", path)
    except (ValueError, KeyError, TypeError, AttributeError, UnnoiseError) as exc:  # damaged or foreign
        log.warning("auto: ignoring unreadable calibration cache %s (%s: %s)", path, type(exc).__name__, exc)
    return None


def _write_cache(path: Path, saved: dict) -> None:
    """Write through a temporary file (a crash never leaves half a calibration), holding the run's writer
    lock; a run another process is writing (training) keeps its cache as it is."""
    from ...run.checkpoint import write_json
    from ...run.lock import run_lock

    try:
        with run_lock(path.parent, purpose="calibration", create=False):
            write_json(path, saved)
    except UnnoiseError as exc:
        log.info("auto: calibration not cached (%s)", exc)
