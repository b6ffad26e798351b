"""Shared pieces of the command modules: a parser whose errors are one line, value checks, --device."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..errors import UnnoiseError


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit status 2), like UnnoiseError's."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def add_device(p) -> None:
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N or auto (default: CUDA when available, else the CPU)")


def require(condition: bool, message: str) -> None:
    if not condition:
        raise UnnoiseError(message)


def check_number(flag: str, value, *, low=None, high=None, integer=False, low_open=False) -> None:
    """One-line error unless value (when given) is finite and in [low, high] (low excluded if low_open)."""
    if value is None:
        return
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (not integer or float(value).is_integer())
    ok = ok and (low is None or (value > low if low_open else value >= low)) and (high is None or value <= high)
    if not ok:
        bounds = [f"{'>' if low_open else '>='} {low:g}" if low is not None else "", f"<= {high:g}" if high is not None else ""]
        kind = "an integer" if integer else "a finite number"
        raise UnnoiseError(f"{flag} must be {kind} {' and '.join(b for b in bounds if b)}, got {value}".rstrip())


def check_output(flag: str, path: Path | None) -> None:
    """One-line error for an output file whose folder is missing or which is a directory."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise UnnoiseError(f"{flag} {path}: is a directory; give a file name")
    if not path.parent.is_dir():
        raise UnnoiseError(f"{flag} {path}: folder {path.parent} does not exist")
