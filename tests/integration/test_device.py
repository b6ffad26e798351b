"""Training and sampling on a device: a tiny CUDA train step, a checkpoint saved on one device and loaded
on another, sampling with device="cuda" (each skipped without CUDA, saying why); on every machine, a
CPU run never silently stands in for a requested CUDA one."""
import pytest
import torch

from unnoise.device import cpu, resolve_device
from unnoise.errors import UnnoiseError
from unnoise.run.load import load_run
from unnoise.run.config import apply_overrides, config_from_dict
from unnoise.run.presets import preset
from unnoise.run.training import build_trainer, train_run

SETTINGS = ["model.network_options.hidden=16", "model.network_options.depth=1", "data.options.n=128",
            "train.batch_size=32", "train.sample_every=0", "train.checkpoint_every=0", "train.steps=2"]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason=f"no CUDA: torch {torch.__version__} sees no CUDA device")


def toy(*extra):
    return config_from_dict(apply_overrides(preset("toy2d"), [*SETTINGS, *extra]))


def test_training_asked_for_cuda_without_it_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UnnoiseError, match="CUDA is not available"):
        train_run(toy("train.device=cuda"), tmp_path / "run", preview=False)
    with pytest.raises(UnnoiseError, match="CUDA is not available"):
        train_run(toy(), tmp_path / "run2", preview=False, device="cuda:0")


def test_cpu_training_runs_on_the_cpu(tmp_path):
    trainer = build_trainer(toy("train.device=cpu"), tmp_path / "run", preview=False)
    assert trainer.device == cpu() and all(p.device == cpu() for p in trainer.model.parameters())
    assert torch.isfinite(torch.tensor(trainer.train_step()))


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_train_step(tmp_path, precision):
    trainer = build_trainer(toy(f"train.precision={precision}"), tmp_path / "run", preview=False, device="cuda")
    assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in trainer.model.parameters())
    losses = [trainer.train_step() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))


@needs_cuda
def test_checkpoint_saved_on_cuda_loads_and_resumes_on_cpu_and_back(tmp_path):
    run = tmp_path / "run"
    train_run(toy(), run, preview=False, device="cuda")
    denoiser, _ = load_run(run)  # loads on the host
    assert all(p.device == cpu() for p in denoiser.parameters())
    train_run(None, run, resume=True, steps=3, preview=False, device="cpu")
    train_run(None, run, resume=True, steps=4, preview=False, device="cuda")
    cpu_run = tmp_path / "cpu"
    train_run(toy(), cpu_run, preview=False, device="cpu")
    trainer = build_trainer(None, cpu_run, resume=True, steps=3, preview=False, device="cuda")
    assert trainer.step == 2 and next(trainer.model.parameters()).device.type == "cuda"


@needs_cuda
def test_sampling_on_cuda_matches_cpu(tmp_path):
    from unnoise.sample import generate
    from unnoise.sample.ode import heun

    run = tmp_path / "run"
    train_run(toy("train.steps=20"), run, preview=False)
    denoiser, config = load_run(run)
    sigmas = torch.tensor([5.0, 1.0, 0.2, 0.0], dtype=torch.float64)
    on_cpu = generate(denoiser, config.data_shape, sigmas, heun, seeds=range(8))
    on_cuda = generate(denoiser.to(resolve_device("cuda")), config.data_shape, sigmas, heun, seeds=range(8),
                       device="cuda")
    assert on_cuda.device.type == "cuda"
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, rtol=0, atol=1e-3)


@needs_cuda
def test_fp16_resume_on_cuda_is_exact(tmp_path):
    """The loss scale, its growth counter and the device's generator are checkpointed: 2 + 2 steps with a
    resume give the weights and the loss scale of 4 uninterrupted steps."""
    from unnoise.run.checkpoint import load_weights

    straight, split = tmp_path / "straight", tmp_path / "split"
    train_run(toy("train.precision=fp16", "train.steps=4"), straight, preview=False, device="cuda")
    train_run(toy("train.precision=fp16", "train.steps=2"), split, preview=False, device="cuda")
    import json

    saved = json.loads((split / "checkpoint" / "state.json").read_text())["grad_scaler"]
    trainer = build_trainer(None, split, resume=True, steps=4, preview=False, device="cuda")
    assert trainer.step == 2 and trainer.scaler.get_scale() == saved["scale"]
    train_run(None, split, resume=True, steps=4, preview=False, device="cuda")
    a = load_weights(straight / "checkpoint" / "model.safetensors")
    b = load_weights(split / "checkpoint" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
