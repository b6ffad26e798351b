"""Scaling and surviving: gradient accumulation equals one big batch, a 2-process gloo DDP run under
torchrun equals one process with the same global batch and its checkpoint resumes in one process, bf16
autocast trains (the pickle and NaN guards are in test_train.py)."""
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from unnoise.cli.main import main
from unnoise.run.config import apply_overrides, config_from_dict
from unnoise.run.training import build_trainer as Trainer
from unnoise.run.presets import preset

SETTINGS = ["model.network_options.hidden=32", "model.network_options.depth=2", "data.options.n=256",
            "train.batch_size=32", "train.sample_every=0", "train.log_every=1"]
FLAGS = [arg for s in SETTINGS for arg in ("--set", s)]


def toy_config(*extra: str):
    return config_from_dict(apply_overrides(preset("toy2d"), [*SETTINGS, *extra]))


def gradients(trainer) -> dict:
    rows = trainer.local_rows(trainer.draw())
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer._accumulate(rows)
    return {name: p.grad.clone() for name, p in trainer.model.named_parameters()}


@pytest.mark.parametrize("extra", [[], ["model.learned_variance=true", "train.vlb_weight=0.001"]])
def test_accumulated_micro_batches_equal_one_batch(tmp_path, extra, assert_close_eps):
    whole = gradients(Trainer(toy_config(*extra), tmp_path / "a"))
    split = gradients(Trainer(toy_config("train.grad_accum=4", *extra), tmp_path / "b"))
    for name in whole:
        assert_close_eps(split[name], whole[name], ulps=64, scale=max(g.abs().max() for g in whole.values()))


def test_bf16_autocast_trains_with_fp32_master_weights(tmp_path):
    trainer = Trainer(toy_config("train.precision=bf16"), tmp_path / "bf16")
    losses = [trainer.train_step() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def _torchrun(args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "unnoise", "train", *args]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_ddp_on_two_processes_equals_one_process_and_resumes_anywhere(tmp_path, assert_close_eps):
    common = ["--preset", "toy2d", *FLAGS, "--set", "train.checkpoint_every=0"]
    _torchrun([*common, "--steps", "4", "--out", str(tmp_path / "ddp")], tmp_path)
    assert main(["train", *common, "--steps", "4", "--out", str(tmp_path / "single")]) == 0
    ddp = load_file(str(tmp_path / "ddp" / "checkpoint" / "model.safetensors"))
    single = load_file(str(tmp_path / "single" / "checkpoint" / "model.safetensors"))
    for name in single:
        assert_close_eps(ddp[name], single[name], ulps=64, scale=max(p.abs().max() for p in single.values()))
    # the 2-process checkpoint continues in one process like the one-process run does
    assert main(["train", "--resume", "--steps", "6", "--out", str(tmp_path / "ddp")]) == 0
    assert main(["train", "--resume", "--steps", "6", "--out", str(tmp_path / "single")]) == 0
    ddp = load_file(str(tmp_path / "ddp" / "checkpoint" / "model.safetensors"))
    single = load_file(str(tmp_path / "single" / "checkpoint" / "model.safetensors"))
    for name in single:
        assert_close_eps(ddp[name], single[name], ulps=64, scale=max(p.abs().max() for p in single.values()))


def test_batch_that_does_not_split_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", "--preset", "toy2d", *FLAGS, "--set", "train.grad_accum=5", "--steps", "1",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "must divide into 1 ranks x 5 accumulation steps" in err[0]


def test_sigkill_at_any_moment_then_resume_is_bit_identical(tmp_path):
    import random
    import signal
    import time

    args = ["--preset", "toy2d", *FLAGS, "--set", "train.checkpoint_every=3", "--steps", "80"]
    assert main(["train", *args, "--out", str(tmp_path / "straight")]) == 0
    run = tmp_path / "killed"
    # the same intra-op thread count as this process (conftest sets it), so reductions match bit for bit
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "unnoise", "train", *args, "--out", str(run)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "checkpoint" / "COMPLETE").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(random.Random(os.getpid()).uniform(0.0, 0.3))  # somewhere mid-run, maybe mid-checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert main(["train", "--resume", "--out", str(run)]) == 0
    straight = load_file(str(tmp_path / "straight" / "checkpoint" / "model.safetensors"))
    resumed = load_file(str(run / "checkpoint" / "model.safetensors"))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    kept = sorted(p.name for p in (run / "history").iterdir())
    assert len(kept) <= 3 and kept[-1] == "step_0000080" and (run / "best" / "COMPLETE").exists()


def unet_config(*extra: str):
    d = apply_overrides(preset("digits-unet"), [
        "model.network_options.base_channels=8", "model.network_options.groups=4", "train.batch_size=8",
        "train.sample_every=0", *extra])
    return config_from_dict(d)


def test_channels_last_and_gradient_checkpointing_give_the_same_gradients(tmp_path):
    plain = gradients(Trainer(unet_config(), tmp_path / "plain"))
    for i, extra in enumerate((["train.channels_last=true"], ["model.network_options.checkpointing=true"])):
        other = gradients(Trainer(unet_config(*extra), tmp_path / f"other{i}"))
        for name in plain:
            torch.testing.assert_close(other[name], plain[name], atol=1e-5, rtol=1e-4)


def test_compiled_training_matches_eager(tmp_path):
    eager = Trainer(toy_config(), tmp_path / "eager")
    compiled = Trainer(toy_config("train.compile=true"), tmp_path / "compiled")
    for _ in range(2):
        assert abs(eager.train_step() - compiled.train_step()) < 1e-5
