"""Interoperability with other libraries' model folders (the `diffusers` extra).

`is_diffusers_folder(path)` is a cheap check (file names only, nothing imported) used by `Pipeline.load`
to send a diffusers model folder to `interop.folder.diffusers_pipeline` instead of reading a run.
"""
from __future__ import annotations

from pathlib import Path

MARKERS = ("model_index.json", "scheduler/scheduler_config.json")


def is_diffusers_folder(path) -> bool:
    """Whether `path` is a directory laid out as a diffusers pipeline (model_index.json or
    scheduler/scheduler_config.json) rather than an unnoise run (config.json)."""
    path = Path(path)
    if not path.is_dir() or (path / "config.json").is_file():
        return False
    return any((path / marker).is_file() for marker in MARKERS)


__all__ = ["MARKERS", "is_diffusers_folder"]
