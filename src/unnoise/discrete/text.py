"""Text runs in one place: recipes (process + transformer), building their model and objective, generating
strings (prefix prompts, '[MASK:n]' infill) and held-out bits per token, for the CLI, eval and benchmarks.

A recipe is a plain dict, JSON-ready: {"kind": "mdlm" | "d3pm" | "ar", "schedule": "linear" | "cosine",
"transformer": {TransformerConfig fields except vocab_size / input_size / causal / time_conditioned}}.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import UnnoiseError, unknown_name
from ..nn.transformer import Transformer, TransformerConfig
from .autoregressive import autoregressive_nll, sample_autoregressive
from .loss import estimate_elbo
from .process import CategoricalProcess, make_process
from .sample import FREE, infill_template, prefix_template, sample_tokens

KINDS = {"mdlm": "absorbing", "d3pm": "uniform", "ar": None}
SHAKESPEARE_TRANSFORMER = {"length": 256, "width": 256, "depth": 6, "heads": 8}
RECIPES = {
    "shakespeare-mdlm": {"kind": "mdlm", "schedule": "linear", "transformer": SHAKESPEARE_TRANSFORMER},
    "shakespeare-d3pm": {"kind": "d3pm", "schedule": "linear", "transformer": SHAKESPEARE_TRANSFORMER},
    "shakespeare-ar": {"kind": "ar", "transformer": SHAKESPEARE_TRANSFORMER},
}


def build_text_model(recipe: dict, vocab_size: int) -> tuple[Transformer, CategoricalProcess | None]:
    """The transformer of `recipe` over `vocab_size` tokens and its process (None for the AR baseline)."""
    kind = recipe.get("kind")
    if kind not in KINDS:
        raise unknown_name("text model kind", str(kind), KINDS)
    options = dict(recipe.get("transformer", {}))
    fixed = {"vocab_size", "input_size", "causal", "time_conditioned"} & set(options)
    if fixed:
        raise UnnoiseError(f"text recipe: transformer.{sorted(fixed)[0]} is set by the kind {kind!r}")
    process = None if kind == "ar" else make_process(KINDS[kind], vocab_size, recipe.get("schedule", "linear"))
    config = TransformerConfig(vocab_size=vocab_size, input_size=vocab_size + 1, causal=kind == "ar",
                               time_conditioned=kind == "d3pm", **options)
    return Transformer(config), process


def text_objective(model: Transformer, process: CategoricalProcess | None, time_sampling: str = "stratified"):
    """The training objective: the diffusion ELBO per token, or the AR negative log-likelihood per token."""
    from ..objectives.autoregressive import AutoregressiveObjective
    from ..objectives.masked import MaskedDiffusionObjective
    if process is None:
        return AutoregressiveObjective(model)
    return MaskedDiffusionObjective(model, process, time_sampling)


def encode_flag(tokenizer, text: str, flag: str) -> Tensor:
    """`text` as ids; a character the tokenizer lacks is a one-line error naming `flag` (e.g. --prompt)."""
    try:
        return tokenizer.encode(text)
    except UnnoiseError as error:
        raise UnnoiseError(f"{flag}: {error}") from None


def request_template(tokenizer, length: int, prompt: str | None = None, infill: str | None = None) -> Tensor | None:
    """The (length,) template of a prefix `prompt` or an `infill` text with '[MASK:n]' spans (not both);
    one-line errors name --prompt / --infill."""
    if prompt and infill:
        raise UnnoiseError("give either --prompt or --infill, not both")
    if infill:
        return infill_template(infill, tokenizer.encode, length, where="--infill")
    if prompt:
        ids = encode_flag(tokenizer, prompt, "--prompt")
        if len(ids) > length:
            raise UnnoiseError(f"--prompt: {len(ids)} tokens do not fit in a sample of length {length} (--length, "
                               "at most the model's context)")
        return prefix_template(ids.tolist(), length)
    return None


def infill_length(tokenizer, infill: str) -> int:
    """Tokens in an --infill text with its '[MASK:n]' spans counted as n."""
    return len(infill_template(infill, tokenizer.encode, where="--infill"))


@torch.no_grad()
def generate_tokens(model: Transformer, process: CategoricalProcess | None, tokenizer, seeds, length: int,
                    nfe: int = 64, prompt: str | None = None, infill: str | None = None,
                    method: str = "ancestral", draw_precision: str = "float64") -> Tensor:
    """Token ids (len(seeds), length), one row per seed: diffusion runs take `nfe` reverse steps; the AR run
    decodes left to right (a prompt's ids are kept as its first tokens). Draws are float64 unless
    `draw_precision` is 'float32' (diffusion runs; for measuring the float32 sampling bias only)."""
    template = request_template(tokenizer, length, prompt, infill)
    if process is None:
        if infill:
            raise UnnoiseError("--infill needs a diffusion run; an autoregressive run only continues a --prompt")
        if draw_precision != "float64":
            raise UnnoiseError("draw_precision: the autoregressive sampler draws in float64 only")
        prompt_ids = None if template is None else template[template != FREE]
        return sample_autoregressive(model, seeds, length, prompt=prompt_ids, device=_device_of(model))
    return sample_tokens(model, process, seeds, length, nfe, template=template, method=method,
                         device=_device_of(model), draw_precision=draw_precision)


@torch.no_grad()
def generate_text(model: Transformer, process: CategoricalProcess | None, tokenizer, seeds, length: int,
                  nfe: int = 64, prompt: str | None = None, infill: str | None = None,
                  method: str = "ancestral") -> list[str]:
    """One string per seed (generate_tokens, decoded)."""
    tokens = generate_tokens(model, process, tokenizer, seeds, length, nfe, prompt, infill, method)
    return [tokenizer.decode(row) for row in tokens.cpu()]


def _device_of(model: torch.nn.Module):
    return next(model.parameters()).device


@torch.no_grad()
def heldout_bits(model: Transformer, process: CategoricalProcess | None, windows: Tensor, draws: int = 8,
                 batch: int = 64, seed: int = 0) -> dict:
    """Bits per token over `windows` (N, L) with its standard error across windows: exact for the AR run,
    the ELBO (an upper bound, `draws` time samples per window) for a diffusion run."""
    generator, values = torch.Generator().manual_seed(seed), []
    device = _device_of(model)
    for start in range(0, len(windows), batch):
        x = windows[start:start + batch].to(device)
        nats = (autoregressive_nll(model, x) if process is None
                else estimate_elbo(model, process, x, draws, generator)[0])
        values.append(nats.cpu() / (x.shape[1] * math.log(2.0)))
    bits = torch.cat(values)
    error = float(bits.std() / math.sqrt(len(bits))) if len(bits) > 1 else float("nan")
    return {"bits_per_token": float(bits.mean()), "standard_error": error, "is_bound": process is not None,
            "windows": len(bits)}
