"""Bits/dim on held-out built-in digits: a model trained with the hybrid loss (learned variances) against
the same model trained with L_simple alone, at equal steps.

Both runs: the digits at their native 8x8 (17 grey levels, so bits/dim of the discrete data), the MLP of
the `digits` preset on the discrete DDPM chain (linear betas, 1000 steps, epsilon prediction), trained on
the "train" split (1,500 images) and evaluated on the 297 held-out "test" images:
  hybrid  model.learned_variance=true, train.vlb_weight=0.001, train.density=importance
  simple  the same network and steps with L_simple; its bound uses the better of the fixed variances
          (beta_t or beta~_t), since it has no learned one.
VLB = all 1,000 terms, one x_t draw per term; ODE = the probability-flow NLL with uniform dequantization,
Hutchinson divergence (Rademacher, `--draws` per image), dopri5 at rtol = atol = 1e-5.

    python benchmarks/likelihood.py [--json] [--steps 1500] [--n 297] [--threads 2]
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

HYBRID = {"model.learned_variance": True, "train.vlb_weight": 0.001, "train.density": "importance"}


def config(steps: int, extra: dict):
    from unnoise.run.config import apply_overrides, config_from_dict
    from unnoise.run.presets import preset

    d = json.loads(json.dumps(preset("digits")))
    d["data"] = {"name": "digits", "options": {"split": "train"}}
    d["model"]["process"], d["model"]["prediction"], d["model"]["process_options"] = "ddpm", "eps", {}
    d["train"].update(steps=steps, sample_every=0, checkpoint_every=0, weighting="none", density="uniform")
    return config_from_dict(apply_overrides(d, [f"{k}={json.dumps(v)}" for k, v in extra.items()]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--n", type=int, default=297)
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_likelihood"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from unnoise.eval.nll import evaluate_nll, evaluation_data, vlb_estimate
    from unnoise.pipeline import Pipeline
    from unnoise.run.training import train_run as train

    result = {"steps": args.steps, "train_seconds_by_model": {}}
    for name, extra in (("hybrid", HYBRID), ("simple", {})):
        run = args.out / name
        t0 = time.perf_counter()
        train(config(args.steps, extra), run)
        result["train_seconds_by_model"][name] = round(time.perf_counter() - t0, 1)
        best = evaluate_nll(run, n=args.n, split="test", vlb_variance=None if name == "hybrid" else "fixed_large",
                            draws=args.draws, batch=args.n)
        if name == "simple":  # no learned variance: bound with the better fixed one
            pipe = Pipeline.load(run)
            denoiser, run_config = pipe.denoiser, pipe.config
            small = vlb_estimate(denoiser, evaluation_data(run_config, args.n, 0, "test"),
                                 levels=best["data"]["levels"], variance="fixed_small", batch=args.n, seed=0)
            by_variance = {"fixed_large": best["vlb"]["bpd"], "fixed_small": small["bpd"]}
            if small["bpd"] < best["vlb"]["bpd"]:
                best["vlb"] = small
        result[name] = {"vlb_bpd": best["vlb"]["bpd"], "vlb_bpd_stderr": best["vlb"]["bpd_stderr"],
                        "vlb_variance": best["vlb"]["variance"], "vlb_terms_bpd": best["vlb"]["terms_bpd"],
                        "ode_bpd": best["ode"]["bpd"], "ode_bpd_stderr": best["ode"]["bpd_stderr"],
                        "ode_nfe": best["ode"]["nfe"]}
        if name == "simple":
            result[name]["vlb_bpd_by_variance"] = by_variance
    result["train_seconds"] = round(sum(result["train_seconds_by_model"].values()), 1)
    result["hybrid_vlb_below_simple"] = result["hybrid"]["vlb_bpd"] < result["simple"]["vlb_bpd"]
    result["setup"] = {"data": "digits 8x8, 17 levels, train split 1500 / test split 297", "n_test": args.n,
                       "network": "digits preset MLP", "process": "ddpm linear 1000", "draws": args.draws,
                       "threads": args.threads}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
