"""The `unnoise sample` command: load a run, sample with per-sample seeds, write a grid and a GIF."""
from __future__ import annotations

from pathlib import Path

import torch

from ..conditions import conditions_for
from ..errors import UnnoiseError, unknown_name
from ..io import check_samples_path, check_trajectory_path, write_samples, write_trajectory
from ..run.build import load_run, require_unconditioned_input
DEFAULT_SAMPLER = "auto"  # replaced by the run's sampler in the pipeline rewrite
from ..pipeline import SAMPLER_NAMES, SAMPLER_OPTIONS, sample_run


def _sampler_options(sampler: str, eta, churn) -> dict:
    given = {k: v for k, v in {"eta": eta, "churn": churn}.items() if v is not None}
    allowed = SAMPLER_OPTIONS.get(sampler, ())
    for key in given:
        if key not in allowed:
            raise UnnoiseError(f"--{key} does not apply to sampler {sampler!r}")
    return given


def class_index(label, config) -> int:
    """A --class value as a label index: an index 0..K-1, or one of the run's class names (e.g. C4)."""
    names = list(config.class_names)
    if str(label) in names:
        return names.index(str(label))
    try:
        index = int(label)
    except ValueError:
        index = -1
    if not 0 <= index < config.num_classes:
        valid = ", ".join(names) if names else f"0..{config.num_classes - 1}"
        raise UnnoiseError(f"--class {label}: valid classes are {valid}")
    return index


def sample_to_files(run_dir: Path, *, n: int, seed: int, out: Path, gif: Path | None = None, sampler=None,
                    steps=None, grid=None, eta=None, churn=None, class_label=None, weights="ema",
                    save_tensor: Path | None = None, guidance=None, guidance_interval=None,
                    guidance_rescale=None, prompt: str | None = None) -> torch.Tensor:
    """Sample a run and write the grid (and optional trajectory GIF / raw tensor); returns the samples."""
    denoiser, config = load_run(run_dir, weights)
    require_unconditioned_input(config, run_dir)
    sampler = sampler or DEFAULT_SAMPLER
    if sampler not in SAMPLER_NAMES:
        raise unknown_name("sampler", sampler, SAMPLER_NAMES)
    if sampler == "auto" and grid is not None:
        raise UnnoiseError("--grid does not apply to sampler 'auto' (it calibrates its own grid); "
                           "name a sampler with --sampler to use a fixed grid")
    options = _sampler_options(sampler, eta, churn)
    check_samples_path(config.spec, out)  # before sampling, not after
    if gif is not None:
        check_trajectory_path(config.spec, gif)
    cond, conditions = None, conditions_for(config)
    if prompt is not None:
        if "caption" not in conditions:
            raise UnnoiseError(f"--prompt: run {run_dir} is not text-conditional")
        cond = conditions.from_request({"prompt": prompt}, n)
    elif class_label is not None:
        if "label" not in conditions:
            raise UnnoiseError(f"--class: run {run_dir} is not class-conditional")
        cond = conditions.from_request({"label": class_index(class_label, config)}, n)
    elif guidance is not None or guidance_interval is not None or guidance_rescale is not None:
        raise UnnoiseError("--guidance options need a condition: pass --class (or --prompt for text runs)")
    frames = []
    callback = (lambda i, sigma, x, x0: frames.append(x0.clone())) if gif is not None else None
    x = sample_run(denoiser, config, n=n, seed=seed, sampler=sampler, steps=steps, grid=grid, options=options,
                   cond=cond, callback=callback, batch_size=n if gif is not None else 250, cache_dir=run_dir,
                   guidance=guidance, guidance_interval=guidance_interval, guidance_rescale=guidance_rescale)
    write_samples(x, config.spec, out)  # audio .wav: exactly OUT for --n 1, OUT-000.wav, ... for more
    if Path(out).suffix.lower() == ".wav":
        write_samples(x, config.spec, Path(out).with_suffix(".png"))  # and their spectrograms beside them
    if gif is not None:
        write_trajectory(frames + [x], config.spec, gif)
    if save_tensor is not None:
        from safetensors.torch import save_file

        save_file({"samples": x.contiguous()}, str(save_tensor))
    return x


def sample_command(args) -> None:
    if args.n < 1:
        raise UnnoiseError(f"--n must be >= 1, got {args.n}")
    sample_to_files(args.run_dir, n=args.n, seed=args.seed, out=args.out, gif=args.gif, sampler=args.sampler,
                    steps=args.steps, grid=args.grid, eta=args.eta, churn=args.churn,
                    class_label=args.class_label, weights=args.weights, save_tensor=args.save_tensor,
                    guidance=args.guidance, guidance_interval=args.guidance_interval,
                    guidance_rescale=args.guidance_rescale, prompt=args.prompt)
    print(f"wrote {args.n} samples to {args.out}" + (f" and the trajectory to {args.gif}" if args.gif else ""))
