"""Text generation on Shakespeare: masked (MDLM) and uniform (D3PM) diffusion against an autoregressive
transformer with the same architecture and the same training time.

    python benchmarks/text_generation.py --json            # the full comparison (hours on 2 CPU cores)
    python benchmarks/text_generation.py --quick --json    # ~1 minute of training: real, small numbers

Prints one JSON object:
  {"config": {...},
   "data_entropy": H,  # per-sample character entropy of held-out windows, bits
   "models": {"mdlm"|"d3pm"|"ar": {"parameters", "steps", "train_seconds",
              "heldout_bits_per_char", "heldout_bits_per_char_se", "is_bound"}},
   "generation": {"mdlm"|"d3pm": {"<nfe>": {"gen_perplexity", "entropy", "samples_per_second"}},
                  "ar": {"kv_cache": {...}}},
   "infill": {"mask_fraction", "mdlm_top1", "d3pm_top1", "ar_left_context_top1"}}
Generative perplexity is measured under the AR model; entropy is the mean per-sample character entropy
(bits), to be read against data_entropy (a low-temperature sampler lowers both).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from unnoise.data.shakespeare_works import load_shakespeare
from unnoise.discrete.autoregressive import autoregressive_nll, sample_autoregressive, with_bos
from unnoise.discrete.process import make_process
from unnoise.discrete.sample import sample_tokens
from unnoise.discrete.text import heldout_bits
from unnoise.nn.transformer import Transformer, TransformerConfig
from unnoise.objectives.autoregressive import AutoregressiveObjective
from unnoise.objectives.masked import MaskedDiffusionObjective

FULL = dict(context=256, width=256, depth=6, heads=8, batch=32, seconds=2700.0, nfe=(16, 64, 256), samples=64,
            heldout=256, draws=8, infill_windows=64)
QUICK = dict(context=64, width=64, depth=2, heads=4, batch=32, seconds=20.0, nfe=(16, 64), samples=16,
             heldout=64, draws=4, infill_windows=16)


def build(kind: str, vocab: int, cfg: dict) -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=vocab, input_size=vocab + 1, length=cfg["context"],
                                         width=cfg["width"], depth=cfg["depth"], heads=cfg["heads"],
                                         causal=kind == "ar", time_conditioned=kind == "d3pm"))


def train(objective, data, cfg: dict, seed: int = 0) -> dict:
    """AdamW for cfg['seconds'] of wall clock (the same budget for every model)."""
    optimizer = torch.optim.AdamW(objective.trainable_parameters(), lr=1e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    start, steps = time.perf_counter(), 0
    objective.model.train()
    while time.perf_counter() - start < cfg["seconds"]:
        rows = torch.randint(0, len(data), (cfg["batch"],), generator=generator)
        loss = objective.loss({"x": data.x[rows]}, generator).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(objective.trainable_parameters(), 1.0)
        optimizer.step()
        steps += 1
    objective.model.eval()
    return {"steps": steps, "train_seconds": round(time.perf_counter() - start, 1),
            "parameters": sum(p.numel() for p in objective.model.parameters())}


def char_entropy(tokens: torch.Tensor, vocab: int) -> float:
    """Mean over samples of the entropy (bits) of each sample's character histogram."""
    counts = torch.nn.functional.one_hot(tokens, vocab).sum(1).double()
    p = counts / counts.sum(-1, keepdim=True)
    return float(-(p * torch.log2(p.clamp_min(1e-300))).sum(-1).mean())


@torch.no_grad()
def generation(kind, model, process, ar_model, vocab, cfg) -> dict:
    seeds, length, out = range(cfg["samples"]), cfg["context"], {}
    for nfe in cfg["nfe"]:
        start = time.perf_counter()
        samples = sample_tokens(model, process, seeds, length, nfe)
        seconds = time.perf_counter() - start
        nll = autoregressive_nll(ar_model, samples) / length
        out[str(nfe)] = {"gen_perplexity": round(float(torch.exp(nll.mean())), 3),
                         "entropy": round(char_entropy(samples, vocab), 4),
                         "samples_per_second": round(len(seeds) / seconds, 3)}
    return out


