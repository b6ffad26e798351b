"""Latent diffusion (issue 20): autoencoder reconstruction quality on landscapes and photo crops.

Trains a KL autoencoder (f = 4, 4 latent channels; L1 + SSIM + KL 1e-6) on each dataset's train split
for a wall-clock budget, with its objective driven by a plain Adam loop (the trainer does not run
autoencoder runs yet), measures the latent scale, and reports PSNR and SSIM on held-out images:
landscapes of the "test" split (another random stream) and crops of the photographs never trained on.
The "race" (latent vs pixel text-to-image) and "hd" (128 px, f = 8) sections need latent runs in the
trainer and pipeline and are reported as null until then.

    python benchmarks/latent_diffusion.py --json [--quick] [--seconds 600] [--size 64]

--quick: 32 px, a narrower network and about one minute per dataset (about 2 minutes in all).
Prints {"autoencoder": {"landscapes": {"psnr", "ssim", "rfd", ...}, "photos": {...}, "f": 4},
"race": null, "hd": null}. Targets at f = 4: PSNR >= 30 dB (landscapes), >= 26 dB (photos).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

try:
    import unnoise  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch

EVAL_IMAGES = 256


def datasets(name: str, size: int, train_n: int):
    """(train images, held-out images) of `name`."""
    if name == "landscapes":
        from unnoise.data.landscapes import load_landscapes
        return (load_landscapes(size=size, n=train_n, split="train").x,
                load_landscapes(size=size, n=EVAL_IMAGES, split="test").x)
    from unnoise.data.photos import load_photos
    return (load_photos(size=size, n=train_n, split="train").x,
            load_photos(size=size, n=EVAL_IMAGES, split="test").x)


def train_autoencoder(images: torch.Tensor, seconds: float, channels: int, batch: int, lr: float):
    """An f = 4 autoencoder trained for `seconds` of wall clock; returns it and the steps taken."""
    from unnoise.nn.autoencoder import KLAutoencoder
    from unnoise.objectives.autoencoder import AutoencoderObjective

    torch.manual_seed(0)
    model = KLAutoencoder(factor=4, channels=channels)
    objective = AutoencoderObjective(model)
    optimizer = torch.optim.Adam(objective.trainable_parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    start, steps = time.time(), 0
    while time.time() - start < seconds:
        index = torch.randint(len(images), (batch,), generator=generator)
        loss = objective.loss({"x": images[index]}, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.mean().backward()
        optimizer.step()
        objective.observe({}, loss.detach())
        steps += 1
    return model.eval(), steps


@torch.no_grad()
def evaluate(model, train: torch.Tensor, heldout: torch.Tensor) -> dict:
    """PSNR and SSIM of the held-out reconstructions through the scaled-latent codec."""
    from unnoise.codec import AutoencoderCodec, measure_latent_scale
    from unnoise.eval.reconstruction import reconstruction_metrics

    codec = AutoencoderCodec(model, measure_latent_scale(model, train[:1024]))
    reconstructions = torch.cat([codec.decode(codec.encode(chunk)) for chunk in heldout.split(64)])
    metrics = reconstruction_metrics(heldout, reconstructions.clamp(-1, 1))
    return {**{k: round(v, 4) for k, v in metrics.items()}, "rfd": None,
            "latent_scale": round(codec.latent_scale.scale, 5), "latent_shift": round(codec.latent_scale.shift, 5)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="32 px, about one minute per dataset")
    parser.add_argument("--seconds", type=float, default=600.0, help="training seconds per dataset")
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    size, seconds, channels, batch = (32, 55.0, 32, 16) if args.quick else (args.size, args.seconds, 64, 16)
    report = {"autoencoder": {"f": 4, "size": size}, "race": None, "hd": None}
    for name in ("landscapes", "photos"):
        train, heldout = datasets(name, size, 2000 if args.quick else 4000)
        model, steps = train_autoencoder(train, seconds, channels, batch, lr=1e-3)
        result = evaluate(model, train, heldout)
        report["autoencoder"][name] = {**result, "steps": steps, "train_seconds": round(seconds, 1),
                                       "images_seen": steps * batch}
        if not args.json:
            print(f"{name}: PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f} after {steps} steps")
    if args.json:
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
