"""Text runs: token data (modality tokens) with model.process absorbing (masked diffusion, MDLM), uniform
(D3PM in continuous time) or autoregressive, over the transformer of nn/transformer.py.

The resolved config records everything loading needs: the transformer's vocab_size, input_size (the [MASK] /
[BOS] id is vocab_size), causal and time_conditioned (from the data and the process), and the tokenizer.
A loaded text run is a `TextModel`: `.net` (the transformer, whose weights the run saves), `.process` (None
for the autoregressive baseline) and `.tokenizer`; `sample` draws token ids, `decode` turns them into text.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from ..errors import UnnoiseError, unknown_name

TEXT_PROCESSES = {"absorbing": "mdlm", "uniform": "d3pm", "autoregressive": "ar"}  # model.process -> kind
TEXT_SAMPLERS = ("ancestral", "top_confidence_heuristic")  # sample.sampler of a text run (discrete/sample.py
# METHODS): the ELBO's ancestral sampler, or the confidence-ordered unmasking heuristic (absorbing runs only)
SCHEDULES = ("linear", "cosine")


def is_text_config(config) -> bool:
    """Whether a run config describes a text run (its model.process is categorical or autoregressive)."""
    return config.model.process in TEXT_PROCESSES


def check_text_config(config, modality: str, dataset: str) -> None:
    """One-line errors for a text process on other data, other data's process on tokens, and a text run's
    network, options, conditions and sampler."""
    m = config.model
    if modality == "tokens" and m.process not in TEXT_PROCESSES:
        raise UnnoiseError(f"model.process={m.process}: dataset {dataset!r} holds token ids; use model.process "
                           f"{', '.join(TEXT_PROCESSES)} (e.g. --preset shakespeare-mdlm)")
    if m.process not in TEXT_PROCESSES:
        if m.network == "transformer":
            raise UnnoiseError(f"model.network=transformer is for text runs (model.process "
                               f"{', '.join(TEXT_PROCESSES)}), got model.process={m.process}")
        if config.sample.sampler in TEXT_SAMPLERS:
            raise UnnoiseError(f"sample.sampler={config.sample.sampler} is for text runs")
        return
    if modality != "tokens":
        raise UnnoiseError(f"model.process={m.process} needs token data (e.g. data.name=shakespeare or "
                           f"textfolder); dataset {dataset!r} holds {modality or 'non-token'} data")
    if m.network != "transformer":
        raise UnnoiseError(f"model.network={m.network}: a text run (model.process={m.process}) needs transformer")
    if m.conditions:
        raise UnnoiseError(f"model.conditions: a text run takes none, got {', '.join(m.conditions)}")
    if getattr(m, "codec", None):
        raise UnnoiseError(f"model.codec: a text run diffuses token ids and takes no codec, got {m.codec!r}")
    allowed = () if m.process == "autoregressive" else ("schedule",)
    unknown = sorted(set(m.process_options) - set(allowed))
    if unknown:
        raise UnnoiseError(f"model.process_options.{unknown[0]}: not an option of model.process={m.process} "
                           f"(valid: {', '.join(allowed) or 'none'})")
    schedule = m.process_options.get("schedule", "linear")
    if schedule not in SCHEDULES:
        raise unknown_name("model.process_options.schedule", str(schedule), SCHEDULES)
    if config.sample.sampler not in TEXT_SAMPLERS:
        raise UnnoiseError(f"sample.sampler={config.sample.sampler}: a text run samples with "
                           f"{' or '.join(TEXT_SAMPLERS)}")
    if config.sample.sampler == TEXT_SAMPLERS[1] and m.process != "absorbing":
        raise UnnoiseError(f"sample.sampler={TEXT_SAMPLERS[1]} needs model.process=absorbing, got {m.process}")


def text_network_options(config, shape: tuple, vocab_size: int) -> dict:
    """The transformer's options with what the data and the process fix filled in (a conflicting value given
    by the user is a one-line error); length defaults to the data's context."""
    process = config.model.process
    options = dict(config.model.network_options)
    fixed = {"vocab_size": vocab_size, "input_size": vocab_size + 1, "causal": process == "autoregressive",
             "time_conditioned": process == "uniform"}  # the absorbing process needs no time (MDLM sec. 3.2)
    for key, value in fixed.items():
        if key in options and options[key] != value:
            raise UnnoiseError(f"model.network_options.{key}={options[key]!r}: fixed to {value!r} by the data "
                               f"and model.process={process}")
        options[key] = value
    options.setdefault("length", int(shape[-1]))
    if options["length"] < shape[-1]:
        raise UnnoiseError(f"model.network_options.length={options['length']} is shorter than the data's "
                           f"context of {shape[-1]} tokens")
    return options


def tokenizer_summary(d: dict) -> str:
    """A tokenizer dict in a few words, e.g. "char, 65 characters"."""
    alphabet = d.get("alphabet")
    return f"{d.get('kind')}, {len(alphabet)} characters" if alphabet is not None else str(d.get("kind"))


