"""Named starting configs (nested dicts); `--set` overrides fill in the rest."""
from __future__ import annotations

from ..errors import unknown_name

PRESETS: dict[str, dict] = {
    # The `make demo` job: 8x8 digits on 2 CPU cores in a few minutes.
    "digits": {
        "data": {"name": "digits"},
        "model": {"network": "unet", "process": "edm", "prediction": "edm",
                  "network_options": {"base_channels": 64, "channel_mult": [1, 2], "num_res_blocks": 1,
                                      "attention_resolutions": [4]}},
        "train": {"steps": 1500, "batch_size": 128, "lr": 1e-3, "warmup_steps": 100, "lr_schedule": "cosine",
                  "ema_decay": 0.995, "density": "lognormal", "weighting": "none",
                  "sample_every": 500, "checkpoint_every": 500},
        "sample": {"sampler": "heun", "steps": 18, "grid": "karras", "n": 100},
    },
    "toy2d": {
        "data": {"name": "toy2d", "options": {"kind": "moons"}},
        "model": {"network": "mlp", "process": "ddpm", "prediction": "eps",
                  "network_options": {"hidden": 256, "depth": 4}},
        "train": {"steps": 3000, "batch_size": 512, "lr": 1e-3, "sample_every": 1000, "checkpoint_every": 1000},
        "sample": {"sampler": "heun", "steps": 25, "grid": "karras", "n": 2000},
    },
}


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise unknown_name("preset", name, PRESETS)
    return PRESETS[name]
