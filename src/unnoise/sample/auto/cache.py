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


# One model call on the full search's batch may cost this much: 64 samples of a 4-MFLOP model (the digits
# demo's MLP is 4.9 MFLOPs per sample and calibrates 10 calls in about 30 s on 2 cores).
FULL_SEARCH_CALL_FLOPS = 64 * 2**22
FULL_SEARCH_BATCH = (64, 1024)  # the full search's batch, smallest and largest


def calibration_effort(shape, flops_per_sample: int | None = None) -> dict:
    """How hard `auto` calibrates for samples of this shape on a model costing `flops_per_sample` per call.
    Small samples (points, 8x8 digits) get the full grid search on a batch of 64 trajectories, or up to 1,024
    when the model is cheap enough that the larger batch costs no more than 64 trajectories of a 4-MFLOP
    model (rare mode flips, which dominate the error at 5 to 10 calls, need the larger batch to be seen). Larger
    samples come with networks that cost far more per call, so the batch shrinks and, beyond 1,024 values
    per sample, the search keeps to choosing the solver and the best of the fixed starting grids by their
    measured error (28 sampler runs on 16 trajectories, against about 800 runs for the full search).
    Depends on the shape and the model's FLOP count only, so it is reproducible."""
    size = math.prod(shape)
    if size <= 256:
        low, high = FULL_SEARCH_BATCH
        affordable = FULL_SEARCH_CALL_FLOPS // int(flops_per_sample) if flops_per_sample else low  # 0: none counted
        batch = max(low, min(high, 1 << max(int(affordable).bit_length() - 1, 0)))  # a power of two
        return dict(batch=batch, sweeps=4, pool_factor=8)
    if size <= 1024:
        return dict(batch=32, sweeps=1, pool_factor=4)
    return dict(batch=16, sweeps=0, pool_factor=2)


def flops_per_sample(D, shape: Sequence[int], process, dtype: torch.dtype) -> int:
    """Floating-point operations of one call of D on one sample at sigma_max (matrix products, convolutions
    and attention, as torch.utils.flop_counter counts them; elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ..noise import SeededNoise
    from .calibrate import CALIBRATION_SEED

    x = SeededNoise([CALIBRATION_SEED]).initial(shape, process.sigma_max, dtype)
    sigma = torch.full((1,), process.sigma_max, dtype=dtype, device=x.device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        D(x, sigma, None)
    return int(counter.get_total_flops())


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
    weights, else calibrated now (effort by `calibration_effort` of the shape and D's FLOPs, in D's dtype)
    and saved there.
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
        dtype = model_dtype(D, torch.float64)
        effort = calibration_effort(shape, flops_per_sample(D, shape, process, dtype))
        choice = calibrate_auto(D, process, nfe, shape, dtype=dtype, unconditional=not conditional, **effort)
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
