"""Text generation on Shakespeare: masked (MDLM) and uniform (D3PM) diffusion against an autoregressive
transformer of the same size trained for the same number of steps (the same training FLOPs), all trained
through the library's own path (run/training.train_run on the shakespeare-mdlm / -d3pm / -ar presets) and
evaluated through the Pipeline and eval/text.py.

    python benchmarks/text_generation.py --json                 # the full protocol: 45 minutes per model
    python benchmarks/text_generation.py --quick --json         # small models, 250 steps each: a few minutes
    python benchmarks/text_generation.py --steps 600 --json     # a fixed step budget instead of --minutes

Protocol. The step budget is set once: the MDLM run trains `calibration` steps (inside the warm-up, so the
learning-rate schedule does not depend on the total yet), its seconds per step give the steps that fit in
--minutes (or --steps sets them), and it resumes to that many steps; D3PM, AR and the evaluator then train
exactly as many steps.
Generative perplexity is measured under a separate evaluator, an AR run from another seed (train.seed=1)
on the same training plays, so the AR competitor is not scored by itself (--evaluator RUN reuses one).
Every figure is on the held-out plays (Hamlet, Twelfth Night, Richard II).

Prints one JSON object:
  {"config", "runs", "data_entropy_bits",  # mean per-window character entropy of held-out text (bits)
   "models": {"mdlm"|"d3pm"|"ar": {"parameters", "train_steps", "train_seconds",
       "heldout": {"bits_per_char", "standard_error", "is_bound"},  # ELBO bound (diffusion) or exact (AR)
       "generation": {"<nfe>" (diffusion) | "kv_cache" (AR): {"gen_perplexity", "gen_bits_per_char",
                      "entropy_bits", "samples_per_second"}},
       "float32_draws": {"nfe", "gen_perplexity", "entropy_bits", ...},  # diffusion: same seeds, float32 race
       "infill": {"top1", "sampled_accuracy" (diffusion)}, "samples": {...}}},
   "evaluator": {...}, "infill_mask_fraction", "targets": {...}, "wall_seconds"}
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from unnoise.data.shakespeare_works import load_shakespeare
from unnoise.discrete.quality import (autoregressive_infill_top1, diffusion_infill_sampled, diffusion_infill_top1,
                                      generative_perplexity, sample_entropy_bits, span_masks)
from unnoise.eval.text import evaluate_text_nll
from unnoise.pipeline import Pipeline, SampleRequest
from unnoise.run.config import apply_overrides, config_from_dict
from unnoise.run.presets import preset
from unnoise.run.threads import apply_threads
from unnoise.run.training import train_run

FULL = dict(minutes=45.0, context=256, width=256, depth=6, heads=8, batch=32, warmup=50, calibration=20,
            nfe=[16, 64, 256], samples=64, heldout=256, draws=8, infill_windows=64, infill_nfe=64)
QUICK = dict(minutes=0.4, steps=250, context=64, width=64, depth=2, heads=4, batch=32, warmup=10, calibration=10,
             nfe=[16, 64, 256], samples=32, heldout=64, draws=4, infill_windows=32, infill_nfe=32)
PRESETS = {"mdlm": "shakespeare-mdlm", "d3pm": "shakespeare-d3pm", "ar": "shakespeare-ar"}
SAMPLE_SEED = 1000  # generation seeds: SAMPLE_SEED + i (held fixed for every model and both precisions)
PROMPT, INFILL = "ROMEO:", "To be, or [MASK:8] to be"
MASK_FRACTION = 0.15


def run_config(name: str, cfg: dict, steps: int, seed: int, threads: int):
    """The preset `name` resized by `cfg`: the benchmark's only changes to the shipped presets."""
    sets = [f"data.options.context={cfg['context']}", f"model.network_options.width={cfg['width']}",
            f"model.network_options.depth={cfg['depth']}", f"model.network_options.heads={cfg['heads']}",
            f"train.batch_size={cfg['batch']}", f"train.warmup_steps={cfg['warmup']}", f"train.steps={steps}",
            f"train.seed={seed}", f"train.threads={threads}", "train.sample_every=0",
            "train.checkpoint_every=0", "train.checkpoint_minutes=0"]
    return config_from_dict(apply_overrides(preset(name), sets), where=f"benchmark {name}")


