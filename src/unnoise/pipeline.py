"""A trained run, loaded on a device, ready to sample and restore: the one path from a run to samples.

    pipe = Pipeline.load("runs/digits", device="auto")
    x = pipe.sample(SampleRequest(n=16, seed=0, sampler="heun", nfe=35))      # (16, *shape) on the host
    out = pipe.restore(RestoreRequest(y=y, operator=Mask(m), n=8))            # Restoration(samples, ...)

The pipeline owns the loaded denoiser, the run's conditions (and through them the text encoder), and the
calibrations of `auto` (in memory, and on disk in the run directory). The command line, `eval`, the
benchmarks and the trainer's preview grids sample through it; none builds a sampler or a condition alone.

Defaults come from the run's `sample` section: its sampler, its grid (for that sampler) and its budget. A
budget is `nfe` model calls for every sampler, or `steps` grid steps; with neither, the run's sampler
runs its `sample.steps` steps and any other sampler gets the same number of model calls.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from .conditions import conditions_for, named_condition, slice_condition
from .device import cpu, resolve_device
from .errors import UnnoiseError
from .guide import cfg
from .run.config import RunConfig
from .run.text import TextModel
from .sample import generate, sampler_spec
from .sample.plan import SamplingPlan, plan_sampling


@dataclass(frozen=True)
class SampleRequest:
    """What to sample. `n` defaults to the run's sample.n; sample i uses seed `seed + i`. Condition values:
    `label` (an index or class name, or one per sample), `prompt` (a caption); or `cond`, a condition dict
    already built for n samples (training previews). Guidance settings default to the run's. A text run
    (run/text.py) takes `prompt` as a prefix, `infill` (text with '[MASK:k]' spans), `length` and `nfe`."""

    n: int | None = None
    seed: int = 0
    sampler: str | None = None
    nfe: int | None = None
    steps: int | None = None
    grid: str | None = None
    options: dict = field(default_factory=dict)
    label: int | str | Sequence | None = None
    prompt: str | Sequence[str] | None = None
    cond: dict | None = None
    guidance: float | None = None
    guidance_interval: tuple | None = None
    guidance_rescale: float | None = None
    callback: Callable | None = None
    batch_size: int = 250
    length: int | None = None  # text runs: tokens per sample (default: the model's context)
    infill: str | None = None  # text runs: the text to complete, e.g. "To be, or [MASK:8] to be"
    control: object = None  # ControlNet runs: an image (C, H, W) in [0, 1], or {"images": [...], "scales": [...]}
    atoms: int | None = None  # molecule runs: atoms per molecule (default: drawn from the training histogram)
    property: str | dict | None = None  # property-conditional molecule runs: "alpha=80" or {"alpha": 80.0}


@dataclass(frozen=True)
class RestoreRequest:
    """What to restore: the measurement `y` (1 or n rows) under `operator` (a restore.LinearOperator, or
    None for a super-resolution run, whose y is the low-resolution image), `n` samples from seed `seed`."""

    y: Tensor
    operator: object | None = None
    method: str | None = None
    n: int = 8
    seed: int = 0
    steps: int | None = None
    options: object | None = None  # restore.sampling.MethodOptions
    callback: Callable | None = None


@dataclass(frozen=True)
class Restoration:
    samples: Tensor  # (n, *shape) on the host
    method: str
    steps: int


class Pipeline:
    """A denoiser and its run config on a device (see the module docstring)."""

    def __init__(self, denoiser, config: RunConfig, *, device=None, run_dir: Path | None = None):
        self.device = _device_of(denoiser) if device is None else resolve_device(device)
        self.denoiser = denoiser.to(self.device) if hasattr(denoiser, "to") else denoiser
        self.config, self.run_dir = config, None if run_dir is None else Path(run_dir)
        self.conditions = conditions_for(config)
        self.text = self.denoiser if isinstance(self.denoiser, TextModel) else None  # a text run's model
        self.calibrations: dict = {}  # auto's calibrations made or read by this pipeline
        from .run.latent import run_codec

        self.codec = run_codec(config, self.device, self.run_dir)  # a latent run's frozen autoencoder, else identity
        self.shape = tuple(self.codec.latent_shape(tuple(config.data_shape)))  # what the sampler draws

    @classmethod
    def load(cls, run_dir: Path, device="auto", weights: str = "ema") -> "Pipeline":
        """The trained run in `run_dir` (EMA weights by default) on `device` (auto: CUDA when available);
        a diffusers model folder (model_index.json) loads through interop/folder.py."""
        from .interop import is_diffusers_folder
        from .run.load import load_run

        if is_diffusers_folder(run_dir):
            from .interop.folder import diffusers_pipeline

            return diffusers_pipeline(cls, run_dir, device)
        device = resolve_device(device)
        denoiser, config = load_run(run_dir, weights, device)
        return cls(denoiser, config, device=device, run_dir=run_dir)

    @property
    def process(self):
        return self.denoiser.process

    def condition(self, request: SampleRequest, n: int):
        """The condition dict of n samples for the request (the null condition when it names none)."""
        if request.cond is not None:
            return named_condition(request.cond)  # labels (n,) or a text dict: as named parts
        lowres = self.conditions.get("lowres")
        if lowres is not None:
            run = self.run_dir or "RUN"
            raise UnnoiseError(f"{run} is an x{lowres.factor} super-resolution run and needs a low-resolution image: "
                               f"use `unnoise restore {run} --task sr --input IMG` (Pipeline.restore)")
        values = {"label": request.label, "prompt": request.prompt, "control": request.control,
                  "property": request.property}
        return self.conditions.from_request(values, n, self.device)

    def guided(self, request: SampleRequest):
        """The denoiser sampled for this request: with classifier-free guidance for a guidable run (the
        null condition also stands in for a missing one, e.g. while `auto` calibrates)."""
        guidance = (request.guidance, request.guidance_interval, request.guidance_rescale)
        named = any(value is not None for value in (request.label, request.prompt, request.cond, request.control,
                                                    request.property))
        if not named and any(value is not None for value in guidance):
            raise UnnoiseError("guidance options need a condition: pass a class (--class) or a prompt (--prompt)")
        if not self.conditions.guidable:
            return self.denoiser
        if not named:  # unconditional sampling: the null condition, unguided
            return cfg(self.denoiser, 1.0, self.conditions.null)
        s = self.config.sample
        scale = s.guidance if request.guidance is None else request.guidance
        interval = tuple(s.guidance_interval if request.guidance_interval is None else request.guidance_interval)
        rescale = s.guidance_rescale if request.guidance_rescale is None else request.guidance_rescale
        null = self.conditions.null
        if request.control is not None and (request.label is not None or request.prompt is not None):
            from .conditions.control import keeping_control  # ControlNet: the control in both branches

            null = keeping_control(null, self.condition(replace(request, label=None, prompt=None), 1))
        return cfg(self.denoiser, scale, null, interval=interval or None, rescale=rescale)

    def plan(self, request: SampleRequest, denoiser=None) -> SamplingPlan:
        """The sampler function and grid the request runs (auto: calibrated, or read from the cache)."""
        run = self.config.sample
        name = request.sampler or run.sampler
        nfe, steps = request.nfe, request.steps
        if nfe is None and steps is None:
            own = name == run.sampler
            steps, nfe = (run.steps, None) if own else (None, sampler_spec(run.sampler).model_calls(run.steps))
        grid = request.grid
        if grid is None and name == run.sampler and not sampler_spec(name).calibrated:
            grid = run.grid
        return plan_sampling(name, denoiser or self.denoiser, self.process, self.shape, nfe=nfe,
                             steps=steps, grid=grid, options=request.options, conditional=self.conditions.guidable,
                             cache_dir=self.run_dir, memory=self.calibrations)

    @torch.no_grad()
    def sample(self, request: SampleRequest = SampleRequest()) -> Tensor:
        """n samples (n, *data_shape), float32 on the host (a text run: int64 token ids), with per-sample
        seeds: any batch size gives the same samples. A non-finite sample is an error naming the settings."""
        n = self.config.sample.n if request.n is None else request.n
        if not isinstance(n, int) or n < 1:
            raise UnnoiseError(f"n must be an integer >= 1, got {n!r}")
        if request.batch_size < 1:
            raise UnnoiseError(f"batch size must be >= 1, got {request.batch_size}")
        if self.text is not None:  # token ids (n, length) int64; self.text.decode(ids) -> strings
            return self.text.sample(request, n, self.config.sample)
        if request.length is not None or request.infill is not None:
            raise UnnoiseError(f"--{'length' if request.infill is None else 'infill'}: for text runs only")
        from .run.latent import refuse_sampling

        refuse_sampling(self.config, self.run_dir)  # an autoencoder run encodes and decodes only
        cond = self.condition(request, n)
        from .run.molecules import molecule_generator  # molecules: atom counts, zero-CoM noise, atom masks

        if request.atoms is not None and self.config.modality != "molecule":
            raise UnnoiseError("--atoms: for molecule runs only")
        draw = molecule_generator(self.config, request) if self.config.modality == "molecule" else generate
        denoiser = self.guided(request)
        plan = self.plan(request, denoiser)
        chunks = []
        for start in range(0, n, request.batch_size):
            seeds = range(request.seed + start, request.seed + min(n, start + request.batch_size))
            chunk_cond = slice_condition(cond, slice(start, start + len(seeds)))
            z = draw(denoiser, self.shape, plan.sigmas, plan.function, seeds=seeds, cond=chunk_cond,
                         callback=request.callback, device=self.device)
            chunks.append(self.codec.decode(z).float())  # a latent run's samples decoded to data
        x = torch.cat(chunks).to(cpu())
        if not bool(torch.isfinite(x).all()):
            raise UnnoiseError(f"sampling produced non-finite values with {self.describe(request, plan)}; "
                               "try a smaller guidance scale or another sampler")
        return x

    def describe(self, request: SampleRequest, plan: SamplingPlan) -> str:
        """The settings of a sampling run, as command-line flags."""
        s = self.config.sample
        parts = [f"--sampler {plan.name}", f"--nfe {plan.nfe}", f"--steps {plan.steps}"]
        if self.conditions.guidable:
            parts.append(f"--guidance {s.guidance if request.guidance is None else request.guidance:g}")
        parts += [f"--{key} {value}" for key, value in request.options.items()]
        return " ".join(parts)

    def restore(self, request: RestoreRequest) -> Restoration:
        """n restorations of the measurement (see restore.sampling.posterior_samples for the methods): the
        default method is sr3 for a super-resolution run, dps for a noisy measurement, else ddnm."""
        from .grids import sigma_grid
        from .restore.sampling import MethodOptions, posterior_samples
        if self.codec.kind != "identity":  # a latent run: inpainting through the codec (run/latent.py)
            from .run.latent import latent_restore

            return Restoration(*latent_restore(self, request, self.guided(SampleRequest())))
        if request.n < 1:
            raise UnnoiseError(f"n must be >= 1, got {request.n}")
        lowres = self.conditions.get("lowres")
        noisy = request.operator is not None and request.operator.noise_std > 0
        method = request.method or ("sr3" if lowres else "dps" if noisy else "ddnm")
        steps = request.steps or (self.config.sample.steps if method == "sr3" else 100)
        sigmas = sigma_grid(self.config.sample.grid, self.process, steps)
        y = request.y.to(self.device)
        cond = self.conditions.from_request({"lowres": y}, request.n, self.device) if lowres and method == "sr3" else None
        samples = posterior_samples(self.denoiser, request.operator, y, self.config.data_shape, sigmas,
                                    method=method, seeds=range(request.seed, request.seed + request.n),
                                    sr_scale=lowres.factor if lowres else 0, cond=cond,
                                    options=request.options or MethodOptions(), callback=request.callback,
                                    device=self.device)
        samples = samples.float().to(cpu())
        if not bool(torch.isfinite(samples).all()):
            raise UnnoiseError(f"restoration produced non-finite values (method {method}, {steps} steps)")
        return Restoration(samples, method, steps)


    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Data (B, *data_shape) -> the run's diffusion space (a latent run's scaled latents), on the host."""
        return self.codec.encode(x.to(self.device)).float().to(cpu())

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Diffusion-space tensors -> data, on the host."""
        return self.codec.decode(z.to(self.device)).float().to(cpu())


def _device_of(denoiser) -> torch.device:
    parameters = getattr(denoiser, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    return cpu() if first is None else first.device


def sample_run(denoiser, config: RunConfig, *, n: int, seed: int = 0, cond=None, **request) -> Tensor:
    """Samples of an in-memory denoiser (a training preview, a test): Pipeline(denoiser, config).sample
    with a SampleRequest of the other keywords (sampler, nfe, steps, grid, options, guidance, ...)."""
    return Pipeline(denoiser, config).sample(SampleRequest(n=n, seed=seed, cond=cond, **request))

