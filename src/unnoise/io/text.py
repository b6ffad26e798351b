"""Token samples as text: one line per sample, token ids through a vocabulary when one is given.

A `tokens` sample is (L,) int64 ids. With a vocabulary (a sequence of strings, index = id) each id becomes
its string, joined by `separator` (" " by default; "" for character vocabularies); ids outside the
vocabulary (e.g. the mask id of absorbing diffusion, which equals the vocabulary size) are written [id].
Without one, the ids are written as decimal numbers separated by spaces.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import torch

from unnoise.errors import UnnoiseError
from unnoise.io.files import check_suffix, prepare_path


def token_ids(x: torch.Tensor, name: str) -> torch.Tensor:
    """Token ids (N, L) as int64; floating values must already be whole numbers."""
    x = torch.as_tensor(x).detach().cpu()
    if x.is_floating_point():
        if not torch.isfinite(x).all() or not torch.equal(x, x.round()):
            raise UnnoiseError(f"{name}: token samples must be integer ids, got non-integer values")
    x = x.to(torch.int64)
    if x.ndim != 2:
        raise UnnoiseError(f"{name}: token samples must be (N, L), got shape {tuple(x.shape)}")
    return x


def token_line(ids: Sequence[int], vocabulary: Sequence[str] | None = None, separator: str = " ") -> str:
    """One sample's ids as text (see the module docstring)."""
    if vocabulary is None:
        return " ".join(str(int(i)) for i in ids)
    words = [vocabulary[i] if 0 <= i < len(vocabulary) else f"[{i}]" for i in (int(i) for i in ids)]
    return separator.join(words).replace("\n", "\\n")


def _write_text(path: str | Path, text: str) -> Path:
    """Write `text` atomically (temporary file, then rename)."""
    path = prepare_path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def save_token_lines(x: torch.Tensor, path: str | Path, vocabulary: Sequence[str] | None = None,
                     separator: str = " ") -> Path:
    """Write token samples (N, L) as N lines of text to a .txt file."""
    check_suffix(path, (".txt",), "token samples")
    lines = [token_line(row.tolist(), vocabulary, separator) for row in token_ids(x, str(path))]
    return _write_text(path, "\n".join(lines) + "\n")


def write_token_samples(x: torch.Tensor, spec, path: str | Path, vocabulary: Sequence[str] | None = None,
                        separator: str = " ") -> list[Path]:
    """Token samples (N, L) as lines of text (.txt)."""
    return [save_token_lines(x, path, vocabulary, separator)]


def write_token_trajectory(frames: Sequence[torch.Tensor], spec, path: str | Path,
                           vocabulary: Sequence[str] | None = None, separator: str = " ") -> Path:
    """Token samples along a trajectory as text: a "# step k" line, then one line per sample, per step."""
    check_suffix(path, (".txt",), "a token trajectory")
    if len(frames) == 0:
        raise UnnoiseError(f"{path}: no frames to write")
    blocks = []
    for step, frame in enumerate(frames):
        lines = [token_line(row.tolist(), vocabulary, separator) for row in token_ids(frame, str(path))]
        blocks.append("\n".join([f"# step {step}", *lines]))
    return _write_text(path, "\n".join(blocks) + "\n")
