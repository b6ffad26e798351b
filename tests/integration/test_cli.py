"""End to end through the command line: train a tiny run, sample it, and every user error is one line."""
import json
import subprocess
import sys

import pytest
import torch

from unnoise.cli.main import main

AUTO3 = ["--sampler", "auto", "--nfe", "3", "--n", "4"]
TINY = ["--set", "model.network_options.hidden=32", "--set", "model.network_options.depth=2",
        "--set", "train.sample_every=0", "--set", "train.checkpoint_every=0", "--set", "train.log_every=5"]




@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "toy"
    assert main(["train", "--preset", "toy2d", "--steps", "20", "--out", str(run), *TINY,
                 "--set", "data.options.n=500"]) == 0
    return run


def test_train_writes_a_complete_run(toy_run):
    config = json.loads((toy_run / "config.json").read_text())
    assert config["data_shape"] == [2]
    assert config["model"]["network_options"]["in_dim"] == 2
    assert {p.name for p in (toy_run / "checkpoint").iterdir()} >= {"model.safetensors", "ema.safetensors",
                                                                    "config.json", "state.json"}
    lines = (toy_run / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 20
    from PIL import Image

    with Image.open(toy_run / "loss_curve.png") as curve:
        assert curve.size == (640, 360)
        pixels = curve.convert("RGB").getcolors(1 << 20)
    assert any(colour == (31, 70, 140) for _, colour in pixels)  # the curve was drawn


@pytest.mark.parametrize("sampler", ["euler", "heun", "ddim", "ddpm", "dpmpp_3m", "euler_ancestral", "auto"])
def test_sample_writes_outputs(toy_run, tmp_path, sampler):
    out = tmp_path / "s.png"
    assert main(["sample", str(toy_run), "--sampler", sampler, "--steps", "5", "--n", "16", "--out", str(out),
                 "--gif", str(tmp_path / "t.gif"), "--save-tensor", str(tmp_path / "x.safetensors")]) == 0
    assert out.stat().st_size > 0 and (tmp_path / "t.gif").stat().st_size > 0
    from safetensors.torch import load_file

    x = load_file(str(tmp_path / "x.safetensors"))["samples"]
    assert x.shape == (16, 2) and torch.isfinite(x).all()


def test_sampling_is_reproducible_and_batch_invariant(toy_run, tmp_path, assert_close_eps):
    from unnoise.run.load import load_run
    from unnoise.pipeline import sample_run

    denoiser, config = load_run(toy_run)
    a = sample_run(denoiser, config, n=6, seed=3, sampler="ddpm", steps=8)
    b = sample_run(denoiser, config, n=6, seed=3, sampler="ddpm", steps=8, batch_size=4)
    c = sample_run(denoiser, config, n=2, seed=7, sampler="ddpm", steps=8)
    # per-sample seeds make batches equal up to the network's rounding, which depends on the batch size
    assert_close_eps(b, a, ulps=64, what="batch_size=4: ")
    assert_close_eps(c, a[4:], ulps=64, what="n=2: ")


def test_resume_extends_a_run(toy_run, tmp_path):
    import shutil

    run = tmp_path / "resumed"
    shutil.copytree(toy_run, run)
    assert main(["train", "--out", str(run), "--resume", "--steps", "25"]) == 0
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 25


def test_unknown_names_list_valid_choices(capsys, tmp_path, toy_run, user_error):
    user_error(["train", "--data", "cifar", "--out", str(tmp_path / "r")], "unknown dataset 'cifar'",
                "digits", "imagefolder", "toy2d")
    user_error(["train", "--preset", "toy2d", "--out", str(tmp_path / "r"),
                         "--set", "model.process_options.schedule=quad"],
                "unknown beta schedule 'quad'", "cosine, linear, scaled_linear, sigmoid")
    user_error(["sample", str(toy_run), "--sampler", "plms"], "unknown sampler 'plms'", "auto, consistency, ddim, ddpm")
    user_error(["train", "--out", str(tmp_path / "r"), "--set", "train.lrate=1"], "unknown field 'lrate'")
    from unnoise.run.presets import preset_names

    assert {"digits", "digits-unet", "shakespeare-mdlm", "toy2d"} <= set(preset_names())
    user_error(["train", "--preset", "cifar"], "unknown preset", ", ".join(preset_names()))


def test_missing_run_dir_and_config(capsys, tmp_path, user_error):
    user_error(["sample", str(tmp_path / "nope")], "run directory not found", str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    user_error(["sample", str(tmp_path / "empty")], "missing config.json", str(tmp_path / "empty"))


def test_imagefolder_errors_and_skips(capsys, caplog, tmp_path, user_error):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    user_error(["train", "--data", "imagefolder", "--data-path", str(folder), "--out", str(tmp_path / "r")],
                str(folder))
    for i in range(4):
        Image.new("L", (12, 12), color=40 * i).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"not a png at all")
    (folder / "notes.txt").write_text("hello")
    run = tmp_path / "imgrun"
    assert main(["train", "--preset", "digits-unet", "--data", "imagefolder", "--data-path", str(folder),
                 "--out", str(run), "--steps", "2",
                 "--set", "data.options.size=8", "--set", "data.options.mode=gray",
                 "--set", "model.network_options.base_channels=8", "--set", "train.sample_every=0"]) == 0
    assert "loaded 4 images, skipped 2 files" in caplog.text


def test_console_script_entry_point():
    proc = subprocess.run([sys.executable, "-m", "unnoise", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "train" in proc.stdout and "sample" in proc.stdout


def test_default_sampler_is_the_runs_and_nfe_counts_model_calls(toy_run, tmp_path, capsys, user_error):
    """No --sampler: the run's sample.sampler (heun for toy2d) on its grid and steps; another sampler gets
    the same number of model calls; --nfe is model calls for every sampler, auto included."""
    from unnoise.pipeline import Pipeline, SampleRequest

    pipe = Pipeline.load(toy_run, device="cpu")
    own = pipe.plan(SampleRequest())
    assert (own.name, own.steps, own.nfe) == ("heun", pipe.config.sample.steps, 2 * pipe.config.sample.steps - 1)
    assert pipe.plan(SampleRequest(sampler="euler")).steps == own.nfe
    assert pipe.plan(SampleRequest(sampler="heun", nfe=9)).steps == 5
    out = tmp_path / "default.png"
    assert main(["sample", str(toy_run), "--steps", "4", "--n", "8", "--out", str(out)]) == 0
    assert out.is_file() and not (toy_run / "calibration-4.json").exists()
    assert main(["sample", str(toy_run), "--sampler", "auto", "--nfe", "4", "--n", "8", "--out", str(out)]) == 0
    assert (toy_run / "calibration-4.json").is_file()
    user_error(["sample", str(toy_run), "--sampler", "auto", "--grid", "karras"],
                "does not apply to sampler 'auto'")
    user_error(["sample", str(toy_run), "--nfe", "4", "--steps", "4"], "not both")


def test_help_lists_every_command_and_sampler(capsys):
    from unnoise.sample import SAMPLERS

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in ("train", "sample", "eval", "restore", "data", "demo"))
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in SAMPLERS) and "--nfe" in text and "--device" in text


def test_damaged_calibration_cache_is_recalibrated(toy_run, tmp_path, caplog):
    """A calibration file cut short by a crash (or not ours) is named in a warning and replaced."""
    cache = toy_run / "calibration-3.json"
    assert main(["sample", str(toy_run), *AUTO3, "--out", str(tmp_path / "a.png")]) == 0
    first = json.loads(cache.read_text())
    assert len(first["sigmas"]) == 4 + ("fitted" in first and first["fitted"]["start"] is not None)
    cache.write_text(cache.read_text()[:40])
    with caplog.at_level("WARNING", logger="unnoise.sample"):
        assert main(["sample", str(toy_run), *AUTO3, "--out", str(tmp_path / "b.png")]) == 0
    assert "calibration-3.json" in caplog.text and json.loads(cache.read_text()) == first


def test_calibration_cache_of_other_weights_is_recalibrated(toy_run, tmp_path, caplog):
    """A retrained or resumed run does not reuse the calibration made on its earlier weights."""
    cache = toy_run / "calibration-3.json"
    assert main(["sample", str(toy_run), *AUTO3, "--out", str(tmp_path / "a.png")]) == 0
    first = json.loads(cache.read_text())
    assert len(first["weights_sha256"]) == 64
    cache.write_text(json.dumps({**first, "weights_sha256": "0" * 64, "solver": "not-a-solver"}))
    with caplog.at_level("INFO", logger="unnoise.sample"):
        assert main(["sample", str(toy_run), *AUTO3, "--out", str(tmp_path / "b.png")]) == 0
    assert "calibrated on other weights" in caplog.text and json.loads(cache.read_text()) == first
