"""Measuring generated text: generative perplexity under a fixed autoregressive evaluator, the per-sample
token entropy that exposes low-temperature sampling, and infilling accuracy on masked spans.

Generative perplexity alone rewards dull text (a sampler stuck on 'the the the' scores well), so it is read
together with each sample's token entropy against the data's (Zheng et al. 2024, sec. 4): a sampler whose
entropy falls below the data's is sampling at a lower temperature than the model it claims to sample.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..device import cpu
from ..errors import UnnoiseError
from .autoregressive import autoregressive_nll, with_bos
from .process import CategoricalProcess
from .sample import FREE, sample_tokens


def sample_entropy_bits(tokens: Tensor, vocab_size: int) -> Tensor:
    """Entropy in bits of each row's token histogram, H = -sum_k f_k log2 f_k: (B,) float64."""
    counts = torch.nn.functional.one_hot(tokens.long(), vocab_size).sum(-2).to(torch.float64)
    frequencies = counts / counts.sum(-1, keepdim=True)
    return -(torch.special.xlogy(frequencies, frequencies) / math.log(2.0)).sum(-1)


@torch.no_grad()
def generative_perplexity(evaluator, tokens: Tensor, batch: int = 64) -> dict:
    """exp(mean nats per token) of `tokens` (N, L) under the causal `evaluator`, with the mean bits per token
    and its standard error across samples."""
    if not getattr(getattr(evaluator, "config", None), "causal", False):
        raise UnnoiseError("generative perplexity needs a causal (autoregressive) evaluator")
    device = _device_of(evaluator)
    nats = torch.cat([autoregressive_nll(evaluator, tokens[i:i + batch].to(device)).cpu()
                      for i in range(0, len(tokens), batch)]) / tokens.shape[1]
    bits = nats / math.log(2.0)
    error = float(bits.std() / math.sqrt(len(bits))) if len(bits) > 1 else float("nan")
    return {"perplexity": float(torch.exp(nats.mean())), "bits_per_token": float(bits.mean()),
            "standard_error": error, "samples": len(bits)}


def span_masks(count: int, length: int, fraction: float, generator: torch.Generator, span: int = 8) -> Tensor:
    """(count, length) booleans: in each row round(fraction * length / span) disjoint spans of `span` tokens on
    the span grid, never the first span (so a left-to-right model always has some context)."""
    slots = length // span
    chosen = max(1, min(slots - 1, round(fraction * length / span)))
    if slots < 2:
        raise UnnoiseError(f"span masks: length {length} holds fewer than two spans of {span}")
    masks = torch.zeros(count, length, dtype=torch.bool)
    for row in range(count):
        for slot in (1 + torch.randperm(slots - 1, generator=generator)[:chosen]).tolist():
            masks[row, slot * span:(slot + 1) * span] = True
    return masks


def time_of_noise_level(process: CategoricalProcess, level: float) -> float:
    """The t at which a fraction `level` of the tokens is corrupted, 1 - alpha(t) = level (bisection)."""
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = 0.5 * (low + high)
        if 1.0 - float(process.alpha(torch.tensor(middle, dtype=torch.float64))) < level:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


@torch.no_grad()
def diffusion_infill_top1(model, process: CategoricalProcess, x: Tensor, masks: Tensor,
                          generator: torch.Generator) -> float:
    """Top-1 accuracy on the masked positions of one x_0 prediction that sees both sides of each span.
    Absorbing: the spans are [MASK]; uniform: the spans hold uniform random tokens and t is the time at which
    that fraction of tokens is noise (the model, unlike here, expects noise anywhere)."""
    t = time_of_noise_level(process, float(masks.float().mean()))
    if process.kind == "absorbing":
        noisy = torch.where(masks, torch.full_like(x, process.mask_id), x)
    else:
        noisy = torch.where(masks, torch.randint(0, process.vocab_size, x.shape, generator=generator), x)
    device = _device_of(model)
    times = torch.full((len(x),), t, dtype=torch.float64, device=device)
    guess = model(noisy.to(device), times).argmax(-1).cpu()
    return float((guess == x)[masks].double().mean())


@torch.no_grad()
def diffusion_infill_sampled(model, process: CategoricalProcess, x: Tensor, masks: Tensor, nfe: int,
                             seeds) -> float:
    """Accuracy on the masked positions of one sample per row from the ancestral sampler (`nfe` steps), the
    unmasked positions held as given (the --infill path)."""
    template = torch.where(masks, torch.full_like(x, FREE), x)
    device = _device_of(model)
    out = sample_tokens(model, process, seeds, x.shape[1], nfe, template=template, device=device).cpu()
    return float((out == x)[masks].double().mean())


@torch.no_grad()
def autoregressive_infill_top1(model, x: Tensor, masks: Tensor) -> float:
    """Top-1 accuracy on the masked positions of greedy left-to-right decoding from the left context only
    (inside a span the model reads its own earlier guesses)."""
    device = _device_of(model)
    filled, vocab = x.clone().to(device), model.config.vocab_size
    masks = masks.to(device)
    for position in range(x.shape[1]):
        rows = masks[:, position]
        if bool(rows.any()):
            logits = model(with_bos(filled[rows, :position + 1], vocab))[:, position]
            filled[rows, position] = logits.argmax(-1)
    return float((filled.cpu() == x)[masks.cpu()].double().mean())


def _device_of(model):
    """Where `model`'s parameters live (the host for a plain function, e.g. an exact reference model)."""
    parameters = getattr(model, "parameters", None)
    first = next(iter(parameters()), None) if parameters is not None else None
    return first.device if first is not None else cpu()
