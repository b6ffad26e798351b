"""Text as token ids: fixed-length windows cut from documents, split by document (never inside one).

`load_textfolder(path)` reads a folder of .txt files; data/shakespeare.py builds on the same pieces.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ..discrete.tokenizer import make_tokenizer
from ..errors import UnnoiseError, unknown_name
from .base import ArrayDataset, positive_int
from .spec import DataSpec

SPLITS = ("train", "heldout", "all")


class TokenDataset(ArrayDataset):
    """Token windows `x` (N, context) int64 with their `tokenizer`; `documents` names the texts they came from."""

    def __init__(self, windows: torch.Tensor, tokenizer, name: str, documents: Sequence[str]):
        super().__init__(windows.to(torch.int64), name=name, modality="tokens")
        self.tokenizer = tokenizer
        self.documents = list(documents)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def spec(self) -> DataSpec:
        return DataSpec(shape=self.shape, modality="tokens", dtype="int64", vocab_size=self.vocab_size)

    def describe(self) -> str:
        return (f"{self.name}: {len(self)} windows of {self.shape[0]} tokens from {len(self.documents)} texts, "
                f"{self.tokenizer.kind} tokenizer with {self.vocab_size} ids")


def token_windows(ids: torch.Tensor, context: int, stride: int) -> torch.Tensor:
    """Windows (N, context) starting every `stride` tokens of `ids`; a partial last window is dropped."""
    if ids.shape[0] < context:
        return torch.empty((0, context), dtype=torch.int64)
    return ids.unfold(0, context, stride).contiguous()


def split_documents(texts: dict[str, str], heldout: Sequence[str], split: str, where: str) -> dict[str, str]:
    """The documents of `split`: 'heldout' ones, the others ('train'), or 'all'."""
    split = {"test": "heldout", "validation": "heldout"}.get(split, split)
    if split not in SPLITS:
        raise unknown_name(f"{where} split", str(split), SPLITS)
    unknown = [name for name in heldout if name not in texts]
    if unknown:
        raise UnnoiseError(f"{where}: held-out text {unknown[0]!r} not found; texts: {', '.join(sorted(texts))}")
    if split == "all":
        return dict(texts)
    keep = (lambda name: name in heldout) if split == "heldout" else (lambda name: name not in heldout)
    return {name: text for name, text in texts.items() if keep(name)}


def windows_dataset(texts: dict[str, str], chosen: dict[str, str], name: str, context, stride, tokenizer
                    ) -> TokenDataset:
    """Tokenize each chosen text (tokenizer fitted on all `texts`, so ids agree across splits) into windows."""
    context = positive_int(context, f"{name}: context")
    stride = positive_int(stride or context, f"{name}: stride")
    tokens = make_tokenizer(tokenizer, [texts[key] for key in sorted(texts)])
    pieces = [token_windows(tokens.encode(chosen[key]), context, stride) for key in sorted(chosen)]
    windows = torch.cat(pieces) if pieces else torch.empty((0, context), dtype=torch.int64)
    if windows.shape[0] == 0:
        raise UnnoiseError(f"{name}: no text of at least {context} tokens in this split")
    return TokenDataset(windows, tokens, name, sorted(chosen))


def read_texts(folder, pattern: str = "*.txt") -> dict[str, str]:
    """{file stem: text} for the files matching `pattern` in `folder` (UTF-8, newlines normalised)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UnnoiseError(f"textfolder: {root} is not a folder")
    files = sorted(root.glob(pattern))
    if not files:
        raise UnnoiseError(f"textfolder: no files matching {pattern!r} in {root}")
    texts = {}
    for file in files:
        try:
            texts[file.stem] = file.read_text(encoding="utf-8").replace("\r\n", "\n")
        except (OSError, UnicodeDecodeError) as error:
            raise UnnoiseError(f"textfolder: cannot read {file} as UTF-8 text ({type(error).__name__})") from None
    return texts


def load_textfolder(path: str, split: str = "train", context: int = 256, stride: int = 0, tokenizer: str = "char",
                    heldout: str = "") -> TokenDataset:
    """Windows of `context` tokens from the .txt files in `path`. Held out: the comma-separated file stems in
    `heldout`, by default the last file in sorted order (with a single file, nothing is held out and
    split 'heldout' is an error)."""
    texts = read_texts(path)
    names = [item.strip() for item in heldout.split(",") if item.strip()] if heldout else sorted(texts)[-1:]
    if len(texts) == 1 and not heldout:
        names = [] if split != "heldout" else names
        if split == "heldout":
            raise UnnoiseError(f"textfolder: {path} holds one file; name held-out files with heldout=")
    chosen = split_documents(texts, names, split, "textfolder")
    return windows_dataset(texts, chosen, f"textfolder[{split}]", context, stride, tokenizer)
