"""CPU training speed of our own recipes: fp32 against bf16 autocast, channels-last and torch.compile, each
through the real training loop (`train_run`) on the presets' networks, at equal loss.

For each network (the `digits` MLP, the `shapes` U-Net) and each variant that applies to it, a fresh process
trains the preset from the same seed for --steps steps and reports images per second (from the run's
metrics log, between the first and the last logged step, so compilation and warm-up are not counted) and
the mean training loss over the last quarter of the logged steps. fp32 also trains from a second seed: the
two fp32 losses' difference is the noise a variant's loss is judged against (equal within noise: the gap to
fp32 at most 2x that difference, or 2% of the loss if larger).

    python benchmarks/cpu_training_speed.py --json [--networks digits shapes] [--threads 1]
    python benchmarks/cpu_training_speed.py --json --quick        # a minute or two: a path check

Prints per network: {variant: {img_per_s, speedup, final_loss, loss_gap, equal_loss}}, the fastest variant
at equal loss, and the CPU's capabilities (ISA level torch detected, avx512_bf16 / amx_bf16 flags).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import unnoise  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch

VARIANTS = {  # name -> train.* settings
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "channels_last": {"channels_last": True},
    "bf16_channels_last": {"precision": "bf16", "channels_last": True},
    "compile": {"compile": True},
    "bf16_compile": {"precision": "bf16", "compile": True},
}
CONV_ONLY = {"channels_last", "bf16_channels_last"}  # NHWC means nothing to an MLP
NETWORKS = {"digits": {"preset": "digits", "steps": 1000, "log_every": 25},
            "shapes": {"preset": "shapes", "steps": 200, "log_every": 10}}
QUICK_STEPS = {"digits": 100, "shapes": 20}


def cpu_capabilities() -> dict:
    flags = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    return {"torch_capability": torch.backends.cpu.get_cpu_capability(),
            **{flag: flag in flags for flag in ("avx512_bf16", "amx_bf16", "avx512f", "avx2")}}


def worker(network: str, variant: str, seed: int, steps: int, threads: int, out: Path) -> dict:
    """Train one variant in `out`; images per second and the final loss from its metrics log."""
    from unnoise.run.config import apply_overrides, config_from_dict
    from unnoise.run.presets import preset
    from unnoise.run.training import train_run

    torch.set_num_threads(threads)
    spec = NETWORKS[network]
    overrides = [f"train.steps={steps}", f"train.seed={seed}", "train.sample_every=0",
                 f"train.checkpoint_every={steps}", f"train.log_every={spec['log_every']}",
                 "data.options.split=train",
                 *(f"train.{key}={str(value).lower()}" for key, value in VARIANTS[variant].items())]
    train_run(config_from_dict(apply_overrides(preset(spec["preset"]), overrides)), out)
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    log = [r for r in log if "loss" in r and "seconds" in r]
    first, last = log[0], log[-1]
    tail = log[-max(1, len(log) // 4):]
    return {"img_per_s": (last["images_seen"] - first["images_seen"]) / (last["seconds"] - first["seconds"]),
            "final_loss": sum(r["loss"] for r in tail) / len(tail)}


def run_variant(network: str, variant: str, seed: int, steps: int, threads: int, work: Path) -> dict:
    out = work / f"{network}-{variant}-seed{seed}"
    cmd = [sys.executable, __file__, "--worker", network, variant, str(seed), str(steps), str(threads), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["(no output)"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(network: str, steps: int, threads: int, work: Path) -> dict:
    variants = [v for v in VARIANTS if network != "digits" or v not in CONV_ONLY]
    results = {v: run_variant(network, v, 0, steps, threads, work) for v in variants}
    second = run_variant(network, "fp32", 1, steps, threads, work)
    base = results["fp32"]
    noise = abs(base["final_loss"] - second["final_loss"])
    tolerance = max(2 * noise, 0.02 * base["final_loss"])
    for name, r in results.items():
        if "error" in r:
            continue
        r["speedup"] = round(r["img_per_s"] / base["img_per_s"], 3)
        r["loss_gap"] = round(r["final_loss"] - base["final_loss"], 5)
        r["equal_loss"] = abs(r["loss_gap"]) <= tolerance
        r["img_per_s"], r["final_loss"] = round(r["img_per_s"], 1), round(r["final_loss"], 5)
    eligible = {n: r for n, r in results.items() if r.get("equal_loss")}
    return {"variants": results, "fp32_seed1_loss": round(second["final_loss"], 5),
            "loss_tolerance": round(tolerance, 5), "steps": steps,
            "fastest_at_equal_loss": max(eligible, key=lambda n: eligible[n]["img_per_s"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--quick", action="store_true", help="a few steps per variant")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--work", type=Path, help="folder for the runs (default: a new temporary folder)")
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        network, variant, seed, steps, threads, out = args.worker
        print(json.dumps(worker(network, variant, int(seed), int(steps), int(threads), Path(out))))
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="unnoise-cpu-speed-"))
    result = {"cpu": cpu_capabilities(), "threads": args.threads, "quick": args.quick}
    for network in args.networks:
        steps = QUICK_STEPS[network] if args.quick else NETWORKS[network]["steps"]
        result[network] = measure(network, steps, args.threads, work)
        if not args.json:
            print(f"{network}: fastest at equal loss: {result[network]['fastest_at_equal_loss']}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
