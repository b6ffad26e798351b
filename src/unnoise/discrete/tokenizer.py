"""Text <-> token ids: characters of a fixed alphabet (the default) or UTF-8 bytes."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import UnnoiseError, unknown_name


class CharTokenizer:
    """One id per character of `alphabet` (ids in sorted character order)."""

    kind = "char"

    def __init__(self, alphabet: str):
        characters = sorted(set(alphabet))
        if len(characters) < 2:
            raise UnnoiseError(f"character tokenizer: the alphabet needs at least 2 characters, got {alphabet!r}")
        self.alphabet = "".join(characters)
        self._codepoints = np.array([ord(c) for c in self.alphabet], dtype=np.uint32)  # sorted

    @classmethod
    def from_texts(cls, texts) -> "CharTokenizer":
        return cls("".join(sorted(set().union(*[set(text) for text in texts]))))

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet)

    def encode(self, text: str) -> torch.Tensor:
        """Ids (len(text),) int64; a character outside the alphabet is a one-line error naming it."""
        codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.searchsorted(self._codepoints, codepoints)
        found = ids < len(self._codepoints)
        found[found] = self._codepoints[ids[found]] == codepoints[found]
        if not found.all():
            missing = chr(int(codepoints[np.argmin(found)]))
            raise UnnoiseError(f"character {missing!r} is not in this model's alphabet of {self.vocab_size} "
                               f"characters")
        return torch.from_numpy(ids.astype(np.int64))

    def decode(self, ids) -> str:
        return "".join(self.alphabet[int(i)] for i in torch.as_tensor(ids).reshape(-1).tolist())

    def to_dict(self) -> dict:
        return {"kind": self.kind, "alphabet": self.alphabet}


class ByteTokenizer:
    """One id per UTF-8 byte (256 ids); decoding replaces invalid byte sequences with U+FFFD."""

    kind = "byte"
    vocab_size = 256

    def encode(self, text: str) -> torch.Tensor:
        return torch.from_numpy(np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64))

    def decode(self, ids) -> str:
        values = torch.as_tensor(ids).reshape(-1).tolist()
        return bytes(values).decode("utf-8", errors="replace")

    def to_dict(self) -> dict:
        return {"kind": self.kind}


TOKENIZERS = ("char", "byte")


def tokenizer_from_dict(d: dict):
    """The tokenizer a `to_dict()` dict describes."""
    kind = d.get("kind")
    if kind == "char":
        return CharTokenizer(d.get("alphabet", ""))
    if kind == "byte":
        return ByteTokenizer()
    raise unknown_name("tokenizer", str(kind), TOKENIZERS)


def make_tokenizer(kind: str, texts) -> CharTokenizer | ByteTokenizer:
    """'char': the alphabet of `texts`; 'byte': UTF-8 bytes."""
    if kind == "char":
        return CharTokenizer.from_texts(texts)
    if kind == "byte":
        return ByteTokenizer()
    raise unknown_name("tokenizer", str(kind), TOKENIZERS)
