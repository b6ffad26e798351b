"""Training: exact resume, NaN guard, EMA, checkpoints refuse non-safetensors files."""
import json

import pytest
import torch

from unnoise.errors import UnnoiseError
from unnoise.run.load import load_run
from unnoise.objectives import denoising
from unnoise.run.training import train_run
from unnoise.run.config import apply_overrides, config_from_dict
from unnoise.train.ema import EMA
from unnoise.run.presets import preset


def tiny_config(**train):
    d = apply_overrides(preset("toy2d"), ["model.network_options.hidden=32", "model.network_options.depth=2",
                                          "data.options.n=300", "train.sample_every=0", "train.batch_size=64"])
    d["train"].update(train)
    return config_from_dict(d)


def _weights(run):
    from safetensors.torch import load_file

    return load_file(str(run / "checkpoint" / "model.safetensors"))


def test_resume_is_bit_identical(tmp_path):
    straight = tmp_path / "straight"
    train_run(tiny_config(steps=12, checkpoint_every=0), straight)
    split = tmp_path / "split"
    train_run(tiny_config(steps=12, checkpoint_every=5), split, steps=7)  # stops at 7 (last checkpoint 5 & 7)
    train_run(None, split, resume=True, steps=12)
    a, b = _weights(straight), _weights(split)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_with_step_and_last_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "nan"
    real = denoising.denoising_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 8 else loss

    monkeypatch.setattr(denoising, "denoising_loss", poisoned)
    with pytest.raises(UnnoiseError, match=r"at step 8 .*last good checkpoint: .*checkpoint \(step 5\)"):
        train_run(tiny_config(steps=20, checkpoint_every=5), run)
    denoiser, _ = load_run(run)
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 5
    assert all(torch.isfinite(p).all() for p in denoiser.parameters())


def test_inf_gradient_stops_before_the_update(tmp_path, monkeypatch):
    class InfiniteGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * float("inf")

    real, calls = denoising.denoising_loss, {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return InfiniteGradient.apply(loss) if calls["n"] == 4 else loss

    monkeypatch.setattr(denoising, "denoising_loss", poisoned)
    with pytest.raises(UnnoiseError, match=r"gradient norm is (inf|nan) at step 4 .*checkpoint \(step 3\)"):
        train_run(tiny_config(steps=10, checkpoint_every=3), tmp_path / "inf")
    denoiser, _ = load_run(tmp_path / "inf")
    assert all(torch.isfinite(p).all() for p in denoiser.parameters())


def test_tampered_checkpoint_is_refused(tmp_path):
    run = tmp_path / "run"
    train_run(tiny_config(steps=2, checkpoint_every=0), run)
    weights = run / "checkpoint" / "ema.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight: the header still parses
    weights.write_bytes(bytes(data))
    with pytest.raises(UnnoiseError, match="do not match the checksum"):
        load_run(run)


def test_pickle_disguised_as_checkpoint_is_refused(tmp_path):
    run = tmp_path / "run"
    train_run(tiny_config(steps=2, checkpoint_every=0), run)
    fake = run / "checkpoint" / "ema.safetensors"
    torch.save({"weights": torch.ones(3)}, fake)  # a pickle
    with pytest.raises(UnnoiseError, match="do not match the checksum"):
        load_run(run)
    import hashlib  # even with its checksum forged, the pickle is never unpickled

    marker = json.loads((run / "checkpoint" / "COMPLETE").read_text())
    marker["sha256"]["ema.safetensors"] = hashlib.sha256(fake.read_bytes()).hexdigest()
    (run / "checkpoint" / "COMPLETE").write_text(json.dumps(marker))
    with pytest.raises(UnnoiseError, match="not a valid safetensors file"):
        load_run(run)


def test_ema_tracks_average():
    net = torch.nn.Linear(2, 1)
    ema = EMA(net, decay=0.5)
    with torch.no_grad():
        net.weight.fill_(1.0)
    before = ema.model.weight.clone()
    ema.update(net)  # d = min(0.5, 2/11)
    d = 2 / 11
    torch.testing.assert_close(ema.model.weight, d * before + (1 - d) * torch.ones_like(before))


def test_presets_are_yaml_files_and_config_files_load(tmp_path, capsys):
    from unnoise.cli.main import main
    from unnoise.run.presets import preset_names, read_config_file

    assert {"digits", "digits-unet", "digits-hybrid", "toy2d"} <= set(preset_names())
    for name in preset_names():  # every shipped preset is a valid config
        config_from_dict(preset(name), where=name)
    good = tmp_path / "mine.yaml"
    good.write_text("data:\n  name: toy2d\nmodel:\n  network: mlp\n  network_options: {hidden: 16, depth: 1}\n"
                    "train: {steps: 2, batch_size: 16, sample_every: 0, checkpoint_every: 0}\n")
    assert main(["train", "--config", str(good), "--out", str(tmp_path / "run")]) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["steps"] == 2 and saved["model"]["network_options"]["hidden"] == 16
    capsys.readouterr()
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stpes: 3\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stpes" in err[0] and "steps" in err[0], err
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [1, 2\n")
    with pytest.raises(Exception, match="invalid YAML at line"):
        read_config_file(broken)


def test_tensorboard_without_the_package_is_a_one_line_error(tmp_path, capsys):
    pytest.importorskip("PIL")
    try:
        import tensorboard  # noqa: F401
        pytest.skip("tensorboard is installed")
    except ImportError:
        pass
    from unnoise.cli.main import main

    assert main(["train", "--preset", "toy2d", "--steps", "1", "--set", "train.tensorboard=true",
                 "--set", "train.sample_every=0", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "needs the tensorboard package" in err[-1] and "Traceback" not in "".join(err)


def test_checkpoint_from_before_markers_still_loads(tmp_path, caplog):
    run = tmp_path / "run"
    train_run(tiny_config(steps=2, checkpoint_every=0), run)
    (run / "checkpoint" / "COMPLETE").unlink()  # the layout an older version wrote
    denoiser, _ = load_run(run)
    assert all(torch.isfinite(p).all() for p in denoiser.parameters())
    assert "no COMPLETE marker" in caplog.text
