"""Training throughput on CPU, fp32: our U-Net against diffusers' UNet2DModel built to the same widths
(64, 128, 128), depth (2 residual blocks per level), attention at 16x16 and in the middle, and parameter
count; same batch, AdamW at 1e-4, the epsilon-prediction MSE of a DDPM step, full training steps
(forward, backward, optimizer). Each side runs in its own process so its peak resident memory (ru_maxrss)
is its own.

    python benchmarks/train_throughput.py [--json] [--batch 32] [--steps 20] [--warmup 3] [--threads 2]

Prints {"ours_img_per_s", "diffusers_img_per_s", "ratio", "ours_peak_mb", "diffusers_peak_mb", "params"}.
Needs the bench extra (diffusers).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

try:
    import unnoise  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch

WIDTHS = (64, 128, 128)
SIZE = 32


def build(side: str) -> torch.nn.Module:
    if side == "ours":
        from unnoise.nn import build_network

        return build_network("unet", {"in_channels": 3, "image_size": SIZE, "base_channels": WIDTHS[0],
                                      "channel_mult": [w // WIDTHS[0] for w in WIDTHS], "num_res_blocks": 2,
                                      "attention_resolutions": [SIZE // 2], "num_heads": 4})
    import diffusers

    return diffusers.UNet2DModel(
        sample_size=SIZE, in_channels=3, out_channels=3, block_out_channels=WIDTHS, layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), attention_head_dim=WIDTHS[1] // 4)


def worker(side: str, batch: int, steps: int, warmup: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(side).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    alpha_bar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        x0 = torch.rand(batch, 3, SIZE, SIZE, generator=g) * 2 - 1
        t = torch.randint(0, 1000, (batch,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        ab = alpha_bar[t].view(-1, 1, 1, 1)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        out = model(x_t, t.float()) if side == "ours" else model(x_t, t).sample
        loss = torch.nn.functional.mse_loss(out, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - t0
    return {"img_per_s": batch * steps / seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "params": sum(p.numel() for p in model.parameters())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", choices=["ours", "diffusers"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch, args.steps, args.warmup, args.threads)))
        return 0
    results = {}
    for side in ("ours", "diffusers"):
        cmd = [sys.executable, __file__, "--worker", side, "--batch", str(args.batch), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--threads", str(args.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[side] = json.loads(done.stdout.strip().splitlines()[-1])
    ours, theirs = results["ours"], results["diffusers"]
    print(json.dumps({
        "ours_img_per_s": round(ours["img_per_s"], 2), "diffusers_img_per_s": round(theirs["img_per_s"], 2),
        "ratio": round(ours["img_per_s"] / theirs["img_per_s"], 3),
        "ours_peak_mb": round(ours["peak_mb"], 1), "diffusers_peak_mb": round(theirs["peak_mb"], 1),
        "params": {"ours": ours["params"], "diffusers": theirs["params"]},
        "setup": {"batch": args.batch, "steps": args.steps, "warmup": args.warmup, "threads": args.threads,
                  "image": [3, SIZE, SIZE], "widths": list(WIDTHS), "precision": "fp32", "device": "cpu"}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
