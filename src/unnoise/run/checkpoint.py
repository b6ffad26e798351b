"""Checkpoints: safetensors weights + JSON metadata, written atomically; nothing is ever unpickled.

Layout of a run directory:
  config.json                 the resolved RunConfig
  history/step_NNNNNNN/       the last `keep` checkpoints, each complete on its own (real files, no links):
    model.safetensors         raw weights
    ema.safetensors           EMA weights (what sampling uses by default)
    optimizer.safetensors     optimizer tensors; their structure in state.json
    rng.safetensors           torch and data-order generator states
    state.json                step, images seen, optimizer param groups, EMA update count
    config.json               the resolved RunConfig again, so a checkpoint stands alone
    COMPLETE                  written last, with every file's SHA-256 (the manifest); loading verifies it
  checkpoint/                 a real copy of the newest history entry (what sampling reads)
  best/                       a real copy of the checkpoint with the lowest training loss so far

Writing: a new entry is built in history/step_N.tmp/, fsynced and renamed into place; then a copy of it is
built in checkpoint.new/ and exchanged with checkpoint/ in one atomic renameat2(RENAME_EXCHANGE) (two
renames where the OS lacks it). A reader therefore finds checkpoint/ either wholly old or wholly new;
`read_checkpoint_tensors` reads through one directory handle and retries when the directory it holds was
swapped away mid-read, and says "busy, retry" rather than "corrupt" if a writer keeps it from finishing.
Resuming (`resume_checkpoint`) takes the newest intact entry among checkpoint/ and history/ and names
whatever it found damaged.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import torch

from ..errors import UnnoiseError

log = logging.getLogger("unnoise.train")

MARKER = "COMPLETE"
LIVE, HISTORY, BEST = "checkpoint", "history", "best"


def _safetensors():
    try:
        import safetensors.torch as st
    except ImportError as exc:
        raise UnnoiseError("checkpoints need safetensors; install it: pip install safetensors") from exc
    return st


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data: dict) -> None:
    """Write JSON through a temporary file and rename, so a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ optimizer state

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


# ------------------------------------------------------------------------------------------ writing

def _exchange(new: Path, live: Path) -> None:
    """Make `new` the directory at `live` in one step; the previous contents end up at `new`."""
    if not live.exists():
        os.replace(new, live)
        return
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None) if os.name == "posix" else None
    if renameat2 is not None and renameat2(-100, os.fsencode(new), -100, os.fsencode(live), 2) == 0:
        return  # -100: AT_FDCWD; 2: RENAME_EXCHANGE
    old = live.with_name(live.name + ".old")  # no atomic exchange here: a short window without `live`
    shutil.rmtree(old, ignore_errors=True)
    os.replace(live, old)
    os.replace(new, live)
    os.replace(old, new)


def _seal(directory: Path, step) -> None:
    """fsync every file, then write the manifest (each file's SHA-256) last and fsync the directory."""
    for f in directory.iterdir():
        with open(f, "rb") as handle:
            os.fsync(handle.fileno())
    checksums = {f.name: file_sha256(f) for f in sorted(directory.iterdir())}
    write_json(directory / MARKER, {"step": step, "sha256": checksums})
    _fsync_dir(directory)


def _install_copy(source: Path, live: Path) -> None:
    """Replace directory `live` by a real copy of `source`, atomically for readers."""
    new = live.with_name(live.name + ".new")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    for f in source.iterdir():
        shutil.copyfile(f, new / f.name)
        with open(new / f.name, "rb") as handle:
            os.fsync(handle.fileno())
    _fsync_dir(new)
    _exchange(new, live)
    shutil.rmtree(new, ignore_errors=True)
    _fsync_dir(live.parent)


