"""`unnoise sample RUN`: sample a trained run through the pipeline and write the samples (a grid, WAVs, a
scatter: the run's modality decides), optionally the denoising trajectory and the raw tensor."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UnnoiseError
from ..run.text import TEXT_SAMPLERS
from .common import add_device, check_number, check_output

SUMMARY = "draw samples from a trained run"
OPTION_FLAGS = {"eta": "DDIM / Euler-ancestral stochasticity (0 deterministic, 1 ancestral)",
                "churn": "Heun S_churn (EDM Algorithm 2)"}


def add_parser(sub) -> None:
    from ..grids import GRIDS
    from ..sample import SAMPLERS
    from ..sample.registry import sampler_help

    p = sub.add_parser("sample", help=SUMMARY, description=SUMMARY)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--sampler", help=f"default: the run's sample.sampler. {sampler_help()} Text runs: "
                                     f"{' or '.join(TEXT_SAMPLERS)} (a heuristic, not the ELBO's sampler)",
                   metavar="{" + ",".join(SAMPLERS) + "}")
    p.add_argument("--nfe", type=int, help="budget in model calls, for every sampler (auto calibrates for it)")
    p.add_argument("--steps", type=int, help="budget in grid steps (a Heun step costs 2 calls; for auto, steps = "
                                             "calls). Default: the run's sample.steps for its own sampler, "
                                             "the same number of model calls for another")
    p.add_argument("--grid", help=f"sigma grid: {', '.join(GRIDS)} (default: the run's for its sampler, else "
                                  "the sampler's own)")
    p.add_argument("--n", type=int, help="number of samples (default: the run's sample.n)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sample (sample i uses seed + i)")
    for name, text in OPTION_FLAGS.items():
        p.add_argument(f"--{name}", type=float, help=text)
    p.add_argument("--class", dest="class_label",
                   help="class for class-conditional runs: an index, or a class name (e.g. C4 for tones)")
    p.add_argument("--prompt", help="caption for text-conditional runs; for a text run, the start of every sample")
    p.add_argument("--infill", help="text runs (diffusion): text with spans to fill, e.g. 'To be, or [MASK:8] to be'")
    p.add_argument("--length", type=int, help="text runs: tokens per sample (default: the model's context; with "
                                              "--infill, the infill text's length)")
    p.add_argument("--control", type=Path, action="append", metavar="IMAGE",
                   help="ControlNet runs: a control image (edges, segmentation map, sketch); repeat for several")
    p.add_argument("--control-scale", type=float, action="append", metavar="S",
                   help="scale of each --control (one for all, or one per image; default 1)")
    p.add_argument("--atoms", type=int, help="molecule runs: atoms per molecule (default: drawn from the training "
                                             "histogram of atom counts)")
    p.add_argument("--property", help="property-conditional molecule runs: NAME=VALUE[,NAME=VALUE], e.g. alpha=80 "
                                      "(units of data/qm9.py PROPERTIES; guided by --guidance)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (1: none; default: the run's)")
    p.add_argument("--guidance-interval", type=float, nargs=2, metavar=("SIGMA_LO", "SIGMA_HI"),
                   help="guide only where SIGMA_LO < sigma <= SIGMA_HI")
    p.add_argument("--guidance-rescale", type=float, help="guidance rescale phi in [0, 1] (Lin et al. 2024)")
    p.add_argument("--weights", default="ema", choices=["ema", "model"])
    p.add_argument("--out", type=Path,
                   help="output (default samples.png; samples.txt for text runs): .png/.jpg grid (a scatter for "
                        "2-D data, spectrograms for audio); text runs: .txt; molecule runs also .sdf, .xyz; "
                        "audio runs also "
                        "take NAME.wav (NAME.wav for --n 1, NAME-000.wav, ... for more) with spectrograms NAME.png")
    p.add_argument("--gif", type=Path, help="also write the denoising trajectory as an animated GIF")
    p.add_argument("--save-tensor", type=Path, help="also save the raw samples as .safetensors")
    add_device(p)
    p.set_defaults(handler=run)


def request_from_args(args, **extra):
    """The SampleRequest the flags describe (checked: one-line errors name the flag)."""
    from ..pipeline import SampleRequest

    for flag, value in (("--n", args.n), ("--nfe", args.nfe), ("--steps", args.steps), ("--length", args.length)):
        check_number(flag, value, low=1, integer=True)
    check_number("--seed", args.seed, low=0, integer=True)
    check_number("--eta", args.eta, low=0, high=1)
    check_number("--churn", args.churn, low=0)
    options = {name: getattr(args, name) for name in OPTION_FLAGS if getattr(args, name) is not None}
    if args.sampler is not None and args.sampler not in TEXT_SAMPLERS:
        from ..sample import sampler_spec

        sampler_spec(args.sampler).check_options(options, where="--")
    interval = None if args.guidance_interval is None else tuple(args.guidance_interval)
    return SampleRequest(n=args.n, seed=args.seed, sampler=args.sampler, nfe=args.nfe, steps=args.steps,
                         grid=args.grid, options=options, label=args.class_label, prompt=args.prompt,
                         guidance=args.guidance, guidance_interval=interval, guidance_rescale=args.guidance_rescale,
                         length=args.length, infill=args.infill, control=control_from_args(args),
                         atoms=getattr(args, "atoms", None), property=getattr(args, "property", None), **extra)


def control_from_args(args):
    """The --control images and their --control-scale values as a request value (None without --control)."""
    paths, scales = getattr(args, "control", None) or [], getattr(args, "control_scale", None)
    if not paths:
        if scales:
            raise UnnoiseError("--control-scale needs a --control image")
        return None
    from ..control.images import read_control_image

    scales = scales or [1.0]
    if len(scales) not in (1, len(paths)):
        raise UnnoiseError(f"--control-scale: give one scale, or one per --control ({len(paths)}), got {len(scales)}")
    return {"images": [read_control_image(path) for path in paths], "scales": scales * (len(paths) // len(scales))}


def record_frames(frames: list):
    """A sampler callback keeping each step's x0 estimate (float32, on the host)."""
    from ..device import cpu

    return lambda i, sigma, x, x0: frames.append(x0.detach().float().to(cpu()))


