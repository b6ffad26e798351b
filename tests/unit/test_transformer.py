"""The token transformer: causal masking, rotary (relative) positions, time conditioning, KV-cache sampling."""
import pytest
import torch

from unnoise.discrete.autoregressive import autoregressive_nll, sample_autoregressive, with_bos
from unnoise.errors import UnnoiseError
from unnoise.nn.transformer import Transformer, TransformerConfig

EPS32 = torch.finfo(torch.float32).eps


def make(**options) -> Transformer:
    torch.manual_seed(0)
    base = dict(vocab_size=7, input_size=8, length=24, width=32, depth=2, heads=4)
    model = Transformer(TransformerConfig(**{**base, **options})).eval()
    model.requires_grad_(False)
    return model


def scale(logits: torch.Tensor) -> float:
    return float(logits.detach().abs().max())


def test_causal_logits_ignore_later_tokens():
    model = make(causal=True)
    x = torch.randint(0, 8, (3, 20))
    changed = x.clone()
    changed[:, 11:] = torch.randint(0, 8, (3, 9))
    before, after = model(x), model(changed)
    assert torch.allclose(before[:, :11], after[:, :11], rtol=0, atol=200 * EPS32 * scale(before))
    assert not torch.allclose(before[:, 11:], after[:, 11:], atol=1e-3)


def test_bidirectional_logits_see_later_tokens():
    model = make()
    x = torch.randint(0, 8, (2, 12))
    changed = x.clone()
    changed[:, -1] = (x[:, -1] + 1) % 8
    assert not torch.allclose(model(x)[:, 0], model(changed)[:, 0], atol=1e-4)


def test_without_positions_the_bidirectional_model_is_permutation_equivariant():
    model = make(rotary=False)
    x = torch.randint(0, 8, (2, 16))
    permutation = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    logits = model(x)
    assert torch.allclose(model(x[:, permutation]), logits[:, permutation], rtol=0, atol=200 * EPS32 * scale(logits))


def test_rotary_positions_are_relative_and_break_permutation_symmetry():
    model = make()
    x = torch.randint(0, 8, (2, 16))
    logits = model(x)
    shifted = model(x, offset=5)  # every position moved by 5: relative offsets unchanged
    assert torch.allclose(shifted, logits, rtol=0, atol=2000 * EPS32 * scale(logits))
    reversed_logits = model(x.flip(1)).flip(1)
    assert float((reversed_logits - logits).abs().max()) > 1e-3


def test_time_conditioning_changes_the_output_and_is_required():
    model = make(time_conditioned=True)
    x = torch.randint(0, 8, (2, 10))
    early, late = model(x, torch.tensor([0.1, 0.1])), model(x, torch.tensor([0.9, 0.9]))
    assert not torch.allclose(early, late, atol=1e-4)
    with pytest.raises(UnnoiseError, match="needs t"):
        model(x)


def test_kv_cache_logits_equal_full_recomputation():
    model = make(causal=True)
    x = torch.randint(0, 7, (2, 15))
    full = model(with_bos(x, 7))
    from unnoise.nn.transformer import KVCache
    cache, pieces = KVCache(), []
    inputs = with_bos(x, 7)
    pieces.append(model(inputs[:, :6], cache=cache))
    for i in range(6, 15):
        pieces.append(model(inputs[:, i:i + 1], cache=cache))
    assert torch.allclose(torch.cat(pieces, 1), full, rtol=0, atol=200 * EPS32 * scale(full))


def test_kv_cache_sampling_equals_recomputation_and_is_batch_invariant():
    model = make(causal=True).double()
    prompt = torch.tensor([1, 2, 3])
    cached = sample_autoregressive(model, [4, 5, 6], 20, prompt=prompt)
    recomputed = sample_autoregressive(model, [4, 5, 6], 20, prompt=prompt, use_cache=False)
    assert torch.equal(cached, recomputed)
    assert bool((cached[:, :3] == prompt).all())
    single = sample_autoregressive(model, [5], 20, prompt=prompt)
    assert torch.equal(single, cached[1:2])


def test_autoregressive_nll_is_a_normalised_likelihood():
    """Over all 7^2 sequences of length 2 the model's probabilities sum to one."""
    model = make(causal=True).double()
    grid = torch.cartesian_prod(torch.arange(7), torch.arange(7))
    total = torch.exp(-autoregressive_nll(model, grid)).sum()
    assert abs(float(total) - 1.0) < 1e-12


def test_bad_configs_are_one_line_errors():
    with pytest.raises(UnnoiseError, match="heads"):
        TransformerConfig(vocab_size=5, width=30, heads=4)
    with pytest.raises(UnnoiseError, match="causal"):
        sample_autoregressive(make(), [0], 5)