def save_checkpoint(run_dir: Path, *, model, ema, optimizer, rng: dict, state: dict, config: dict,
                    keep: int = 3, best: bool = False) -> Path:
    """Write history/step_N/ (sealed with its manifest, then renamed into place), copy it to checkpoint/
    (exchanged atomically) and, if `best`, to best/; prune history/ to the last `keep` (0: keep all)."""
    st = _safetensors()
    run_dir = Path(run_dir)
    step = int(state.get("step", 0))
    history = run_dir / HISTORY
    entry = history / f"step_{step:07d}"
    tmp = history / f"{entry.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    st.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    st.save_file({k: v.contiguous() for k, v in ema.model.state_dict().items()}, str(tmp / "ema.safetensors"))
    opt_tensors, opt_structure = _optimizer_tensors(optimizer)
    st.save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    st.save_file(rng, str(tmp / "rng.safetensors"))
    write_json(tmp / "state.json", {**state, "optimizer": opt_structure, "ema_updates": ema.updates})
    write_json(tmp / "config.json", config)
    _seal(tmp, step)
    if entry.exists():  # the same step saved again (a resume that trained nothing)
        _exchange(tmp, entry)
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, entry)
    _fsync_dir(history)
    _install_copy(entry, run_dir / LIVE)
    if best:
        _install_copy(entry, run_dir / BEST)
    entries = sorted(p for p in history.iterdir() if p.name.startswith("step_") and not p.name.endswith(".tmp"))
    for stale in entries[:-keep] if keep > 0 else []:
        shutil.rmtree(stale, ignore_errors=True)
    return run_dir / LIVE


# ------------------------------------------------------------------------------------------ verifying

def verify_checkpoint(ckpt: Path) -> None:
    """Check every file against the SHA-256 recorded in the completeness marker (tampering, bit rot)."""
    try:
        recorded = json.loads((ckpt / MARKER).read_text()).get("sha256", {})
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise UnnoiseError(f"{ckpt / MARKER}: unreadable completeness marker ({exc})") from None
    for name, expected in recorded.items():
        path = ckpt / name
        if not path.is_file():
            raise UnnoiseError(f"{path}: missing from the checkpoint")
        if file_sha256(path) != expected:
            raise UnnoiseError(f"{path}: contents do not match the checksum recorded when it was saved "
                               f"(modified or corrupt)")