@torch.no_grad()
def ar_generation(ar_model, vocab, cfg) -> dict:
    start = time.perf_counter()
    samples = sample_autoregressive(ar_model, range(cfg["samples"]), cfg["context"])
    seconds = time.perf_counter() - start
    nll = autoregressive_nll(ar_model, samples) / cfg["context"]
    return {"kv_cache": {"gen_perplexity": round(float(torch.exp(nll.mean())), 3),
                         "entropy": round(char_entropy(samples, vocab), 4),
                         "samples_per_second": round(cfg["samples"] / seconds, 3)}}


def span_mask(length: int, fraction: float, generator: torch.Generator, span: int = 8) -> torch.Tensor:
    """A (length,) boolean mask of round(fraction * length / span) disjoint spans of `span` characters,
    never the first span (the AR model needs some left context)."""
    slots = length // span
    count = min(slots - 1, max(1, round(fraction * length / span)))
    chosen = 1 + torch.randperm(slots - 1, generator=generator)[:count]
    mask = torch.zeros(length, dtype=torch.bool)
    for slot in chosen.tolist():
        mask[slot * span:(slot + 1) * span] = True
    return mask


@torch.no_grad()
def infill(models: dict, processes: dict, heldout, cfg: dict, fraction: float = 0.15) -> dict:
    """Top-1 accuracy on masked spans: diffusion models see both sides (one x_0 prediction); the AR model
    decodes each span greedily from its left context only."""
    generator = torch.Generator().manual_seed(1)
    x = heldout.x[: cfg["infill_windows"]]
    masks = torch.stack([span_mask(x.shape[1], fraction, generator) for _ in range(len(x))])
    result = {"mask_fraction": round(float(masks.float().mean()), 4)}
    for name in ("mdlm", "d3pm"):
        process, t = processes[name], torch.full((len(x),), fraction, dtype=torch.float64)
        noisy = torch.where(masks, process.mask_id if name == "mdlm" else 0, x)
        if name == "d3pm":  # uniform noise: masked positions get random tokens
            noisy = torch.where(masks, torch.randint(0, process.vocab_size, x.shape, generator=generator), x)
        guess = models[name](noisy, t).argmax(-1)
        result[f"{name}_top1"] = round(float((guess == x)[masks].float().mean()), 4)
    result["ar_left_context_top1"] = round(ar_infill_accuracy(models["ar"], x, masks), 4)
    return result


def ar_infill_accuracy(model, x: torch.Tensor, masks: torch.Tensor) -> float:
    vocab, filled = model.config.vocab_size, x.clone()
    for position in range(x.shape[1]):  # greedy left to right, own guesses inside each span
        rows = masks[:, position]
        if bool(rows.any()):
            logits = model(with_bos(filled[rows, : position + 1], vocab))[:, position]
            filled[rows, position] = logits.argmax(-1)
    return float((filled == x)[masks].float().mean())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models, ~20 s of training each")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--seconds", type=float, default=None, help="training seconds per model")
    args = parser.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.seconds:
        cfg["seconds"] = args.seconds
    train_data = load_shakespeare("train", context=cfg["context"])
    heldout = load_shakespeare("heldout", context=cfg["context"])
    vocab = train_data.vocab_size
    processes = {"mdlm": make_process("absorbing", vocab, "linear"), "d3pm": make_process("uniform", vocab, "linear")}
    models, record = {}, {}
    for name in ("ar", "mdlm", "d3pm"):
        models[name] = build(name, vocab, cfg)
        objective = (AutoregressiveObjective(models[name]) if name == "ar"
                     else MaskedDiffusionObjective(models[name], processes[name]))
        record[name] = train(objective, train_data, cfg)
        score = heldout_bits(models[name], processes.get(name), heldout.x[: cfg["heldout"]], cfg["draws"])
        record[name].update(heldout_bits_per_char=round(score["bits_per_token"], 4),
                            heldout_bits_per_char_se=round(score["standard_error"], 4), is_bound=score["is_bound"])
        if not args.json:
            print(name, record[name], flush=True)
    result = {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
              "data_entropy": round(char_entropy(heldout.x[: cfg["samples"]], vocab), 4), "models": record,
              "generation": {name: generation(name, models[name], processes[name], models["ar"], vocab, cfg)
                             for name in ("mdlm", "d3pm")},
              "infill": infill(models, processes, heldout, cfg)}
    result["generation"]["ar"] = ar_generation(models["ar"], vocab, cfg)
    print(json.dumps(result, indent=None if args.json else 2))
    return result


if __name__ == "__main__":
    main()
