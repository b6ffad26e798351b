"""Restoration with one prior against classical baselines, on held-out built-in digits and shapes.

For each dataset, the held-out images (digits: the 297-image test split; shapes: the first --shapes-n
images of the "test" split) are degraded by four tasks:
  inpaint_box     a random square hole (half the side) per image
  inpaint_random  50% of the pixels missing, at random per image
  sr4             x4 average-pooling (the `Downsample(4)` operator)
  blur            circular Gaussian blur (std 1 pixel on digits, 1.5 on shapes), noiseless
and restored by each method: K=8 posterior samples per image from the unconditional prior with ddnm
(range/null-space projection, every task), repaint (inpainting), tweedie (Tweedie-conditioned
denoiser, digits only: its CG solve costs 20 vector-Jacobian products a step), and the SR3 run
(sr4); the classical baselines are biharmonic inpainting (scikit-image), bicubic upsampling, Wiener
deconvolution (the blur's exact circular transfer function, regularisation tuned on the images
themselves: an oracle) and Richardson-Lucy (scikit-image, 30 iterations).

Metrics: PSNR and SSIM (scikit-image, data range [0, 1]) of the posterior mean of the K samples
against the truth, averaged over images; FD (the dataset's feature classifier) of the first sample of
every image against the clean versions of the same images (paired, so each method's FD carries
the same sample-size bias and a perfect restoration scores 0). Baselines are deterministic: their output
is both their "mean" and their "sample".

    python benchmarks/restoration.py --json [--digits-run DIR --digits-sr-run DIR
        --shapes-run DIR --shapes-sr-run DIR] [--runs-dir runs/restoration] [--datasets digits shapes]

Runs not given are trained with the presets (`digits` on the train split, `digits-sr`, `shapes`,
`shapes-sr`) into --runs-dir, and reused from there on the next call (about 35 minutes on 2 cores).
Prints {DATASET: {TASK: {METHOD: {"psnr", "ssim", "fd"}}}, "targets": ..., "train_seconds": ...,
"setup": ...}. Targets (issue 8): the posterior mean beats every baseline by >= 1 dB PSNR, and single
samples beat them on FD. Needs the bench extra (scikit-image).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

try:
    import unnoise  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np
import torch

SEED = 30_000
BLUR_SIGMA = {"digits": 1.0, "shapes": 1.5}
RUN_PRESETS = {"digits": ("digits", ["data.options.split=train"]), "digits_sr": ("digits-sr", []),
               "shapes": ("shapes", []), "shapes_sr": ("shapes-sr", [])}


def ensure_run(key: str, given: Path | None, runs_dir: Path, train_seconds: dict) -> Path:
    """The run given, or the preset's run in runs_dir (trained there first if it has no checkpoint)."""
    from unnoise.run.config import apply_overrides, config_from_dict
    from unnoise.run.training import train_run as train
    from unnoise.run.presets import preset

    if given is not None:
        return given
    run_dir = runs_dir / key
    if not (run_dir / "checkpoint" / "ema.safetensors").is_file():
        name, overrides = RUN_PRESETS[key]
        t0 = time.perf_counter()
        train(config_from_dict(apply_overrides(preset(name), overrides)), run_dir)
        train_seconds[key] = round(time.perf_counter() - t0, 1)
    return run_dir


