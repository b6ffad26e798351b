"""GPU report: bf16 + torch.compile training throughput and achieved TFLOP/s of our U-Net and diffusers'
UNet2DModel built to the same widths, depth and attention, and sampling throughput of both through our
samplers (a diffusers network becomes a denoiser with a three-line adapter).

Training: full steps (forward, backward, AdamW) of the epsilon-prediction MSE of a DDPM step on random
images, the network compiled with torch.compile and run under bf16 autocast (fp32 master weights).
FLOPs of one training step are counted once on the eager network with torch.utils.flop_counter
(matmuls and convolutions, forward and backward); achieved TFLOP/s = counted FLOPs x steps / seconds.
Sampling: Heun (2 network calls per step) on an EDM grid, the compiled network in eval mode under bf16.

    python benchmarks/gpu_report.py [--json] [--quick] [--device auto|cpu|cuda|cuda:N] [--no-compile]

--quick: tiny sizes that finish on a laptop CPU in under 2 minutes (a smoke test of the script; on a CPU
the networks run eager, since compiling both and their backward passes alone takes minutes there).
Full mode (64x64 RGB, widths 128-256-256, batch 128) is sized for about 5 minutes on one recent GPU.
Prints {"device", "setup", "ours": {...}, "diffusers": {...}, "ratio"}. Needs the bench extra (diffusers).
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
from torch.utils.flop_counter import FlopCounterMode

from unnoise.device import autocast, resolve_device, synchronize

FULL = dict(size=64, widths=(128, 256, 256), batch=128, steps=40, warmup=5, sample_batch=256, sample_steps=18)
QUICK = dict(size=16, widths=(16, 32), batch=8, steps=3, warmup=1, sample_batch=8, sample_steps=3)


def build(side: str, size: int, widths: tuple) -> torch.nn.Module:
    """Both networks: 2 residual blocks per level, attention at the second level and in the middle."""
    attention_level = size // 2
    if side == "ours":
        from unnoise.nn import build_network

        return build_network("unet", {"in_channels": 3, "image_size": size, "base_channels": widths[0],
                                      "channel_mult": [w // widths[0] for w in widths], "num_res_blocks": 2,
                                      "attention_resolutions": [attention_level], "num_heads": 4,
                                      "groups": min(32, widths[0])})
    import diffusers

    down = ["DownBlock2D"] * len(widths)
    up = ["UpBlock2D"] * len(widths)
    down[1], up[-2] = "AttnDownBlock2D", "AttnUpBlock2D"
    return diffusers.UNet2DModel(sample_size=size, in_channels=3, out_channels=3, block_out_channels=widths,
                                 layers_per_block=2, down_block_types=tuple(down), up_block_types=tuple(up),
                                 attention_head_dim=widths[1] // 4, norm_num_groups=min(32, widths[0]))


class Network(torch.nn.Module):
    """One calling convention for both: out = net(x, t) (a diffusers model returns `.sample`)."""

    def __init__(self, net: torch.nn.Module, side: str):
        super().__init__()
        self.net, self.side = net, side

    def forward(self, x, t, cond=None):
        return self.net(x, t) if self.side == "ours" else self.net(x, t).sample


def training_step(model, optimizer, batch: int, size: int, device, generator, alpha_bar):
    """A full DDPM epsilon-prediction training step under bf16 autocast."""
    x0 = torch.rand(batch, 3, size, size, generator=generator).mul(2).sub(1).to(device)
    t = torch.randint(0, 1000, (batch,), generator=generator)
    noise = torch.randn(x0.shape, generator=generator).to(device)
    ab = alpha_bar[t].view(-1, 1, 1, 1).to(device)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    with autocast(device, "bf16"):
        loss = torch.nn.functional.mse_loss(model(x_t, t.to(device).float()).float(), noise)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def count_training_flops(network, batch: int, size: int, device) -> int:
    """FLOPs of one eager training step (forward + backward) of `network`."""
    x = torch.randn(batch, 3, size, size, device=device)
    t = torch.full((batch,), 500.0, device=device)
    with FlopCounterMode(display=False) as counter:
        network(x, t).float().pow(2).mean().backward()
    network.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def compiled(module, backend):
    return module if backend is None else torch.compile(module, backend=backend)


def train_report(side: str, cfg: dict, device, compile_) -> dict:
    torch.manual_seed(0)
    network = Network(build(side, cfg["size"], cfg["widths"]), side).to(device).train()
    flops = count_training_flops(network, cfg["batch"], cfg["size"], device)
    model = compiled(network, compile_)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    alpha_bar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(cfg["warmup"]):  # includes compilation
        training_step(model, optimizer, cfg["batch"], cfg["size"], device, g, alpha_bar)
    synchronize(device)
    warmup_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(cfg["steps"]):
        training_step(model, optimizer, cfg["batch"], cfg["size"], device, g, alpha_bar)
    synchronize(device)
    seconds = time.perf_counter() - t0
    return {"params": sum(p.numel() for p in network.parameters()), "train_img_per_s": cfg["batch"] * cfg["steps"] / seconds,
            "train_tflop_per_s": flops * cfg["steps"] / seconds / 1e12, "flops_per_step": flops,
            "warmup_seconds": round(warmup_seconds, 2), "network": network}


@torch.no_grad()
def sample_report(network, cfg: dict, device, compile_) -> dict:
    """Heun sampling of a batch through our samplers, the network wrapped as a DDPM eps denoiser."""
    from unnoise.grids import sigma_grid
    from unnoise.param import Denoiser
    from unnoise.process import make_process
    from unnoise.sample import generate
    from unnoise.sample.ode import heun

    process = make_process("ddpm")
    net = compiled(network.eval(), compile_)
    denoiser = Denoiser(net, process, "eps")
    sigmas = sigma_grid("karras", process, cfg["sample_steps"])
    shape, seeds = (3, cfg["size"], cfg["size"]), range(cfg["sample_batch"])

    def run():
        with autocast(device, "bf16"):
            return generate(denoiser, shape, sigmas, heun, seeds=seeds, device=device)

    run()  # compile and warm up
    synchronize(device)
    t0 = time.perf_counter()
    x = run()
    synchronize(device)
    seconds = time.perf_counter() - t0
    return {"sample_img_per_s": cfg["sample_batch"] / seconds, "sample_nfe": 2 * cfg["sample_steps"] - 1,
            "sample_finite": bool(torch.isfinite(x).all())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default prints it indented)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a CPU smoke test in under 2 minutes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-compile", action="store_true", help="eager networks (no torch.compile)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    cfg = QUICK if args.quick else FULL
    # a CPU smoke test runs eager: compiling both networks and their backward passes takes minutes there
    compile_ = None if args.no_compile or (args.quick and device.type == "cpu") else "inductor"
    report = {"device": torch.cuda.get_device_name(device) if device.type != "cpu" else "cpu",
              "setup": {**{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                        "precision": "bf16", "compile": compile_, "torch": torch.__version__}}
    t_start = time.perf_counter()
    for side in ("ours", "diffusers"):
        torch._dynamo.reset()
        result = train_report(side, cfg, device, compile_)
        network = result.pop("network")
        result.update(sample_report(network, cfg, device, compile_))
        report[side] = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in result.items()}
        del network
    report["ratio"] = {key: float(f"{report['ours'][key] / report['diffusers'][key]:.4g}")
                       for key in ("train_img_per_s", "train_tflop_per_s", "sample_img_per_s")}
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
