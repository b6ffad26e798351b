"""Text-generation measurements and the float32 draw they expose: exact answers on tiny cases."""
import math

import pytest
import torch

from unnoise.discrete.exact import MarkovChainReference
from unnoise.discrete.process import make_process
from unnoise.discrete.quality import (autoregressive_infill_top1, diffusion_infill_top1, generative_perplexity,
                                      sample_entropy_bits, span_masks, time_of_noise_level)
from unnoise.discrete.random import CounterUniforms, categorical, categorical_float32
from unnoise.discrete.sample import infill_template, sample_tokens
from unnoise.discrete.tokenizer import CharTokenizer
from unnoise.errors import UnnoiseError
from unnoise.nn.transformer import Transformer, TransformerConfig

EPS64 = torch.finfo(torch.float64).eps


def test_float32_race_cannot_reach_a_tail_the_float64_draw_reaches():
    """p = (1 - 1e-9, 1e-9): even with the most favourable float32 uniforms (the rare category's as close to 1
    as float32 allows, the common one's at 0) the race picks the common category; float64 draws the rare one
    for u in [1 - 1e-9, 1)."""
    probs = torch.tensor([1.0 - 1e-9, 1e-9], dtype=torch.float64)
    extreme = torch.tensor([0.0, 1.0 - 2.0 ** -24], dtype=torch.float64)
    assert int(categorical_float32(probs, extreme)) == 0
    assert int(categorical(probs, torch.tensor(1.0 - 5e-10, dtype=torch.float64))) == 1


def test_float32_race_is_right_away_from_the_tail():
    probs = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    draws = categorical_float32(probs.expand(20_000, 3), CounterUniforms(range(20_000)).uniform(0, (3,)))
    counts = torch.bincount(draws, minlength=3).double()
    expected = 20_000 * probs
    statistic = float(((counts - expected) ** 2 / expected).sum())
    assert float(torch.special.gammaincc(torch.tensor(1.0, dtype=torch.float64), torch.tensor(statistic / 2))) > 0.01


def test_float32_sampling_is_an_option_and_unknown_precisions_are_refused():
    process = make_process("absorbing", 3)
    reference = MarkovChainReference([0.5, 0.3, 0.2], [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.3, 0.2, 0.5]], 4)
    out = sample_tokens(reference.model(process), process, range(8), 4, 4, draw_precision="float32")
    assert out.shape == (8, 4) and bool((out < 3).all())
    with pytest.raises(UnnoiseError, match="draw precision"):
        sample_tokens(reference.model(process), process, [0], 4, 4, draw_precision="float16")


def test_sample_entropy_in_bits():
    tokens = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 2], [0, 1, 2, 3]])
    assert torch.allclose(sample_entropy_bits(tokens, 4), torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64),
                          rtol=0, atol=4 * EPS64)


def test_generative_perplexity_of_a_uniform_evaluator_is_the_vocabulary_size():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=5, input_size=6, length=12, width=16, depth=1, heads=2,
                                          causal=True)).double()
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    result = generative_perplexity(model, torch.randint(0, 5, (6, 12)), batch=4)
    assert abs(result["perplexity"] - 5.0) < 50 * EPS64 and abs(result["bits_per_token"] - math.log2(5)) < 50 * EPS64
    with pytest.raises(UnnoiseError, match="causal"):
        generative_perplexity(Transformer(TransformerConfig(vocab_size=5, length=12, width=16, depth=1, heads=2)),
                              torch.zeros(1, 12, dtype=torch.long))


def test_span_masks_cover_the_fraction_and_spare_the_first_span():
    masks = span_masks(50, 256, 0.15, torch.Generator().manual_seed(0))
    assert bool((masks.sum(-1) == 40).all()) and not bool(masks[:, :8].any())
    spans = masks.view(50, 32, 8)
    assert bool((spans.all(-1) | ~spans.any(-1)).all())  # whole spans on the grid


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_time_of_noise_level_inverts_the_schedule(schedule):
    process = make_process("uniform", 3, schedule)
    t = time_of_noise_level(process, 0.15)
    assert abs(1.0 - float(process.alpha(torch.tensor(t, dtype=torch.float64))) - 0.15) < 1e-12


def test_diffusion_infill_top1_with_the_exact_posterior_is_the_conditional_argmax():
    reference = MarkovChainReference([0.5, 0.3, 0.2], [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.3, 0.2, 0.5]], 4)
    process = make_process("absorbing", 3)
    x = reference.sequences
    masks = torch.zeros_like(x, dtype=torch.bool)
    masks[:, 1:3] = True
    correct = 0.0
    for row in x:  # by enumeration: argmax of each masked position's marginal given positions 0 and 3
        consistent = (x[:, 0] == row[0]) & (x[:, 3] == row[3])
        weights = reference.probs[consistent]
        for position in (1, 2):
            marginal = torch.bincount(x[consistent, position], weights=weights, minlength=3)
            correct += float(int(marginal.argmax()) == int(row[position]))
    expected = correct / (2 * len(x))
    accuracy = diffusion_infill_top1(reference.model(process), process, x, masks, torch.Generator())
    assert abs(accuracy - expected) < 1e-12


def test_autoregressive_infill_reads_only_the_left_context():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=4, input_size=5, length=16, width=16, depth=1, heads=2,
                                          causal=True)).double().eval()
    x = torch.randint(0, 4, (3, 16), generator=torch.Generator().manual_seed(1))
    masks = torch.zeros_like(x, dtype=torch.bool)
    masks[:, 8] = True
    changed = x.clone()
    changed[:, 9:] = (x[:, 9:] + 1) % 4  # the right context changes: the left-to-right guess may not
    assert autoregressive_infill_top1(model, x, masks) == autoregressive_infill_top1(model, changed, masks)


def test_infill_and_prompt_errors_name_the_flag():
    from unnoise.discrete.text import request_template
    tokenizer = CharTokenizer("abc ,")
    with pytest.raises(UnnoiseError, match=r"^--prompt: character 'z'"):
        request_template(tokenizer, 8, prompt="abz")
    with pytest.raises(UnnoiseError, match=r"^--prompt: 9 tokens do not fit in a sample of length 8"):
        request_template(tokenizer, 8, prompt="abcabcabc")
    with pytest.raises(UnnoiseError, match=r"^--infill: .*no span"):
        request_template(tokenizer, 8, infill="abc")
    with pytest.raises(UnnoiseError, match=r"^--infill: '\[MASK\] b' is not a span"):
        request_template(tokenizer, 8, infill="a [MASK] b")
    with pytest.raises(UnnoiseError, match=r"^--infill: \[MASK:0\] masks nothing"):
        request_template(tokenizer, 8, infill="a [MASK:0] b")
    with pytest.raises(UnnoiseError, match=r"^--infill: character 'z'"):
        request_template(tokenizer, 8, infill="z[MASK:2]")
    assert infill_template("a[MASK:2]b", tokenizer.encode).tolist() == [tokenizer.encode("a")[0], -1, -1,
                                                                         tokenizer.encode("b")[0]]
