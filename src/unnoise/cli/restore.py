"""The `unnoise restore` command: read a damaged image (and mask), restore it K times with a trained run,
write the samples, their mean and per-pixel standard deviation, and a summary.

Tasks and their inputs, for a run trained on C x H x W images:
  inpaint   --input: H x W; --mask: H x W, black (0) = keep the pixel, white (255) = fill it in
  sr        --input: H/scale x W/scale; a super-resolution run (SR3) or any unconditional run (zero-shot)
  deblur    --input: H x W, blurred by a Gaussian of --blur-sigma pixels (circular, as GaussianBlur)
  colorize  --input: H x W grayscale; needs an RGB run
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from ..errors import UnnoiseError
from ..restore.sampling import METHODS
from .common import add_device, check_number

log = logging.getLogger("unnoise.restore")

SUMMARY = ("restore a damaged image with a trained run: inpaint, super-resolve, deblur or colorize; K samples, "
           "their mean and an uncertainty map")
TASKS = ("inpaint", "sr", "deblur", "colorize")
IMAGE_MODES = ("L", "RGB", "P")  # what --input may be; a palette image is read as RGB


def _pillow():
    from ..data.base import import_extra

    return import_extra("PIL.Image", "unnoise restore", "Pillow")


def _open(path: Path):
    if not path.is_file():
        raise UnnoiseError(f"{path}: file not found")
    try:
        image = _pillow().open(path)
        image.load()
    except Exception as exc:  # Pillow raises many types for damaged files
        raise UnnoiseError(f"{path}: not a readable image ({type(exc).__name__})") from None
    return image


def read_input(path: Path, channels: int, size: tuple[int, int], what: str) -> torch.Tensor:
    """The image as (1, channels, H, W) in [-1, 1]; one-line errors name the file and the expected form."""
    image = _open(path)
    if image.mode not in IMAGE_MODES:
        raise UnnoiseError(f"{path}: unsupported image mode {image.mode!r}; expected L (grayscale) or RGB")
    if image.size != (size[1], size[0]):
        raise UnnoiseError(f"{path}: size {image.size[0]}x{image.size[1]}, expected {size[1]}x{size[0]} {what}")
    pixels = np.asarray(image.convert("RGB" if image.mode == "P" else image.mode), dtype=np.float32)
    x = torch.from_numpy(pixels / 127.5 - 1.0)
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)  # (H, W, C) -> (C, H, W)
    if x.shape[0] == channels:
        return x[None]
    if channels == 3:  # a grayscale picture is an RGB one with equal channels
        return x.expand(3, -1, -1)[None].clone()
    if bool((x[0] == x[1]).all() and (x[1] == x[2]).all()):
        return x[:1][None]
    raise UnnoiseError(f"{path}: a colour (RGB) image, but the run models grayscale images; expected mode L")


def read_mask(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """The known-pixel mask (1, 1, H, W) of 0/1: black (0) = known, white (255) = to fill in."""
    image = _open(path)
    if image.mode not in ("1", "L", "RGB", "P"):
        raise UnnoiseError(f"{path}: unsupported mask mode {image.mode!r}; expected a black-and-white image")
    if image.size != (size[1], size[0]):
        raise UnnoiseError(f"{path}: mask size {image.size[0]}x{image.size[1]}, expected {size[1]}x{size[0]} "
                           "(the input's size)")
    values = np.asarray(image.convert("L"), dtype=np.uint8)
    levels = np.unique(values)
    if not set(levels.tolist()) <= {0, 255}:
        raise UnnoiseError(f"{path}: mask is not binary (grey levels {levels[:6].tolist()}...); expected black (0) "
                           "= keep and white (255) = fill in")
    if (values == 255).all():
        log.warning("%s: the mask fills in every pixel: this is unconditional sampling", path)
    return torch.from_numpy(values == 0)[None, None].float()


def task_measurement(task: str, args, config, sr_scale: int):
    """(operator or None, measurement y (1, ...), default method) for a task on a run's image shape."""
    from ..restore import Downsample, GaussianBlur, Grayscale, Mask

    channels, height, width = config.data_shape
    if task == "sr":
        scale = args.scale or sr_scale or 4
        if sr_scale and scale != sr_scale:
            raise UnnoiseError(f"--scale {scale}: run {args.run_dir} super-resolves x{sr_scale} only")
        if scale not in (2, 4) or height % scale or width % scale:
            raise UnnoiseError(f"--scale {scale}: must be 2 or 4 and divide the run's {height}x{width} images")
        y = read_input(args.input, channels, (height // scale, width // scale),
                       f"(the run's {height}x{width} divided by --scale {scale})")
        return (None, y, "sr3") if sr_scale else (Downsample(scale), y, "ddnm")
    if sr_scale:
        raise UnnoiseError(f"run {args.run_dir} is a super-resolution run: it only does --task sr")
    if task == "colorize":
        if channels != 3:
            raise UnnoiseError(f"--task colorize needs an RGB run; {args.run_dir} models {channels}-channel images")
        gray = read_input(args.input, 3, (height, width), "(the run's image size)")
        return Grayscale(), Grayscale()(gray), "ddnm"
    y = read_input(args.input, channels, (height, width), "(the run's image size)")
    if task == "deblur":
        return GaussianBlur(args.blur_sigma, cutoff=args.blur_cutoff), y, "ddnm"
    if args.mask is None:
        raise UnnoiseError("--task inpaint needs --mask MASK (black = keep, white = fill in)")
    mask = Mask(read_mask(args.mask, (height, width)))
    return mask, mask(y), "ddnm"


def add_parser(sub) -> None:
    p = sub.add_parser("restore", help=SUMMARY, description=SUMMARY)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--input", type=Path, required=True, help="the damaged image (PNG/JPEG, L or RGB)")
    p.add_argument("--mask", type=Path, help="inpaint: same size as --input, black = keep, white = fill in")
    p.add_argument("--scale", type=int, help="sr: upscaling factor, 2 or 4 (default: the run's, or 4)")
    p.add_argument("--blur-sigma", type=float, default=1.0, help="deblur: the Gaussian blur's std in pixels")
    p.add_argument("--blur-cutoff", type=float, default=1e-3,
                   help="deblur: frequencies the blur keeps below this gain are left to the prior")
    p.add_argument("--noise-std", type=float, default=0.0,
                   help="std of the measurement's Gaussian noise on [-1, 1] (> 0: method dps or tweedie)")
    p.add_argument("--method", choices=METHODS,
                   help="default: sr3 for a super-resolution run, ddnm for noiseless, dps for noisy measurements")
    p.add_argument("--zeta", type=float, default=1.0, help="dps: step size")
    p.add_argument("--n", type=int, default=8, help="number of samples K")
    p.add_argument("--steps", type=int, help="sampler steps (default 100; sr3: the run's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sample (sample k uses seed + k)")
    p.add_argument("--weights", default="ema", choices=["ema", "model"])
    p.add_argument("--out", type=Path, default=Path("restored"), help="output directory")
    add_device(p)
    p.set_defaults(handler=run)


def check_args(args) -> None:
    check_number("--n", args.n, low=1, integer=True)
    check_number("--steps", args.steps, low=1, integer=True)
    check_number("--seed", args.seed, low=0, integer=True)
    check_number("--blur-sigma", args.blur_sigma, low=0, low_open=True)
    check_number("--blur-cutoff", args.blur_cutoff, low=0, high=1, low_open=True)
    check_number("--noise-std", args.noise_std, low=0)
    check_number("--zeta", args.zeta, low=0)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UnnoiseError(f"--out {args.out}: exists and is not a directory")


def run(args) -> None:
    summary = restore_command(args)
    print(json.dumps(summary))
    print(f"wrote {summary['n']} restorations, their mean and std map to {args.out}")


def restore_command(args) -> dict:
    from ..pipeline import Pipeline, RestoreRequest
    from ..restore import AddNoise, posterior_summary
    from ..restore.sampling import MethodOptions

    check_args(args)
    pipe = Pipeline.load(args.run_dir, device=args.device, weights=args.weights)
    config = pipe.config
    if config.spec.modality != "image":
        raise UnnoiseError(f"run {args.run_dir} models {config.spec.modality} data of shape {config.data_shape}, "
                           "not images")
    lowres = pipe.conditions.get("lowres")
    sr_scale = lowres.factor if lowres is not None else 0
    operator, y, _ = task_measurement(args.task, args, config, sr_scale)
    if args.noise_std and operator is not None:
        operator = AddNoise(operator, args.noise_std)
    steps = args.steps or (config.sample.steps if (args.method or ("sr3" if sr_scale else "")) == "sr3" else 100)
    log.info("restoring %s (%s): %d samples, %d steps", args.input, args.task, args.n, steps)
    result = pipe.restore(RestoreRequest(y=y, operator=operator, method=args.method, n=args.n, seed=args.seed,
                                         steps=steps, options=MethodOptions(zeta=args.zeta),
                                         callback=_progress(steps)))
    return _write_outputs(args, result.samples, y, operator, result.method, result.steps, posterior_summary)


def _progress(steps: int):
    def report(i, sigma, x, x0):
        if i % max(1, steps // 10) == 0:
            log.info("step %d/%d (sigma %.3g)", i + 1, steps, float(sigma))
    return report


def _write_outputs(args, samples, y, operator, method, steps, posterior_summary) -> dict:
    from ..io.image import save_grid

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mean, std = posterior_summary(samples)
    for k, sample in enumerate(samples):
        save_grid(sample[None], out / f"sample_{k:02d}.png", upscale=1, pad=0)
    save_grid(samples, out / "samples.png", upscale=max(1, 64 // samples.shape[-1]))
    save_grid(mean[None], out / "mean.png", upscale=1, pad=0)
    scale = float(std.max()) or 1.0
    save_grid((std / scale * 2 - 1).mean(0, keepdim=True)[None], out / "std.png", upscale=1, pad=0)
    summary = {"task": args.task, "method": method, "input": str(args.input), "n": len(samples),
               "seeds": [args.seed, args.seed + len(samples) - 1], "steps": steps,
               "std_map_max": scale, "mean_std": float(std.mean()),
               "measurement_error": _measurement_error(samples, y, operator),
               "files": ["sample_XX.png", "samples.png", "mean.png", "std.png (white = std_map_max)"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _measurement_error(samples, y, operator) -> float | None:
    """max |A x - y| over the samples (the data consistency of a noiseless measurement)."""
    if operator is None or operator.noise_std > 0:
        return None
    error = (operator(samples) - y).abs().max()
    return float(error) if math.isfinite(float(error)) else None