class TextModel(nn.Module):
    """A text run's model: `net(tokens, t) -> logits`, its categorical `process` (None: autoregressive) and
    `tokenizer`. The weights are those of `net`."""

    def __init__(self, net: nn.Module, process, tokenizer):
        super().__init__()
        self.net, self.process, self.tokenizer = net, process, tokenizer

    def forward(self, tokens: Tensor, t: Tensor | None = None) -> Tensor:
        return self.net(tokens, t)

    @property
    def context(self) -> int:
        return self.net.config.length

    @torch.no_grad()
    def sample(self, request, n: int, defaults) -> Tensor:
        """Token ids (n, length) int64 on the host for a pipeline SampleRequest (`prompt`: a prefix;
        `infill`: text with '[MASK:k]' spans; `nfe` or `steps`: reverse steps; `length`: the model's context
        by default, the infill text's length for an infill); `defaults` is the run's sample section.
        Sample i uses seed request.seed + i, in batches of request.batch_size."""
        method, steps, length = check_text_request(request, defaults, self.context, self.process is None)
        if request.infill and request.length is None:  # exactly the infill text, its spans filled
            from ..discrete.text import infill_length

            length = infill_length(self.tokenizer, request.infill)
            if length > self.context:
                raise UnnoiseError(f"--infill: {length} tokens exceed the model's context of {self.context}")
        starts = range(request.seed, request.seed + n, request.batch_size)
        return torch.cat([self.generate(range(start, min(start + request.batch_size, request.seed + n)), length,
                                        steps, request.prompt, request.infill, method) for start in starts])

    @torch.no_grad()
    def generate(self, seeds, length: int, steps: int, prompt: str | None = None, infill: str | None = None,
                 method: str = "ancestral", draw_precision: str = "float64") -> Tensor:
        """Token ids (len(seeds), length) int64 on the host, one row per seed (discrete/text.py);
        `draw_precision` 'float32' only to measure the float32 sampling bias (benchmarks/text_generation.py)."""
        from ..device import cpu
        from ..discrete.text import generate_tokens

        return generate_tokens(self.net, self.process, self.tokenizer, seeds, length, steps, prompt=prompt,
                               infill=infill, method=method, draw_precision=draw_precision).to(cpu())

    def decode(self, ids: Tensor) -> list[str]:
        return [self.tokenizer.decode(row) for row in ids]


def check_text_request(request, defaults, context: int, autoregressive: bool) -> tuple[str, int, int]:
    """(method, steps, length) of a text sampling request; one-line errors for what a text run can't take."""
    unusable = [flag for flag, value in (("--class", request.label), ("--guidance", request.guidance),
                                         ("--guidance-interval", request.guidance_interval),
                                         ("--guidance-rescale", request.guidance_rescale),
                                         ("--grid", request.grid), ("a condition", request.cond),
                                         ("--gif (a sampler callback)", request.callback)) if value is not None]
    unusable += [f"--{name}" for name in request.options]
    if unusable:
        raise UnnoiseError(f"{unusable[0]}: not for a text run (it takes --prompt, --infill, --length, --nfe)")
    if request.prompt is not None and not isinstance(request.prompt, str):
        raise UnnoiseError("--prompt: a text run takes one prefix string")
    method = request.sampler or defaults.sampler
    if method not in TEXT_SAMPLERS:
        raise unknown_name("text sampler", str(method), TEXT_SAMPLERS)
    if request.nfe is not None and request.steps is not None and request.nfe != request.steps:
        raise UnnoiseError(f"--nfe {request.nfe} and --steps {request.steps} differ; a text run's reverse step "
                           "is one model call: give one of them")
    steps = request.nfe or request.steps or defaults.steps
    length = context if request.length is None else request.length
    if not isinstance(length, int) or not 1 <= length <= context:
        raise UnnoiseError(f"--length must be an integer in [1, {context}] (the model's context), got {length!r}")
    if request.infill and autoregressive:
        raise UnnoiseError("--infill needs a diffusion run; an autoregressive run only continues a --prompt")
    return method, steps, length


def build_text_model(config) -> TextModel:
    """The TextModel a resolved text config describes (untrained weights)."""
    from ..discrete.process import make_process
    from ..discrete.tokenizer import tokenizer_from_dict
    from ..nn import build_network

    m = config.model
    if not config.tokenizer or not config.vocab_size:
        raise UnnoiseError("a text run's config.json needs its tokenizer and vocab_size (resolved fields)")
    tokenizer = tokenizer_from_dict(config.tokenizer)
    if tokenizer.vocab_size != config.vocab_size:
        raise UnnoiseError(f"config: tokenizer of {tokenizer.vocab_size} ids but vocab_size={config.vocab_size}")
    net = build_network("transformer", dict(m.network_options))
    process = None if m.process == "autoregressive" else \
        make_process(m.process, config.vocab_size, m.process_options.get("schedule", "linear"))
    return TextModel(net, process, tokenizer)


def text_preview(config, run_dir: Path, model: TextModel):
    """The training preview of a text run: config.sample.n texts (seeds 0..n-1, the run's sampler and
    sample.steps) written to run_dir/samples/step_N.txt."""
    def preview(net, step: int) -> None:
        s = config.sample
        current = TextModel(net, model.process, model.tokenizer)
        ids = current.generate(range(s.n), current.context, s.steps, method=s.sampler)
        write_texts(current.decode(ids), Path(run_dir) / "samples" / f"step_{step:07d}.txt")

    return preview


def format_texts(texts: Sequence[str], seeds: Sequence[int] | None = None) -> str:
    """Samples as one text: a '--- sample i (seed s) ---' line before each."""
    seeds = range(len(texts)) if seeds is None else seeds
    return "".join(f"--- sample {i} (seed {seed}) ---\n{text.rstrip(chr(10))}\n"
                   for i, (text, seed) in enumerate(zip(texts, seeds)))


def write_texts(texts: Sequence[str], path: Path, seeds: Sequence[int] | None = None) -> Path:
    """Write samples as format_texts does to a .txt file (whole or not at all; the folder is created)."""
    from ..io.files import check_suffix, prepare_path

    check_suffix(path, (".txt",), "text samples")
    path = prepare_path(path)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(format_texts(texts, seeds), encoding="utf-8")
    partial.replace(path)
    return path