def train_budgeted(out: Path, cfg: dict, threads: int, device: str, log, evaluator: bool = True) -> dict:
    """Train MDLM (calibrating the step budget), then D3PM, AR and (unless given) the evaluator for as many
    steps."""
    mdlm = out / "mdlm"
    calibration = min(cfg["calibration"], cfg["warmup"], cfg.get("steps") or cfg["calibration"])
    first = train_run(run_config(PRESETS["mdlm"], cfg, calibration, 0, threads), mdlm, preview=False, device=device)
    seconds_per_step = first["seconds"] / first["trained_steps"]
    steps = cfg.get("steps") or max(calibration, int(cfg["minutes"] * 60 / seconds_per_step))
    log(f"budget: {seconds_per_step:.3f} s/step (mdlm) -> {steps} steps per model")
    rest = train_run(None, mdlm, resume=True, steps=steps, preview=False, device=device)
    record = {"mdlm": {"train_steps": rest["steps"], "train_seconds": round(first["seconds"] + rest["seconds"], 1)}}
    for name, seed in (("d3pm", 0), ("ar", 0), ("evaluator", 1))[:3 if evaluator else 2]:
        preset_name = PRESETS["ar" if name == "evaluator" else name]
        result = train_run(run_config(preset_name, cfg, steps, seed, threads), out / name, preview=False,
                           device=device)
        record[name] = {"train_steps": result["steps"], "train_seconds": round(result["seconds"], 1)}
        log(f"{name}: {result['steps']} steps in {result['seconds']:.0f} s")
    return record


def generation_figures(ids: torch.Tensor, seconds: float, evaluator, vocab: int) -> dict:
    score = generative_perplexity(evaluator, ids)
    return {"gen_perplexity": round(score["perplexity"], 3), "gen_bits_per_char": round(score["bits_per_token"], 4),
            "gen_bits_per_char_se": round(score["standard_error"], 4),
            "entropy_bits": round(float(sample_entropy_bits(ids, vocab).mean()), 4),
            "samples_per_second": round(len(ids) / seconds, 3)}


def timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


@torch.no_grad()
def evaluate_model(run_dir: Path, cfg: dict, evaluator, heldout: torch.Tensor, masks: torch.Tensor,
                   device: str) -> dict:
    """Held-out bits/char (eval/text.py), generation at each NFE, the float32-draw effect, infill, samples."""
    pipe = Pipeline.load(run_dir, device=device)
    model, vocab = pipe.text, pipe.config.vocab_size
    nll = evaluate_text_nll(pipe, run_dir, n=cfg["heldout"], seed=0, draws=cfg["draws"])
    out = {"parameters": sum(p.numel() for p in model.net.parameters()),
           "heldout": {"bits_per_char": round(nll["bits_per_char"], 4),
                       "standard_error": round(nll["standard_error"], 4), "is_bound": nll["is_bound"],
                       "windows": nll["data"]["windows"]}}
    n, generation = cfg["samples"], {}
    if model.process is None:
        ids, seconds = timed(lambda: pipe.sample(SampleRequest(n=n, seed=SAMPLE_SEED)))
        generation["kv_cache"] = generation_figures(ids, seconds, evaluator, vocab)
    else:
        for nfe in cfg["nfe"]:
            ids, seconds = timed(lambda: pipe.sample(SampleRequest(n=n, seed=SAMPLE_SEED, nfe=nfe)))
            generation[str(nfe)] = generation_figures(ids, seconds, evaluator, vocab)
        nfe = max(cfg["nfe"])
        ids32, seconds = timed(lambda: model.generate(range(SAMPLE_SEED, SAMPLE_SEED + n), model.context, nfe,
                                                      draw_precision="float32"))
        out["float32_draws"] = {"nfe": nfe, **generation_figures(ids32, seconds, evaluator, vocab)}
    out["generation"] = generation
    out["samples"] = {"unconditional": model.decode(ids[:2]),  # the first two at the largest NFE (diffusion)
                      "prompt": {"prompt": PROMPT, "texts": model.decode(pipe.sample(
                          SampleRequest(n=2, seed=SAMPLE_SEED, prompt=PROMPT, nfe=64)))}}
    if model.process is None:
        out["infill"] = {"top1": round(autoregressive_infill_top1(model.net, heldout, masks), 4),
                         "method": "greedy left to right from the left context only"}
    else:
        generator = torch.Generator().manual_seed(2)
        seeds = range(SAMPLE_SEED, SAMPLE_SEED + len(heldout))
        out["infill"] = {"top1": round(diffusion_infill_top1(model.net, model.process, heldout, masks, generator), 4),
                         "sampled_accuracy": round(diffusion_infill_sampled(model.net, model.process, heldout, masks,
                                                                            cfg["infill_nfe"], seeds), 4),
                         "sampled_nfe": cfg["infill_nfe"], "method": "x0 argmax seeing both sides; and one "
                         "ancestral sample with the known characters held"}
        out["samples"]["infill"] = {"infill": INFILL, "texts": model.decode(pipe.sample(
            SampleRequest(n=2, seed=SAMPLE_SEED, infill=INFILL, nfe=64)))}
    return out


