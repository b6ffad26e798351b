"""`unnoise eval RUN`: FD / KID / precision-recall with a cached, deterministic digits classifier, and
an eval.json whose protocol reproduces the same scores."""
import json

import pytest

from unnoise.cli.main import main


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNNOISE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_eval_writes_scores_and_a_protocol_that_reproduces_them(tmp_path, cache, capsys):
    run = tmp_path / "digits"
    assert main(["train", "--preset", "digits", "--steps", "30", "--out", str(run), "--set", "train.sample_every=0",
                 "--set", "model.network_options.hidden=32", "--set", "model.network_options.depth=1"]) == 0
    args = ["eval", str(run), "--n", "120", "--sampler", "heun", "--steps", "4"]
    assert main(args) == 0
    first = json.loads((run / "eval.json").read_text())
    weights = cache / "features" / "digits-classifier-v1.safetensors"
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["test_accuracy"] > 0.9  # the extractor is a real digit classifier
    stamp = weights.stat().st_mtime_ns
    scores, protocol = first["scores"], first["protocol"]
    assert scores["fd"] > 0 and scores["kid_stderr"] > 0 and 0 <= scores["precision"] <= 1
    assert len(scores["class_fractions"]) == 10
    assert protocol["reference"]["options"]["split"] == "test" and protocol["seeds"] == [0, 119]
    assert len(protocol["extractor"]["weights_sha256"]) == 64 and protocol["sampler"] == "heun"
    capsys.readouterr()
    assert main(args) == 0
    assert json.loads((run / "eval.json").read_text())["scores"] == scores
    assert weights.stat().st_mtime_ns == stamp  # cached, not retrained


def test_eval_without_an_extractor_names_the_choices(tmp_path, cache, capsys):
    run = tmp_path / "toy"
    assert main(["train", "--preset", "toy2d", "--steps", "2", "--out", str(run), "--set", "train.sample_every=0",
                 "--set", "model.network_options.hidden=16"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--n", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown feature extractor 'toy2d'" in err[0] and "digits" in err[0]


def test_class_conditional_eval_reports_per_class_accuracy_under_guidance(tmp_path, cache, capsys):
    run = tmp_path / "cond"
    assert main(["train", "--preset", "digits", "--steps", "30", "--out", str(run), "--set", "train.sample_every=0",
                 "--set", "model.class_conditional=true", "--set", "train.cond_dropout=0.2",
                 "--set", "model.network_options.hidden=32", "--set", "model.network_options.depth=1"]) == 0
    assert main(["sample", str(run), "--class", "3", "--guidance", "2", "--n", "4", "--sampler", "heun",
                 "--steps", "3", "--out", str(tmp_path / "three.png")]) == 0
    assert main(["eval", str(run), "--n", "40", "--sampler", "heun", "--steps", "3",
                 "--guidance", "2.5"]) == 0
    result = json.loads((run / "eval.json").read_text())
    per_class = result["scores"]["per_class_accuracy"]
    assert len(per_class) == 10 and all(0 <= a <= 1 for a in per_class)
    assert abs(result["scores"]["class_accuracy"] - sum(per_class) / 10) < 1e-12  # 4 samples of each class
    assert result["protocol"]["guidance"] == 2.5
    capsys.readouterr()
    assert main(["sample", str(run), "--guidance", "2", "--n", "2", "--out", str(tmp_path / "x.png")]) == 2
    assert "--class" in capsys.readouterr().err
    out = tmp_path / "huge.png"  # an absurd guidance scale: a one-line error naming it, never a silent image
    assert main(["sample", str(run), "--class", "3", "--guidance", "1e30", "--n", "2", "--sampler", "heun",
                 "--steps", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-finite" in err[0] and "--guidance 1e+30" in err[0] and not out.exists()
