"""`unnoise eval RUN_DIR`: generate samples, compare their features with held-out real data (FD, KID,
precision/recall, predicted-class histogram) and write eval.json with the scores and the whole protocol,
so that re-running it reproduces them."""
from __future__ import annotations

import inspect
import math

import torch

from ..data import DATASETS, load_dataset
from ..run.build import load_run, require_unconditioned_input
from ..pipeline import sample_run
from ..train.progress import Progress
from .features import extractor_for
from .metrics import fd, kid, precision_recall

CHUNK = 250


def reference_split(config, split: str | None) -> str | None:
    """The held-out split when the dataset has one (test), else the data itself."""
    if split is not None:
        return split
    return "test" if "split" in inspect.signature(DATASETS[config.data.name]).parameters else None


def generate(denoiser, config, *, n: int, seed: int, sampler: str, steps: int | None, run_dir,
             labels: torch.Tensor | None = None, guidance: float | None = None) -> torch.Tensor:
    """n samples (seeds seed .. seed+n-1) in chunks, with a progress bar; conditioned on `labels` (n,)
    with classifier-free guidance `guidance` when given."""
    progress = Progress(n, "sample")
    chunks = []
    for start in range(0, n, CHUNK):
        count = min(CHUNK, n - start)
        cond = None if labels is None else labels[start:start + count]
        chunks.append(sample_run(denoiser, config, n=count, seed=seed + start, sampler=sampler, steps=steps,
                                 cache_dir=run_dir, cond=cond, guidance=guidance))
        progress.update(start + count)
    return torch.cat(chunks)


def evaluate_quality(run_dir, *, n: int = 1000, seed: int = 0, sampler: str = "auto", steps: int | None = None,
                     split: str | None = None, extractor: str | None = None, k: int = 3, weights: str = "ema",
                     guidance: float | None = None) -> dict:
    """Scores and protocol of n generated samples; class-conditional runs generate equal numbers of each
    class (labels 0, 1, ..., K-1, 0, ...) at guidance scale `guidance` and also report per-class accuracy."""
    denoiser, config = load_run(run_dir, weights)
    require_unconditioned_input(config, run_dir)
    labels = torch.arange(n) % config.num_classes if "label" in config.model.conditions else None
    if labels is not None and guidance is None:
        guidance = config.sample.guidance
    ext = extractor_for(extractor or config.data.name)
    split = reference_split(config, split)
    options = dict(config.data.options, **({"split": split} if split else {}))
    real = load_dataset(config.data.name, **options).x
    with torch.no_grad():
        fake = generate(denoiser, config, n=n, seed=seed, sampler=sampler, steps=steps, run_dir=run_dir,
                        labels=labels, guidance=guidance)
        real_f, fake_f = ext.features(real).double(), ext.features(fake).double()
        kid_mean, kid_se = kid(real_f, fake_f)
        precision, recall = precision_recall(real_f, fake_f, k)
        scores = {"fd": fd(real_f, fake_f), "kid": kid_mean, "kid_stderr": kid_se, "precision": precision,
                  "recall": recall}
        if ext.logits is not None:
            logits = ext.logits(fake)
            p = torch.bincount(logits.argmax(1), minlength=logits.shape[1]).double() / n
            scores["class_fractions"] = p.tolist()
            scores["class_entropy_ratio"] = float(-(p[p > 0] * p[p > 0].log()).sum() / math.log(len(p)))
            if labels is not None:
                scores.update(class_accuracy(logits.argmax(1), labels, config.num_classes))
    protocol = {"run_dir": str(run_dir), "weights": weights, "n": n, "seeds": [seed, seed + n - 1],
                "sampler": sampler, "steps": steps or config.sample.steps, "guidance": guidance,
                "labels": None if labels is None else f"i mod {config.num_classes} for sample i",
                "reference": {"dataset": config.data.name, "options": options, "n": len(real)},
                "extractor": {"name": ext.name, "weights_sha256": ext.weights_sha256, **ext.info},
                "kid": {"estimator": "unbiased MMD^2 U-statistic over all samples", "kernel": "(x.y/d+1)^3",
                        "stderr": "square root of the unbiased estimate of its variance"},
                "precision_recall": {"k": k}}
    return {"scores": scores, "protocol": protocol}


def class_accuracy(predicted: torch.Tensor, labels: torch.Tensor, classes: int) -> dict:
    """Overall and per-class fraction of conditional samples the classifier assigns to their own class."""
    hits = (predicted == labels).double()
    per_class = [float(hits[labels == k].mean()) if bool((labels == k).any()) else None for k in range(classes)]
    return {"class_accuracy": float(hits.mean()), "per_class_accuracy": per_class}
