"""Guards around a training invocation: where it may write, and what `--resume` may change.

Called before anything is written (the run directory stays byte-identical when one refuses):

    check_out_dir(out, resume=False, force=False)   # refuse a file, a non-run directory, an existing run
    moved = move_aside(out)                           # --force: the old run becomes out.replaced-TIMESTAMP
    config, changes = resume_config(out, ["train.lr=1e-4"], steps=5000)   # --resume with overrides
    record_changes(out, changes, step)                # appended to out/config_history.jsonl

`--resume` may change what does not alter the trained model's definition or its data (RESUMABLE: length,
learning rate and schedule, checkpoint / sample / log cadence, threads, device, sampling settings); any
other change is refused naming the fields.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..errors import UnnoiseError

RESUMABLE = ("train.steps", "train.lr", "train.lr_schedule", "train.warmup_steps", "train.checkpoint_every",
             "train.checkpoint_minutes", "train.sample_every", "train.log_every", "train.keep_checkpoints",
             "train.threads", "train.device", "train.tensorboard", "sample.")
RUN_MARKERS = ("config.json", "checkpoint", "history", "metrics.jsonl")
HISTORY_FILE = "config_history.jsonl"


def is_run_dir(path: Path) -> bool:
    """Whether a directory holds (part of) a training run."""
    return Path(path).is_dir() and any((Path(path) / name).exists() for name in RUN_MARKERS)


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_out_dir(out: Path, resume: bool = False, force: bool = False) -> None:
    """Refuse, in one line, an --out that training may not write to; writes nothing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UnnoiseError(f"--out {out}: exists and is not a directory; name a new run directory")
    if resume:
        if not out.is_dir():
            raise UnnoiseError(f"--resume: no run directory at {out}; drop --resume to start a new run there")
        if not is_run_dir(out):
            raise UnnoiseError(f"--resume: {out} is not a run directory (no config.json)")
        return
    anchor = _nearest_existing(out)
    if not anchor.is_dir():
        raise UnnoiseError(f"--out {out}: {anchor} is a file, not a directory")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise UnnoiseError(f"--out {out}: {anchor} is not writable")
    if not out.is_dir():
        return
    if is_run_dir(out):
        if not force:
            raise UnnoiseError(f"{out} already holds a run: continue it with --resume, or train a new one "
                               f"with another --out (--force moves the old run aside)")
    elif any(out.iterdir()):
        first = sorted(p.name for p in out.iterdir())[0]
        raise UnnoiseError(f"--out {out}: a directory that is not a run (it holds {first!r}, ...); "
                           f"name a new or empty directory")


def move_aside(out: Path) -> Path:
    """Rename an existing run to the sibling out.replaced-YYYYmmdd-HHMMSS (never deletes); return it."""
    out = Path(out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = out.with_name(f"{out.name}.replaced-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = out.with_name(f"{out.name}.replaced-{stamp}-{n}")
    try:
        os.rename(out, target)
    except OSError as exc:
        raise UnnoiseError(f"--force: cannot move {out} aside to {target} ({exc.strerror})") from None
    return target


def _flatten(d: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _resumable(key: str) -> bool:
    return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)


def config_changes(saved: dict, requested: dict) -> dict:
    """{field: [old, new]} for every field that differs; refuses (one line) the ones --resume may not change."""
    old, new = _flatten(saved), _flatten(requested)
    changes = {k: [old.get(k), new.get(k)] for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
    refused = [k for k in changes if not _resumable(k)]
    if refused:
        raise UnnoiseError(f"--resume cannot change {', '.join(refused)} (they define the model or its data); "
                           f"train a new run with another --out. Changeable: "
                           f"{', '.join(r.rstrip('.') + ('*' if r.endswith('.') else '') for r in RESUMABLE)}")
    return changes


def checkpoint_step(run_dir: Path) -> int:
    """The step --resume would continue from (the newest intact checkpoint's)."""
    from .checkpoint import resume_checkpoint

    ckpt = resume_checkpoint(run_dir)
    try:
        return int(json.loads((ckpt / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError) as exc:
        raise UnnoiseError(f"{ckpt / 'state.json'}: unreadable ({exc})") from None


def resume_config(run_dir: Path, assignments: list[str] = (), steps: int | None = None):
    """The run's saved config with `--set` assignments (and --steps) applied, validated; returns
    (RunConfig, changes). Refuses changes --resume may not make, and a target step already passed."""
    from .load import read_run_config
    from .config import apply_overrides, config_from_dict, config_to_dict

    run_dir = Path(run_dir)
    saved = config_to_dict(read_run_config(run_dir))
    requested = apply_overrides(saved, list(assignments))
    if steps is not None:
        requested["train"]["steps"] = steps
    config = config_from_dict(requested, where="--resume")
    changes = config_changes(saved, config_to_dict(config))
    step = checkpoint_step(run_dir)
    if config.train.steps < step:
        raise UnnoiseError(f"--resume: {run_dir} is at step {step}, past train.steps={config.train.steps}; "
                           f"pass --steps >= {step}")
    return config, changes


def record_changes(run_dir: Path, changes: dict, step: int | None = None) -> None:
    """Append one line {time, step, changes} to run_dir/config_history.jsonl (nothing if no change)."""
    if not changes:
        return
    entry = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "step": step, "changes": changes}
    with open(Path(run_dir) / HISTORY_FILE, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


RESUME_FIXED_FLAGS = ("--preset", "--config", "--data", "--data-path", "--batch-size", "--force")


def plan_training(out: Path, *, resume: bool, config=None, assignments=(), steps: int | None = None,
                  force: bool = False, flags_given=()):
    """Everything a `unnoise train` checks before writing, then the two writes it may make: --force moves
    the old run aside; --resume records its changes in config_history.jsonl. Returns the RunConfig to
    train (for --resume: the saved one with the allowed overrides).

    `config`: the new run's validated config (ignored with resume); `flags_given`: the command-line
    flags the user passed, so that --resume refuses those that would redefine the run."""
    from .lock import describe_holder, lock_holder, run_lock

    out = Path(out)
    if resume:
        fixed = [flag for flag in RESUME_FIXED_FLAGS if flag in flags_given]
        if fixed:
            raise UnnoiseError(f"--resume continues {out} with its own config: drop {', '.join(fixed)} "
                               f"(--set and --steps may change {', '.join(r.rstrip('.') for r in RESUMABLE)})")
    check_out_dir(out, resume=resume, force=force)
    holder = lock_holder(out) if out.is_dir() else None
    if holder is not None:
        raise UnnoiseError(f"{out} is in use by {describe_holder(holder)}; wait for it to finish, "
                           f"or write to another directory")
    if not resume:
        if force and is_run_dir(out):
            moved = move_aside(out)
            import logging

            logging.getLogger("unnoise.train").warning("--force: moved the old run %s aside to %s", out, moved)
        return config
    config, changes = resume_config(out, assignments, steps)
    with run_lock(out, purpose="train", create=False):
        record_changes(out, changes, checkpoint_step(out))
    return config
