"""`unnoise eval RUN --nll` for a text run: held-out bits per character (per byte for a byte tokenizer) with
its standard error across windows: the ELBO, an upper bound, for a diffusion run; exact for the AR run."""
from __future__ import annotations

from pathlib import Path

import torch

from ..data import load_dataset
from ..discrete.text import heldout_bits
from ..errors import UnnoiseError
from ..run.text import tokenizer_summary

UNITS = {"char": "bits_per_char", "byte": "bits_per_byte"}


def heldout_windows(config, n: int, seed: int, split: str | None) -> tuple[torch.Tensor, str]:
    """n windows (seeded choice) of the run's data in `split` (default: the held-out texts), and the split;
    the data's tokenizer must be the run's."""
    split = split or "heldout"
    options = {**config.data.options, "split": split}
    data = load_dataset(config.data.name, **options)
    tokenizer = getattr(data, "tokenizer", None)
    if tokenizer is None or tokenizer.to_dict() != config.tokenizer:
        found = tokenizer_summary(tokenizer.to_dict()) if tokenizer is not None else "none"
        raise UnnoiseError(f"data {config.data.name!r} (split {split}): its tokenizer ({found}) is not the "
                           f"run's ({tokenizer_summary(config.tokenizer)}); the texts changed since training")
    order = torch.randperm(len(data.x), generator=torch.Generator().manual_seed(seed))[:n]
    return data.x[order], split


def evaluate_text_nll(pipe, run_dir: Path, *, n: int = 256, seed: int = 0, split: str | None = None,
                      batch: int = 64, draws: int = 8, weights: str = "ema") -> dict:
    """Held-out bits per token of a loaded text run (a Pipeline whose .text is set), with every setting."""
    config, model = pipe.config, pipe.text
    windows, split = heldout_windows(config, n, seed, split)
    result = heldout_bits(model.net, model.process, windows, draws=draws, batch=batch, seed=seed)
    unit = UNITS.get(config.tokenizer.get("kind"), "bits_per_token")
    estimate = "ELBO, an upper bound" if result["is_bound"] else "exact"
    error = result["standard_error"]
    return {"run_dir": str(run_dir), "weights": weights, "seed": seed, "process": config.model.process,
            "data": {"name": config.data.name, "options": dict(config.data.options), "split": split,
                     "windows": result["windows"], "context": int(windows.shape[1])},
            unit: result["bits_per_token"], "standard_error": error, "is_bound": result["is_bound"],
            "estimate": estimate, "draws": draws if result["is_bound"] else None,
            "summary": f"held-out {unit.replace('_', ' ').replace('per', '/').replace(' / ', '/')}: "
                       f"{result['bits_per_token']:.4f} +- {error:.4f} ({estimate}, {result['windows']} "
                       f"windows of {windows.shape[1]} tokens, split {split})"}
