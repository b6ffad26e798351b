"""`unnoise eval` of an autoencoder run: PSNR, SSIM and rFD of held-out reconstructions through its codec."""
from __future__ import annotations

import torch

from ..errors import UnnoiseError
from .reconstruction import reconstruction_metrics


def heldout_images(config, n: int, seed: int, split: str | None) -> tuple[torch.Tensor, str]:
    """n images of the run's dataset from `split` (default: test where the dataset has one) and its name."""
    from ..data import dataset_options, load_dataset

    options = {**config.data.options, "n": n}
    if "seed" in dataset_options(config.data.name) and seed:
        options["seed"] = seed
    if "split" in dataset_options(config.data.name):
        options["split"] = split or "test"
    elif split is not None:
        raise UnnoiseError(f"--split: dataset {config.data.name!r} has no splits")
    return load_dataset(config.data.name, **options).x, options.get("split", "train")


def evaluate_autoencoder_run(run_dir, *, n: int = 256, seed: int = 0, split: str | None = None, batch: int = 64,
                             device="auto", extractor: str | None = None) -> dict:
    """PSNR, SSIM (with standard errors) and rFD (Frechet distance of the reconstructions' features to the
    originals', with the dataset's feature extractor, or null when none is registered) of an autoencoder
    run's reconstructions of n held-out images, through its codec (posterior mean)."""
    from ..pipeline import Pipeline

    pipe = Pipeline.load(run_dir, device=device)
    if pipe.codec.kind != "autoencoder":
        raise UnnoiseError(f"{run_dir}: no trained codec (RUN/codec/); finish training the autoencoder run first")
    x, split = heldout_images(pipe.config, n, seed, split)
    x_hat = torch.cat([pipe.decode(pipe.encode(chunk)) for chunk in x.split(batch)]).clamp(-1, 1)
    result = {"run": str(run_dir), "split": split, "n": len(x), **reconstruction_metrics(x, x_hat)}
    return {**result, **_rfd(x, x_hat, extractor or pipe.config.data.name)}


def _rfd(x: torch.Tensor, x_hat: torch.Tensor, name: str) -> dict:
    from .features import EXTRACTORS, extractor_for
    from .metrics import fd

    if name not in EXTRACTORS:
        return {"rfd": None, "rfd_extractor": None}
    extractor = extractor_for(name)
    with torch.no_grad():
        distance = fd(extractor.features(x).double(), extractor.features(x_hat).double())
    return {"rfd": float(distance), "rfd_extractor": extractor.name}