def targets(models: dict, data_entropy: float) -> dict:
    """The issue's targets as ratios: MDLM bound / AR bits, MDLM gen. perplexity at the largest NFE / AR's,
    and the relative gap of MDLM's per-sample entropy there to the data's."""
    ar, mdlm = models["ar"], models["mdlm"]
    top = str(max(int(k) for k in mdlm["generation"]))
    ar_ppl = ar["generation"]["kv_cache"]["gen_perplexity"]
    return {"mdlm_bound_over_ar_bits": round(mdlm["heldout"]["bits_per_char"] / ar["heldout"]["bits_per_char"], 4),
            "mdlm_bound_over_ar_target": 1.10,
            f"mdlm_gen_perplexity_nfe{top}_over_ar": round(mdlm["generation"][top]["gen_perplexity"] / ar_ppl, 4),
            "gen_perplexity_target": 1.3,
            f"mdlm_entropy_nfe{top}_relative_gap": round(mdlm["generation"][top]["entropy_bits"] / data_entropy - 1, 4),
            "entropy_target_relative": 0.05}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models and budget: a few minutes in all")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--minutes", type=float, help="training minutes per model (default 45; --quick trains a "
                                                      "fixed 250 steps instead, about 40 s each on a quiet core)")
    parser.add_argument("--steps", type=int, help="training steps per model instead of the --minutes budget")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the free cores)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    parser.add_argument("--out", type=Path, help="folder for the runs (default: a new temporary folder)")
    parser.add_argument("--evaluator", type=Path, help="an existing AR run to score samples (default: train one)")
    args = parser.parse_args(argv)
    wall = time.perf_counter()
    cfg = dict(QUICK if args.quick else FULL)
    if args.minutes is not None:
        cfg["minutes"], cfg["steps"] = args.minutes, None
    if args.steps is not None:
        if args.steps < 1:
            parser.error(f"--steps must be >= 1, got {args.steps}")
        cfg["steps"] = args.steps
    out = args.out or Path(tempfile.mkdtemp(prefix="text_generation-"))
    if out.exists() and any(out.iterdir()):
        parser.error(f"--out {out} is not empty; the benchmark trains fresh runs")
    log = (lambda message: None) if args.json else (lambda message: print(message, file=sys.stderr, flush=True))
    apply_threads(args.threads)
    record = train_budgeted(out, cfg, args.threads, args.device, log, evaluator=args.evaluator is None)
    evaluator_dir = args.evaluator or out / "evaluator"
    evaluator_pipe = Pipeline.load(evaluator_dir, device=args.device)
    evaluator = evaluator_pipe.text
    mdlm_config = Pipeline.load(out / "mdlm", device=args.device).config
    if evaluator is None or evaluator.process is not None or evaluator_pipe.config.tokenizer != mdlm_config.tokenizer:
        parser.error(f"--evaluator {evaluator_dir}: needs an autoregressive text run with the same tokenizer")
    heldout = load_shakespeare("heldout", context=cfg["context"]).x
    heldout = heldout[torch.randperm(len(heldout), generator=torch.Generator().manual_seed(1))[:cfg["infill_windows"]]]
    masks = span_masks(len(heldout), cfg["context"], MASK_FRACTION, torch.Generator().manual_seed(1))
    models = {}
    for name in ("mdlm", "d3pm", "ar"):
        models[name] = {**record[name], **evaluate_model(out / name, cfg, evaluator.net, heldout, masks,
                                                         args.device)}
        log(f"{name}: {json.dumps(models[name]['heldout'])}")
    windows = load_shakespeare("heldout", context=cfg["context"]).x
    data_entropy = float(sample_entropy_bits(windows, evaluator.tokenizer.vocab_size).mean())
    result = {"command": " ".join(["python", "benchmarks/text_generation.py", *map(shlex.quote, sys.argv[1:])])
              if argv is None else None,
              "config": {**cfg, "threads": torch.get_num_threads(), "device": args.device,
                         "presets": PRESETS, "sample_seed": SAMPLE_SEED},
              "runs": {name: str(out / name) for name in ("mdlm", "d3pm", "ar")},
              "data_entropy_bits": round(data_entropy, 4),
              "infill_mask_fraction": round(float(masks.float().mean()), 4),
              "evaluator": {"run": str(evaluator_dir), **record.get("evaluator", {}),
                            "parameters": sum(p.numel() for p in evaluator.net.parameters())},
              "models": models, "targets": targets(models, data_entropy),
              "wall_seconds": round(time.perf_counter() - wall, 1)}
    print(json.dumps(result, indent=None if args.json else 2))
    return result


if __name__ == "__main__":
    main()