def _intact_step(ckpt: Path) -> int:
    """The step of a checkpoint directory after verifying it (legacy directories without a marker are
    accepted by their state.json); raises UnnoiseError naming the damage."""
    if (ckpt / MARKER).exists():
        verify_checkpoint(ckpt)
    elif not (ckpt / "state.json").is_file():
        raise UnnoiseError(f"{ckpt}: incomplete (no {MARKER} marker)")
    try:
        return int(json.loads((ckpt / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnnoiseError(f"{ckpt / 'state.json'}: unreadable ({exc})") from None


def checkpoint_dir(run_dir: Path) -> Path:
    """The run's live checkpoint, verified (falls back to checkpoint.old after a crash mid-swap)."""
    run_dir = Path(run_dir)
    for name in (LIVE, LIVE + ".old"):
        candidate = run_dir / name
        if (candidate / MARKER).exists():
            verify_checkpoint(candidate)
            return candidate
        if (candidate / "state.json").exists():  # written before markers existed: complete by the swap
            log.warning("%s has no %s marker (an older unnoise wrote it): loading without checksums",
                        candidate, MARKER)
            return candidate
    raise UnnoiseError(f"{run_dir}: no complete checkpoint found (expected {run_dir / LIVE}/{MARKER})")


def _candidates(run_dir: Path) -> list[Path]:
    history = run_dir / HISTORY
    entries = sorted((p for p in history.iterdir() if p.name.startswith("step_") and p.is_dir()
                      and not p.name.endswith(".tmp")), reverse=True) if history.is_dir() else []
    return [run_dir / LIVE, *entries]  # checkpoint.new/.old hold nothing history/ lacks


def resume_checkpoint(run_dir: Path) -> Path:
    """The newest intact checkpoint among checkpoint/ and history/step_N/ (a crash between writing a
    history entry and swapping it live leaves the entry newer); warns naming any damaged one skipped."""
    run_dir = Path(run_dir)
    damaged, chosen, chosen_step = [], None, -1
    for candidate in _candidates(run_dir):
        if not candidate.is_dir():
            continue
        try:
            step = _intact_step(candidate)
        except UnnoiseError as exc:
            damaged.append(str(exc))
            continue
        if step > chosen_step:
            chosen, chosen_step = candidate, step
    if chosen is None:
        found = f" (damaged: {'; '.join(damaged)})" if damaged else ""
        raise UnnoiseError(f"{run_dir}: no intact checkpoint to resume from{found}; "
                           f"start again with a new --out")
    if damaged:
        log.warning("damaged checkpoint skipped: %s; resuming from %s (step %d)", "; ".join(damaged),
                    chosen, chosen_step)
    return chosen


# ------------------------------------------------------------------------------------------ reading

def load_weights(path: Path) -> dict:
    """Tensors of one safetensors file, with a one-line error for anything that is not one."""
    try:
        return _safetensors().load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise UnnoiseError(f"{path}: not a valid safetensors file ({exc})") from None


def load_training_state(ckpt: Path, optimizer) -> tuple[dict, dict]:
    """Restore the optimizer; return (state.json contents, rng tensors)."""
    with open(ckpt / "state.json") as f:
        state = json.load(f)
    optimizer.load_state_dict(_optimizer_state(load_weights(ckpt / "optimizer.safetensors"), state["optimizer"]))
    return state, load_weights(ckpt / "rng.safetensors")


class _Swapped(Exception):
    """The directory being read was replaced by a writer mid-read."""


def _read_at(dir_fd: int, name: str) -> bytes:
    fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def _read_snapshot(ckpt: Path, name: str) -> bytes:
    """One file of a checkpoint directory, checked against its manifest, all through one directory handle;
    raises _Swapped when the directory was exchanged meanwhile, UnnoiseError when it is damaged."""
    try:
        dir_fd = os.open(ckpt, os.O_RDONLY)
    except FileNotFoundError:
        raise _Swapped() from None
    try:
        try:
            manifest = json.loads(_read_at(dir_fd, MARKER)).get("sha256", {})
            data = _read_at(dir_fd, name)
        except FileNotFoundError as exc:
            missing = exc
        else:
            missing = None
        same = _same_directory(dir_fd, ckpt)
        if not same:
            raise _Swapped()
        if missing is not None:
            if missing.filename == MARKER and (ckpt / "state.json").exists():
                return _legacy_read(ckpt, name)
            raise UnnoiseError(f"{ckpt / name}: missing from the checkpoint") from None
        if hashlib.sha256(data).hexdigest() != manifest.get(name):
            raise UnnoiseError(f"{ckpt / name}: contents do not match the checksum recorded when it was saved "
                               f"(modified or corrupt)")
        return data
    except (json.JSONDecodeError, AttributeError) as exc:
        raise UnnoiseError(f"{ckpt / MARKER}: unreadable completeness marker ({exc})") from None
    finally:
        os.close(dir_fd)


def _same_directory(dir_fd: int, path: Path) -> bool:
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(dir_fd)
    return (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev)


def _legacy_read(ckpt: Path, name: str) -> bytes:
    log.warning("%s has no %s marker (an older unnoise wrote it): loading without checksums", ckpt, MARKER)
    return (ckpt / name).read_bytes()


def read_checkpoint_tensors(run_dir: Path, name: str = "ema.safetensors", wait: float = 5.0) -> dict:
    """Tensors of one file of the run's live checkpoint, read consistently while a trainer may be swapping
    in a new one: retried for up to `wait` seconds, then a one-line "busy, retry" error."""
    run_dir = Path(run_dir)
    ckpt = run_dir / LIVE
    if not ckpt.is_dir() and not (run_dir / (LIVE + ".old")).is_dir():
        raise UnnoiseError(f"{run_dir}: no complete checkpoint found (expected {ckpt}/{MARKER})")
    deadline = time.monotonic() + wait
    while True:
        try:
            data = _read_snapshot(ckpt, name)
            break
        except _Swapped:
            if time.monotonic() > deadline:
                raise UnnoiseError(f"{run_dir}: its checkpoint is being replaced by a running trainer "
                                   f"(busy, retry)") from None
            time.sleep(0.02)
    try:
        return _safetensors().load(data)
    except Exception as exc:
        raise UnnoiseError(f"{ckpt / name}: not a valid safetensors file ({exc})") from None