def heldout_images(dataset: str, shapes_n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(images to restore, real reference images for FD), both held out from training.

    The FD reference is the clean versions of the very images restored (as many samples as each
    method produces), so a perfect restoration scores 0 and every method carries the same
    small-sample bias; a larger reference would dominate FD with that bias at N=32.
    """
    from unnoise.data import load_dataset

    if dataset == "digits":
        test = load_dataset("digits", split="test").x
        return test, test
    test = load_dataset("shapes", split="test", objects="1", n=shapes_n).x
    return test, test


def task_operators(dataset: str, images: torch.Tensor) -> dict:
    """Task name -> (operator on one row per image, measurement y = A x)."""
    from unnoise.restore import Downsample, GaussianBlur, Mask

    g = torch.Generator().manual_seed(SEED)
    n, _, size, _ = images.shape
    side = size // 2
    corners = torch.randint(0, size - side + 1, (n, 2), generator=g)
    box = torch.ones(n, 1, size, size)
    for i, (top, left) in enumerate(corners.tolist()):
        box[i, :, top:top + side, left:left + side] = 0
    random = (torch.rand(n, 1, size, size, generator=g) < 0.5).float()
    operators = {"inpaint_box": Mask(box), "inpaint_random": Mask(random), "sr4": Downsample(4),
                 "blur": GaussianBlur(BLUR_SIGMA[dataset])}
    return {task: (op, op(images)) for task, op in operators.items()}


def repeat_rows(operator, y: torch.Tensor, k: int):
    """The operator and measurement for K samples of each image (rows image-major: i * K + j)."""
    from unnoise.restore import Mask

    if isinstance(operator, Mask):
        operator = Mask(operator.mask.float().repeat_interleave(k, dim=0))
    return operator, y.repeat_interleave(k, dim=0)


def restore_with(run_dir: Path, method: str, operator, y: torch.Tensor, k: int, steps: int,
                 batch: int, resample: int) -> torch.Tensor:
    """K posterior samples per measurement row: (N, K, C, H, W)."""
    from unnoise.pipeline import Pipeline, RestoreRequest
    from unnoise.restore.sampling import MethodOptions

    pipe = Pipeline.load(run_dir)
    config = pipe.config
    n = y.shape[0]
    op_rows, y_rows = (None, y.repeat_interleave(k, dim=0)) if method == "sr3" else repeat_rows(operator, y, k)
    out = []
    for start in range(0, n * k, batch):
        rows = slice(start, min(n * k, start + batch))
        op = _rows_of(op_rows, rows)
        request = RestoreRequest(y=y_rows[rows], operator=op, method=method, n=rows.stop - start, seed=SEED + start,
                                 steps=steps, options=MethodOptions(resample=resample, cg_iterations=20))
        out.append(pipe.restore(request).samples)
    return torch.cat(out).reshape(n, k, *config.data_shape)


def _rows_of(operator, rows: slice):
    from unnoise.restore import Mask

    if isinstance(operator, Mask) and operator.mask.shape[0] > 1:
        return Mask(operator.mask[rows].float())
    return operator


def baselines(task: str, operator, y: torch.Tensor, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The classical restorations of y: name -> (N, C, H, W) in [-1, 1]."""
    if task.startswith("inpaint"):
        return {"baseline_biharmonic": biharmonic(y, operator.mask.bool())}
    if task == "sr4":
        from unnoise.restore.superres import upsample_bicubic

        return {"baseline_bicubic": upsample_bicubic(y, 4)}
    return {"baseline_wiener": wiener_oracle(operator, y, images), "baseline_richardson_lucy": lucy(operator, y)}


def biharmonic(y: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    from skimage.restoration import inpaint_biharmonic

    out = []
    for image, keep in zip(y, known.expand_as(y)):
        pixels = image.permute(1, 2, 0).double().numpy()  # (C, H, W) -> (H, W, C)
        missing = ~keep[0].numpy()
        out.append(torch.from_numpy(inpaint_biharmonic(pixels, missing, channel_axis=-1)).permute(2, 0, 1))
    return torch.stack(out).float().clamp(-1, 1)


def wiener_oracle(blur, y: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Wiener deconvolution H* Y / (|H|^2 + lambda) with the blur's exact circular response, lambda the
    best of a grid for PSNR against the truth (an oracle: the baseline at its best)."""
    h = blur.response(*y.shape[-2:], y)
    spectrum = torch.fft.fft2(y.double())
    best, best_psnr = None, -math.inf
    for lam in (1e-5, 1e-4, 1e-3, 1e-2, 1e-1):
        x = torch.fft.ifft2(spectrum * h / (h**2 + lam)).real.float().clamp(-1, 1)
        score = float(psnr(x, images).mean())
        if score > best_psnr:
            best, best_psnr = x, score
    return best


def lucy(blur, y: torch.Tensor, iterations: int = 30) -> torch.Tensor:
    """Richardson-Lucy (scikit-image) on [0, 1] images with the blur's kernel, per channel."""
    from skimage.restoration import richardson_lucy

    radius = int(math.ceil(3 * blur.sigma))
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel_1d = torch.exp(-(k**2) / (2 * blur.sigma**2))
    psf = (kernel_1d[:, None] * kernel_1d[None]).numpy()
    psf /= psf.sum()
    out = np.stack([[richardson_lucy(((c + 1) / 2).clamp(0, 1).double().numpy(), psf, num_iter=iterations,
                                     clip=True) for c in image] for image in y])
    return torch.from_numpy(out * 2 - 1).float()


def psnr(x: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB on the [0, 1] scale."""
    mse = ((x.clamp(-1, 1) - truth) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp(min=1e-12))


def ssim(x: torch.Tensor, truth: torch.Tensor) -> float:
    from skimage.metrics import structural_similarity

    scores = [structural_similarity(((a + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy(),
                                    ((b + 1) / 2).permute(1, 2, 0).numpy(), data_range=1.0, channel_axis=-1,
                                    win_size=7) for a, b in zip(x, truth)]
    return float(np.mean(scores))


def scores(mean: torch.Tensor, sample: torch.Tensor, truth: torch.Tensor, extractor, reference) -> dict:
    from unnoise.eval.metrics import fd

    with torch.no_grad():
        features = extractor.features(sample.clamp(-1, 1))
    return {"psnr": round(float(psnr(mean, truth).mean()), 3), "ssim": round(ssim(mean, truth), 4),
            "fd": round(fd(features, reference), 3)}


def evaluate_dataset(dataset: str, runs: dict, args) -> dict:
    from unnoise.eval.features import extractor_for

    images, reference_images = heldout_images(dataset, args.shapes_n)
    extractor = extractor_for(dataset)
    with torch.no_grad():
        reference = extractor.features(reference_images)
    results, seconds = {}, {}
    for task, (operator, y) in task_operators(dataset, images).items():
        methods = ["ddnm"] + (["repaint"] if task.startswith("inpaint") else []) + \
                  (["tweedie"] if dataset == "digits" and "tweedie" in args.methods else []) + \
                  (["sr3"] if task == "sr4" else [])
        methods = [m for m in methods if m in args.methods]
        results[task] = {}
        for method in methods:
            run = runs[f"{dataset}_sr"] if method == "sr3" else runs[dataset]
            t0 = time.perf_counter()
            samples = restore_with(run, method, operator, y, args.k, args.steps, args.batch, args.resample)
            seconds[f"{task}/{method}"] = round(time.perf_counter() - t0, 1)
            results[task][method] = scores(samples.mean(1), samples[:, 0], images, extractor, reference)
            print(f"{dataset} {task} {method}: {results[task][method]} ({seconds[f'{task}/{method}']} s)",
                  file=sys.stderr)
        for name, restored in baselines(task, operator, y, images).items():
            results[task][name] = scores(restored, restored, images, extractor, reference)
    results["seconds"] = seconds
    results["real_fd_floor"] = real_floor(images, reference, extractor)
    return results


def real_floor(images: torch.Tensor, reference: torch.Tensor, extractor) -> float:
    """FD of the clean held-out images themselves against the reference: the best any method can do."""
    from unnoise.eval.metrics import fd

    with torch.no_grad():
        return round(fd(extractor.features(images), reference), 3)


def targets(results: dict) -> dict:
    """Per dataset and task: the best method's margin over the best baseline (PSNR, dB) and FD check."""
    out = {}
    for dataset, tasks in results.items():
        for task, methods in tasks.items():
            if task in ("seconds", "real_fd_floor"):
                continue
            ours = {m: v for m, v in methods.items() if not m.startswith("baseline_")}
            theirs = {m: v for m, v in methods.items() if m.startswith("baseline_")}
            if not ours or not theirs:
                continue
            best_psnr = max(ours, key=lambda m: ours[m]["psnr"])
            margin = ours[best_psnr]["psnr"] - max(v["psnr"] for v in theirs.values())
            best_fd = min(ours, key=lambda m: ours[m]["fd"])
            out[f"{dataset}/{task}"] = {
                "best_method": best_psnr, "psnr_margin_db": round(margin, 3), "psnr_met": margin >= 1.0,
                "fd_method": best_fd, "fd_met": ours[best_fd]["fd"] < min(v["fd"] for v in theirs.values())}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object (default: also a table)")
    for key in RUN_PRESETS:
        parser.add_argument(f"--{key.replace('_', '-')}-run", type=Path, dest=f"{key}_run")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/restoration"))
    parser.add_argument("--datasets", nargs="+", default=["digits", "shapes"], choices=["digits", "shapes"])
    parser.add_argument("--methods", nargs="+", default=["ddnm", "repaint", "sr3"],
                        help="also: tweedie (digits only; about 20x the cost of ddnm)")
    parser.add_argument("--k", type=int, default=8, help="samples per image for the posterior mean")
    parser.add_argument("--steps", type=int, default=50, help="sampler steps (RePaint: x --resample)")
    parser.add_argument("--resample", type=int, default=10,
                        help="RePaint's passes over each jump of 10 steps (their paper's 10)")
    parser.add_argument("--shapes-n", type=int, default=32, help="held-out shapes images to restore")
    parser.add_argument("--batch", type=int, default=512, help="rows per sampler call")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    train_seconds, results, runs = {}, {}, {}
    for dataset in args.datasets:
        keys = (dataset, f"{dataset}_sr") if "sr3" in args.methods else (dataset,)  # no SR3 run unless asked
        for key in keys:
            runs[key] = ensure_run(key, getattr(args, f"{key}_run"), args.runs_dir, train_seconds)
        results[dataset] = evaluate_dataset(dataset, runs, args)
    report = {**results, "targets": targets(results), "train_seconds": train_seconds,
              "setup": {"k": args.k, "steps": args.steps, "resample": args.resample, "shapes_n": args.shapes_n,
                        "seed": SEED, "blur_sigma": BLUR_SIGMA, "runs": {k: str(v) for k, v in runs.items()},
                        "threads": torch.get_num_threads()}}
    if not args.json:
        for name, t in report["targets"].items():
            print(f"{name:24s} best {t['best_method']:8s} +{t['psnr_margin_db']:.2f} dB "
                  f"(met {t['psnr_met']}), FD by {t['fd_method']} (met {t['fd_met']})")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
