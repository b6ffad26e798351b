"""`unnoise eval RUN_DIR`: generate samples, compare their features with held-out real data (FD, KID,
precision/recall, predicted-class histogram) and write eval.json with the scores and the whole protocol,
so that re-running it reproduces them."""
from __future__ import annotations

import dataclasses
import inspect
import math

import torch

from ..data import DATASETS, load_dataset
from ..data.imagefolder import load_imagefolder
from ..errors import UnnoiseError
from ..interop import is_diffusers_folder
from ..pipeline import Pipeline, SampleRequest
from ..run.progress import Progress
from .features import extractor_for
from .metrics import fd, kid, precision_recall

CHUNK = 250


def reference_split(config, split: str | None) -> str | None:
    """The held-out split when the dataset has one (test), else the data itself."""
    if split is not None:
        return split
    return "test" if "split" in inspect.signature(DATASETS[config.data.name]).parameters else None


def reference_images(folder, data_shape) -> tuple[torch.Tensor, dict]:
    """The images below `folder` at the model's size and channels (centre-cropped squares), and their
    description for the protocol."""
    channels, height, width = data_shape
    if height != width:
        raise UnnoiseError(f"--reference: the model makes {height}x{width} images; reference folders are read "
                           "as squares")
    mode = {1: "gray", 3: "rgb"}.get(channels)
    if mode is None:
        raise UnnoiseError(f"--reference: the model makes {channels}-channel images; reference folders hold "
                           "gray or RGB images")
    real = load_imagefolder(str(folder), size=height, mode=mode, min_size=0).x
    return real, {"imagefolder": str(folder), "size": height, "mode": mode, "crop": "center", "n": len(real)}


def generate(pipe: Pipeline, request: SampleRequest, n: int) -> torch.Tensor:
    """n samples (seeds request.seed .. + n - 1) in chunks, with a progress bar; with `request.label`
    (n labels) each chunk gets its own."""
    progress = Progress(n, "sample")
    chunks = []
    for start in range(0, n, CHUNK):
        count = min(CHUNK, n - start)
        label = None if request.label is None else request.label[start:start + count]
        chunks.append(pipe.sample(dataclasses.replace(request, n=count, seed=request.seed + start, label=label)))
        progress.update(start + count)
    return torch.cat(chunks)


def evaluate_quality(run_dir, *, n: int = 1000, seed: int = 0, sampler: str | None = None, nfe: int | None = None,
                     steps: int | None = None, split: str | None = None, extractor: str | None = None, k: int = 3,
                     weights: str = "ema", guidance: float | None = None, device="auto",
                     reference: str | None = None, prompt: str | None = None) -> dict:
    """Scores and protocol of n generated samples (the run's sampler and budget unless given); class-
    conditional runs generate equal numbers of each class (labels 0, 1, ..., K-1, 0, ...) at guidance scale
    `guidance` (default: the run's) and also report per-class accuracy. The real images are the run's
    held-out data, or the folder `reference` (required for a diffusers folder, which has no data of its
    own; its default extractor is Inception). `prompt` conditions a caption model's samples."""
    folder = is_diffusers_folder(run_dir)
    if folder and reference is None:
        raise UnnoiseError(f"{run_dir} is a diffusers folder, which holds no data: give --reference DIR, a folder "
                           "of real images to compare its samples with")
    pipe = Pipeline.load(run_dir, device=device, weights=weights)
    if pipe.text is not None:
        raise UnnoiseError(f"{run_dir} is a text run: evaluate it with --nll (held-out bits per character)")
    config = pipe.config
    labels = torch.arange(n) % config.num_classes if pipe.conditions.get("label") is not None else None
    if labels is not None and guidance is None:
        guidance = config.sample.guidance
    request = SampleRequest(sampler=sampler, nfe=nfe, steps=steps, label=labels, guidance=guidance, prompt=prompt)
    plan = pipe.plan(request)
    ext = extractor_for(extractor or ("inception" if folder else config.data.name))
    if reference is not None:
        real, reference_protocol = reference_images(reference, config.data_shape)
    else:
        split = reference_split(config, split)
        options = dict(config.data.options, **({"split": split} if split else {}))
        real = load_dataset(config.data.name, **options).x
        reference_protocol = {"dataset": config.data.name, "options": options, "n": len(real)}
    with torch.no_grad():
        fake = generate(pipe, dataclasses.replace(request, seed=seed), n)
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
                "sampler": plan.name, "nfe": plan.nfe, "steps": plan.steps, "guidance": guidance,
                "labels": None if labels is None else f"i mod {config.num_classes} for sample i",
                "prompt": prompt, "reference": reference_protocol,
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