def write_outputs(config, x: torch.Tensor, out: Path, *, gif: Path | None = None, frames=(),
                  save_tensor: Path | None = None) -> None:
    """Write the samples (and their spectrograms beside .wav files), the trajectory and the raw tensor."""
    from ..io import write_samples, write_trajectory

    write_samples(x, config.spec, out)  # audio .wav: exactly OUT for --n 1, OUT-000.wav, ... for more
    if Path(out).suffix.lower() == ".wav":
        write_samples(x, config.spec, Path(out).with_suffix(".png"))
    if gif is not None:
        write_trajectory([*frames, x], config.spec, gif)
    if save_tensor is not None:
        from safetensors.torch import save_file

        save_file({"samples": x.contiguous()}, str(save_tensor))


def run(args) -> None:
    from ..io import check_samples_path, check_trajectory_path, preview_suffix
    from ..pipeline import Pipeline

    for flag, path in (("--out", args.out), ("--gif", args.gif), ("--save-tensor", args.save_tensor)):
        check_output(flag, path)
    frames: list = []
    request = request_from_args(args, callback=record_frames(frames) if args.gif is not None else None)
    pipe = Pipeline.load(args.run_dir, device=args.device, weights=args.weights)
    args.out = args.out or Path("samples" + preview_suffix(pipe.config.spec))
    check_samples_path(pipe.config.spec, args.out)  # before sampling, not after
    if pipe.text is not None:
        return sample_text(pipe, request, args.out, args.save_tensor)
    if args.gif is not None:
        check_trajectory_path(pipe.config.spec, args.gif)
        request = _one_batch(request, pipe.config.sample.n)
    x = pipe.sample(request)
    write_outputs(pipe.config, x, args.out, gif=args.gif, frames=frames, save_tensor=args.save_tensor)
    print(f"wrote {len(x)} samples to {args.out}" + (f" and the trajectory to {args.gif}" if args.gif else ""))


def sample_text(pipe, request, out: Path, save_tensor: Path | None) -> None:
    """A text run's samples: printed, and written to `out` (.txt) (and the token ids to `save_tensor`)."""
    from ..run.text import format_texts, write_texts

    ids = pipe.sample(request)
    texts, seeds = pipe.text.decode(ids), range(request.seed, request.seed + len(ids))
    print(format_texts(texts, seeds), end="")
    write_texts(texts, out, seeds)
    if save_tensor is not None:
        from safetensors.torch import save_file

        save_file({"samples": ids.contiguous()}, str(save_tensor))
    print(f"wrote {len(texts)} samples to {out}")


def _one_batch(request, default_n: int):
    """A trajectory is drawn from one batch: the request with batch_size = n."""
    import dataclasses

    n = default_n if request.n is None else request.n
    if n > 4096:
        raise UnnoiseError(f"--gif draws one batch of every sample; --n {n} is too many (at most 4096)")
    return dataclasses.replace(request, batch_size=n)


def class_index(label, config) -> int:
    """A --class value as a label index: an index 0..K-1, or one of the run's class names (e.g. C4)."""
    from ..conditions import LabelCondition

    return LabelCondition(config.num_classes, config.class_names).label_of(label)
