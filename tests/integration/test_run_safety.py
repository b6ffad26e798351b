"""Run safety: one writer per run, checkpoints that survive damage and racing readers, guarded --out and
--resume, the thread policy, and config validation."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from unnoise.errors import UnnoiseError
from unnoise.run import checkpoint as ck
from unnoise.run.guard import (check_out_dir, config_changes, is_run_dir, move_aside, record_changes)
from unnoise.run.lock import LOCK_NAME, lock_holder, run_lock
from unnoise.run.threads import choose_threads, prepare_thread_environment


# ------------------------------------------------------------------------------------------ lock

HOLD = ("import sys, time\nfrom unnoise.run.lock import run_lock\n"
        "with run_lock(sys.argv[1], purpose='train'):\n    print('held', flush=True)\n    time.sleep(60)\n")


def test_second_writer_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UnnoiseError) as error:
            with run_lock(tmp_path / "run"):
                pass
        message = str(error.value)
        assert f"pid {holder.pid}" in message and "host" in message and "\n" not in message
        assert lock_holder(tmp_path / "run")["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()
    assert lock_holder(tmp_path / "run") is None  # the holder is dead: its leftover file names no one


def test_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "purpose": "train",
                                             "started": "then", "command": "unnoise train"}))
    with caplog.at_level(logging.WARNING), run_lock(run):
        assert json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"pid {dead.pid}" in caplog.text and "gone" in caplog.text
    assert not (run / LOCK_NAME).exists()  # a clean release leaves nothing behind


def test_lock_is_reentrant_in_one_process(tmp_path):
    with run_lock(tmp_path / "r"), run_lock(tmp_path / "r", purpose="calibration"):
        assert (tmp_path / "r" / LOCK_NAME).exists()
    assert not (tmp_path / "r" / LOCK_NAME).exists()


# ------------------------------------------------------------------------------------------ checkpoints

class _Ema:
    def __init__(self, model):
        self.model, self.updates = model, 3


def _save(run: Path, step: int, keep: int = 3, best: bool = False) -> None:
    torch.manual_seed(step)
    model = torch.nn.Linear(4, 4)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    ck.save_checkpoint(run, model=model, ema=_Ema(model), optimizer=optimizer, rng={"torch": torch.get_rng_state()},
                       state={"step": step, "images_seen": 0}, config={"step": step}, keep=keep, best=best)


def test_history_entries_are_real_copies_and_pruned(tmp_path):
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, keep=2, best=step == 1)
    entries = sorted(p.name for p in (tmp_path / "history").iterdir())
    assert entries == ["step_0000003", "step_0000004"]
    live, newest = tmp_path / "checkpoint" / "model.safetensors", tmp_path / "history" / entries[-1] / "model.safetensors"
    assert live.read_bytes() == newest.read_bytes() and os.stat(live).st_ino != os.stat(newest).st_ino
    assert json.loads((tmp_path / "best" / "state.json").read_text())["step"] == 1
    assert not list(tmp_path.glob("*.new")) and not list((tmp_path / "history").glob("*.tmp"))


def test_resume_falls_back_to_the_newest_intact_entry(tmp_path, caplog):
    for step in (1, 2):
        _save(tmp_path, step)
    weights = tmp_path / "checkpoint" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))  # damaged in place: the history copy is untouched
    with caplog.at_level(logging.WARNING):
        chosen = ck.resume_checkpoint(tmp_path)
    assert chosen == tmp_path / "history" / "step_0000002"
    assert "checkpoint/model.safetensors" in caplog.text and "step_0000002" in caplog.text
    (tmp_path / "history" / "step_0000002" / "COMPLETE").unlink()
    (tmp_path / "history" / "step_0000002" / "state.json").unlink()
    assert ck.resume_checkpoint(tmp_path) == tmp_path / "history" / "step_0000001"
    for entry in (tmp_path / "history").iterdir():
        (entry / "ema.safetensors").write_bytes(b"junk")
    with pytest.raises(UnnoiseError, match="no intact checkpoint to resume from.*new --out"):
        ck.resume_checkpoint(tmp_path)


def test_a_newer_history_entry_wins_after_a_crash_before_the_swap(tmp_path):
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    import shutil

    shutil.rmtree(tmp_path / "checkpoint")
    shutil.copytree(tmp_path / "history" / "step_0000001", tmp_path / "checkpoint")
    assert ck.resume_checkpoint(tmp_path) == tmp_path / "history" / "step_0000002"


def test_readers_racing_a_writer_never_see_a_damaged_checkpoint(tmp_path):
    _save(tmp_path, 0)
    stop, errors, reads = threading.Event(), [], [0]

    def reader():
        while not stop.is_set():
            try:
                ck.read_checkpoint_tensors(tmp_path, "ema.safetensors")
                reads[0] += 1
            except UnnoiseError as exc:
                errors.append(str(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for step in range(1, 60):
            _save(tmp_path, step, keep=2)
    finally:
        stop.set()
        thread.join()
    assert reads[0] > 0 and not [e for e in errors if "busy" not in e], errors[:3]


def test_reader_names_damage_of_the_live_checkpoint(tmp_path):
    _save(tmp_path, 1)
    (tmp_path / "checkpoint" / "ema.safetensors").write_bytes(b"junk")
    with pytest.raises(UnnoiseError, match="do not match the checksum"):
        ck.read_checkpoint_tensors(tmp_path, "ema.safetensors")


# ------------------------------------------------------------------------------------------ guard

def test_out_dir_checks(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes").write_text("x")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    for out, resume, pattern in [("file.txt", False, "not a directory"), ("file.txt/sub", False, "is a file"),
                                 ("other", False, "not a run"), ("run", False, "--resume.*another --out"),
                                 ("new", True, "no run directory"), ("other", True, "not a run directory")]:
        with pytest.raises(UnnoiseError, match=pattern):
            check_out_dir(tmp_path / out, resume=resume)
    check_out_dir(tmp_path / "empty")
    check_out_dir(tmp_path / "new" / "deeper")
    check_out_dir(tmp_path / "run", resume=True)
    check_out_dir(tmp_path / "run", force=True)
    moved = move_aside(tmp_path / "run")
    assert moved.name.startswith("run.replaced-") and (moved / "config.json").exists() and is_run_dir(moved)
    assert not (tmp_path / "run").exists()


def test_resume_changes_allowed_and_refused(tmp_path):
    saved = {"data": {"name": "toy2d"}, "model": {"network_options": {"hidden": 32}},
             "train": {"steps": 10, "lr": 1e-3, "batch_size": 32}, "sample": {"n": 64}}
    changed = json.loads(json.dumps(saved))
    changed["train"].update(steps=20, lr=5e-4)
    changed["sample"]["n"] = 16
    changes = config_changes(saved, changed)
    assert changes == {"sample.n": [64, 16], "train.lr": [1e-3, 5e-4], "train.steps": [10, 20]}
    record_changes(tmp_path, changes, step=10)
    assert json.loads((tmp_path / "config_history.jsonl").read_text())["changes"]["train.steps"] == [10, 20]
    changed["model"]["network_options"]["hidden"] = 64
    changed["train"]["batch_size"] = 7
    with pytest.raises(UnnoiseError, match=r"cannot change model.network_options.hidden, train.batch_size"):
        config_changes(saved, changed)


# ------------------------------------------------------------------------------------------ threads

def test_thread_policy():
    assert choose_threads(3) == 3  # explicit: as given
    assert choose_threads(0, cores=2, busy=0) == 2
    assert choose_threads(0, cores=2, busy=2) == 1  # a busy machine: never more threads than free cores
    assert choose_threads(0, cores=16, busy=5) == 11
    env = {}
    prepare_thread_environment(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    prepare_thread_environment(env)
    assert env["OMP_WAIT_POLICY"] == "ACTIVE"  # the user's choice stands


# ------------------------------------------------------------------------------------------ validation

@pytest.mark.parametrize("override,pattern", [
    ("train.batch_size=0", r"train.batch_size=0: must be an integer >= 1"),
    ("train.lr=NaN", r"train.lr=nan: must be a finite number in \(0, 10\]"),
    ("train.ema_decay=2", r"train.ema_decay=2: must be a finite number in \[0, 1\)"),
    ("model.network_options.hidden=abc", r"model.network_options.hidden='abc': must be an integer"),
    ("sample.guidance=1e30", r"sample.guidance=1e\+30: must be a finite number in \[0, 1000\]"),
    ("train.lr_schedule=linear", r"train.lr_schedule: unknown learning-rate schedule 'linear'; valid: constant, cosine"),
])
def test_validation_names_field_value_and_range(override, pattern):
    from unnoise.run.config import apply_overrides, config_from_dict
    from unnoise.run.presets import preset

    with pytest.raises(UnnoiseError, match=pattern):
        config_from_dict(apply_overrides(preset("toy2d"), [override]))


def test_plan_training_refuses_before_writing_and_force_moves_aside(tmp_path):
    from unnoise.run.guard import plan_training

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    with pytest.raises(UnnoiseError, match="--resume"):
        plan_training(run, resume=False, config="new")
    with pytest.raises(UnnoiseError, match="drop --preset"):
        plan_training(run, resume=True, flags_given=["--preset", "--set"])
    assert plan_training(run, resume=False, config="new", force=True) == "new"
    assert not run.exists() and len(list(tmp_path.glob("run.replaced-*"))) == 1


# ------------------------------------------------------------------------------------------ the train command

TOY = ["--preset", "toy2d", "--set", "model.network_options.hidden=16", "--set", "model.network_options.depth=1",
       "--set", "data.options.n=64", "--set", "train.batch_size=16", "--set", "train.sample_every=0"]


def test_train_command_force_resume_overrides_and_step_count(tmp_path, capsys):
    from unnoise.cli.main import main

    run = tmp_path / "run"
    assert main(["train", *TOY, "--steps", "4", "--out", str(run)]) == 0
    assert "trained 4 steps" in capsys.readouterr().out
    assert main(["train", "--resume", "--steps", "6", "--set", "train.lr=5e-4", "--out", str(run)]) == 0
    assert "trained 2 steps" in capsys.readouterr().out  # this invocation's, not the target step
    history = [json.loads(line) for line in (run / "config_history.jsonl").read_text().splitlines()]
    assert history[-1]["step"] == 4 and history[-1]["changes"]["train.steps"] == [4, 6]
    assert history[-1]["changes"]["train.lr"][1] == 5e-4
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 5e-4
    assert main(["train", *TOY, "--steps", "2", "--force", "--out", str(run)]) == 0
    aside = list(tmp_path.glob("run.replaced-*"))
    assert len(aside) == 1 and (aside[0] / "config_history.jsonl").exists()
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 2


def test_short_runs_checkpoint_within_their_length(tmp_path):
    from unnoise.cli.main import main

    run = tmp_path / "run"
    assert main(["train", *TOY, "--steps", "8", "--set", "train.checkpoint_every=2000", "--out", str(run)]) == 0
    steps = sorted(int(p.name.split("_")[1]) for p in (run / "history").iterdir())
    assert steps == [4, 6, 8]  # every ceil(8 / 4) = 2 steps, the last 3 kept


def test_ctrl_c_checkpoints_and_names_the_resume_step(tmp_path):
    import signal
    import time

    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "unnoise", "train", *TOY, "--steps", "100000",
                             "--set", "train.checkpoint_every=0", "--set", "train.checkpoint_minutes=0",
                             "--out", str(run)], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    line = next(l for l in err.splitlines() if "interrupted at step" in l)
    step = int(line.split("interrupted at step ")[1].split(";")[0])
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == step > 0
    assert f"--resume --out {run}" in line and "Traceback" not in err
