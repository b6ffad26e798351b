"""`unnoise eval RUN_DIR --nll`: bits/dim of held-out data by the variational bound and the
probability-flow ODE, with every setting recorded next to the numbers."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..data import load_dataset
from ..errors import UnnoiseError
from ..likelihood import dequantize, ode_log_likelihood
from ..pipeline import Pipeline
from ..run.progress import Progress
from ..vlb import VARIANCES, bound_unavailable, variational_bound

EXACT_DIVERGENCE_UP_TO = 32  # dimensions; above this `auto` uses Hutchinson's estimator


def _summary(bpd: torch.Tensor) -> dict:
    return {"bpd": float(bpd.mean()), "bpd_stderr": float(bpd.std() / math.sqrt(len(bpd))) if len(bpd) > 1 else None}


def evaluation_data(config, n: int, seed: int, split: str | None) -> torch.Tensor:
    options = dict(config.data.options)
    if split is not None:
        options["split"] = split
    data = load_dataset(config.data.name, **options).x
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return data[order].double()


def vlb_estimate(denoiser, x: torch.Tensor, *, levels: int, variance: str | None, batch: int, seed: int) -> dict:
    variance = variance or "learned"
    generator = torch.Generator().manual_seed(seed)
    steps = denoiser.process.steps
    progress = Progress(steps * math.ceil(len(x) / batch), "vlb")
    parts = []
    for i, start in enumerate(range(0, len(x), batch)):
        parts.append(variational_bound(denoiser, x[start:start + batch], variance=variance, levels=levels or None,
                                       generator=generator, progress=lambda t: progress.update(i * steps + t)))
    to_bpd = 1 / (x[0].numel() * math.log(2))
    total = torch.cat([p.total() for p in parts]) * to_bpd
    return {**_summary(total), "variance": variance, "timesteps": steps, "levels": levels,
            "terms_bpd": {"prior": float(torch.cat([p.prior for p in parts]).mean() * to_bpd),
                          "decoder": float(torch.cat([p.decoder for p in parts]).mean() * to_bpd),
                          "steps": float(torch.cat([p.steps.sum(1) for p in parts]).mean() * to_bpd)}}


def ode_estimate(denoiser, x: torch.Tensor, *, levels: int, divergence: str, draws: int, batch: int, seed: int,
                 rtol: float, atol: float) -> dict:
    dims = x[0].numel()
    if divergence == "auto":
        divergence = "exact" if dims <= EXACT_DIVERGENCE_UP_TO else "hutchinson"
    generator = torch.Generator().manual_seed(seed)
    progress = Progress(len(x), "ode nll")
    bpd, settings, nfe = [], {}, 0
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        y = dequantize(chunk, levels, generator) if levels else chunk
        result = ode_log_likelihood(denoiser, y, denoiser.process, divergence=divergence, draws=draws,
                                    rtol=rtol, atol=atol, generator=generator)
        bpd.append(result.bits_per_dim(levels))
        settings, nfe = result.settings, nfe + result.nfe
        progress.update(start + len(chunk))
    return {**_summary(torch.cat(bpd)), **settings, "dequantization": "uniform" if levels else None,
            "levels": levels, "nfe": nfe}


def evaluate_nll(run_dir: Path, *, n: int = 256, seed: int = 0, split: str | None = None, batch: int = 128,
                 vlb_variance: str | None = None, divergence: str = "auto", draws: int = 2,
                 rtol: float = 1e-5, atol: float = 1e-5, weights: str = "ema", device="auto") -> dict:
    """Both likelihood estimates the model supports; an unavailable one is reported with its reason."""
    if vlb_variance is not None and vlb_variance not in VARIANCES:
        raise UnnoiseError(f"--vlb-variance: unknown {vlb_variance!r}; valid: {', '.join(VARIANCES)}")
    if n < 1:
        raise UnnoiseError(f"--n must be >= 1, got {n}")
    pipe = Pipeline.load(run_dir, device=device, weights=weights)
    if pipe.text is not None:  # a text run: held-out bits per character (eval/text.py)
        from .text import evaluate_text_nll

        return evaluate_text_nll(pipe, run_dir, n=n, seed=seed, split=split, batch=batch, draws=draws,
                                 weights=weights)
    denoiser, config = pipe.denoiser, pipe.config
    pipe.conditions.from_request({}, 1)  # a run that needs an input (super-resolution) has no density of its own
    x = evaluation_data(config, n, seed, split).to(pipe.device)
    levels = config.data_levels
    out = {"run_dir": str(run_dir), "weights": weights, "n": len(x), "seed": seed,
           "data": {"name": config.data.name, "options": dict(config.data.options), "split": split,
                    "levels": levels, "dims": x[0].numel()}}
    with torch.no_grad():
        reason = bound_unavailable(denoiser, vlb_variance)
        out["vlb"] = {"unavailable": reason} if reason else vlb_estimate(
            denoiser, x, levels=levels, variance=vlb_variance, batch=batch, seed=seed)
    out["ode"] = ode_estimate(denoiser, x, levels=levels, divergence=divergence, draws=draws, batch=batch,
                              seed=seed, rtol=rtol, atol=atol)
    return out
