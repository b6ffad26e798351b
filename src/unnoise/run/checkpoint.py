"""Checkpoints: safetensors weights + JSON metadata, written atomically; nothing is ever unpickled.

Layout of a run directory:
  config.json                 the resolved RunConfig
  checkpoint/                 the latest checkpoint (replaced atomically: written to checkpoint.tmp/, then swapped)
    model.safetensors         raw weights
    ema.safetensors           EMA weights (what sampling uses by default)
    optimizer.safetensors     optimizer tensors; their structure in state.json
    rng.safetensors           torch and data-order generator states
    state.json                step, images seen, optimizer param groups, EMA update count
    config.json               the resolved RunConfig again, so a checkpoint stands alone
    COMPLETE                  written last, with every file's SHA-256; loading verifies them (a directory
                              with state.json but no marker predates markers and loads with a warning)
  history/step_NNNNNNN/       the last `keep` checkpoints (hard links to the same files, no copies)
  best/                       the checkpoint with the lowest training loss so far
"""
from __future__ import annotations

import hashlib
import logging
import json
import os
import shutil
from pathlib import Path

import torch

from ..errors import UnnoiseError

log = logging.getLogger("unnoise.train")


def _safetensors():
    try:
        from safetensors.torch import load_file, save_file
    except ImportError as exc:
        raise UnnoiseError("checkpoints need safetensors; install it: pip install safetensors") from exc
    return load_file, save_file


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data: dict) -> None:
    """Write JSON through a temporary file and rename, so a crash never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Split an optimizer state dict into flat tensors and a JSON-ready structure."""
    state = optimizer.state_dict()
    tensors, layout = {}, {}
    for index, entries in state["state"].items():
        layout[str(index)] = {}
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.contiguous()
                layout[str(index)][name] = "tensor"
            else:
                layout[str(index)][name] = value
    return tensors, {"state": layout, "param_groups": state["param_groups"]}


def _optimizer_state(tensors: dict, structure: dict) -> dict:
    state = {}
    for index, entries in structure["state"].items():
        state[int(index)] = {name: tensors[f"{index}.{name}"] if value == "tensor" else value
                             for name, value in entries.items()}
    return {"state": state, "param_groups": structure["param_groups"]}


MARKER = "COMPLETE"


def save_checkpoint(run_dir: Path, *, model, ema, optimizer, rng: dict, state: dict, config: dict,
                    keep: int = 3, best: bool = False) -> Path:
    """Write checkpoint.tmp/, fsync it, mark it complete, then swap it in for checkpoint/ (the old one is
    kept until then); link it into history/ (pruned to the last `keep`) and, if `best`, into best/."""
    _, save_file = _safetensors()
    run_dir = Path(run_dir)
    final, tmp, old = run_dir / "checkpoint", run_dir / "checkpoint.tmp", run_dir / "checkpoint.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    save_file({k: v.contiguous() for k, v in ema.model.state_dict().items()}, str(tmp / "ema.safetensors"))
    opt_tensors, opt_structure = _optimizer_tensors(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    save_file(rng, str(tmp / "rng.safetensors"))
    write_json(tmp / "state.json", {**state, "optimizer": opt_structure, "ema_updates": ema.updates})
    write_json(tmp / "config.json", config)
    for f in tmp.iterdir():
        with open(f, "rb") as handle:
            os.fsync(handle.fileno())
    checksums = {f.name: file_sha256(f) for f in sorted(tmp.iterdir())}
    write_json(tmp / MARKER, {"step": state.get("step"), "sha256": checksums})
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(run_dir)
    _link_copy(final, run_dir / "history" / f"step_{int(state.get('step', 0)):07d}")
    for stale in sorted((run_dir / "history").iterdir())[:-keep] if keep > 0 else []:
        shutil.rmtree(stale, ignore_errors=True)
    if best:
        _link_copy(final, run_dir / "best")
    return final


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checkpoint(ckpt: Path) -> None:
    """Check every file against the SHA-256 recorded in the completeness marker (tampering, bit rot)."""
    try:
        recorded = json.loads((ckpt / MARKER).read_text()).get("sha256", {})
    except (OSError, json.JSONDecodeError) as exc:
        raise UnnoiseError(f"{ckpt / MARKER}: unreadable completeness marker ({exc})") from None
    for name, expected in recorded.items():
        path = ckpt / name
        if not path.is_file():
            raise UnnoiseError(f"{path}: missing from the checkpoint")
        if file_sha256(path) != expected:
            raise UnnoiseError(f"{path}: contents do not match the checksum recorded when it was saved "
                               f"(modified or corrupt)")


def _link_copy(source: Path, target: Path) -> None:
    """Replace target/ by hard links to source/'s files (a copy where links are impossible), atomically."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in source.iterdir():
        try:
            os.link(f, tmp / f.name)
        except OSError:
            shutil.copy2(f, tmp / f.name)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def checkpoint_dir(run_dir: Path) -> Path:
    """The newest complete checkpoint of a run (falls back to checkpoint.old after a crash mid-swap)."""
    run_dir = Path(run_dir)
    for name in ("checkpoint", "checkpoint.old"):
        candidate = run_dir / name
        if (candidate / MARKER).exists():
            verify_checkpoint(candidate)
            return candidate
        if (candidate / "state.json").exists():  # written before markers existed: complete by the swap
            log.warning("%s has no %s marker (an older unnoise wrote it): loading without checksums",
                        candidate, MARKER)
            return candidate
    raise UnnoiseError(f"{run_dir}: no complete checkpoint found (expected {run_dir / 'checkpoint'}/{MARKER})")


def load_weights(path: Path) -> dict:
    load_file, _ = _safetensors()
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise UnnoiseError(f"{path}: not a valid safetensors file ({exc})") from None


def load_training_state(ckpt: Path, optimizer) -> tuple[dict, dict]:
    """Restore the optimizer; return (state.json contents, rng tensors)."""
    with open(ckpt / "state.json") as f:
        state = json.load(f)
    optimizer.load_state_dict(_optimizer_state(load_weights(ckpt / "optimizer.safetensors"), state["optimizer"]))
    return state, load_weights(ckpt / "rng.safetensors")
