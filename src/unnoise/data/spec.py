"""DataSpec: what one sample of a dataset is (shape, dtype, modality, quantization, sample rate, classes).

Writers (`unnoise.io`) and evaluators dispatch on `spec.modality`, never on the rank of a tensor. The
layout of one sample per modality:

  image     (C, H, W)        values in [-1, 1]
  audio     (C, L)           values in [-1, 1] at `sample_rate` samples per second
  points    (D,) or (N, D)   one point per sample, or a cloud of N points per sample
  tokens    (L,)             int64 token ids in 0..vocab_size-1
  video     (C, T, H, W)     T frames, values in [-1, 1]
  molecule  (N, F)           N atoms: 3 coordinates, then F - 3 atom features
  trajectory (C, L)          L time steps of C state and action channels, scaled to about [-1, 1] (planning/)
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

from unnoise.errors import UnnoiseError, unknown_name

SAMPLE_RANKS = {"image": (3,), "audio": (2,), "points": (1, 2), "tokens": (1,), "video": (4,), "molecule": (2,),
                "trajectory": (2,)}
MODALITIES = tuple(SAMPLE_RANKS)
DTYPES = ("float32", "float64", "int64")
INTEGER_DTYPES = ("int64",)


@dataclass(frozen=True)
class DataSpec:
    """One sample's description. `levels`: quantization levels on [-1, 1] (256 for 8-bit pixels), 0 when
    continuous. `sample_rate`: audio samples per second (0 otherwise). `class_names`: the label names,
    index = label. `vocab_size`: tokens only, the number of token ids."""

    shape: tuple
    modality: str
    dtype: str = "float32"
    levels: int = 0
    sample_rate: int = 0
    class_names: tuple = ()
    num_classes: int = field(default=-1)  # -1: len(class_names)
    vocab_size: int = 0
    atom_types: tuple = ()  # molecules: element symbols in the order of the one-hot feature columns

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _checked_shape(self.shape))
        object.__setattr__(self, "class_names", tuple(str(name) for name in self.class_names))
        object.__setattr__(self, "atom_types", tuple(str(symbol) for symbol in self.atom_types))
        if self.num_classes == -1:
            object.__setattr__(self, "num_classes", len(self.class_names))
        if self.modality not in MODALITIES:
            raise unknown_name("data modality", str(self.modality), MODALITIES)
        if self.dtype not in DTYPES:
            raise unknown_name("data dtype", str(self.dtype), DTYPES)
        if len(self.shape) not in SAMPLE_RANKS[self.modality]:
            ranks = " or ".join(str(rank) for rank in SAMPLE_RANKS[self.modality])
            raise UnnoiseError(f"data spec: a {self.modality} sample has {ranks} dimensions, got shape {self.shape}")
        self._check_numbers()

    def _check_numbers(self) -> None:
        for name in ("levels", "sample_rate", "num_classes", "vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UnnoiseError(f"data spec: {name} must be a non-negative integer, got {value!r}")
        if self.class_names and self.num_classes != len(self.class_names):
            raise UnnoiseError(f"data spec: {len(self.class_names)} class names for num_classes={self.num_classes}")
        if self.modality == "audio" and self.sample_rate == 0:
            raise UnnoiseError("data spec: audio needs a sample_rate > 0")
        if self.modality == "tokens" and self.dtype not in INTEGER_DTYPES:
            raise UnnoiseError(f"data spec: tokens are integer ids (dtype int64), got dtype {self.dtype}")

    @property
    def is_integer(self) -> bool:
        """True when samples hold integer ids (token ids), not values in [-1, 1]."""
        return self.dtype in INTEGER_DTYPES

    def to_dict(self) -> dict:
        """A JSON-ready dict; `DataSpec.from_dict` reads it back."""
        return {"shape": list(self.shape), "modality": self.modality, "dtype": self.dtype, "levels": self.levels,
                "sample_rate": self.sample_rate, "class_names": list(self.class_names),
                "num_classes": self.num_classes, "vocab_size": self.vocab_size, "atom_types": list(self.atom_types)}

    @classmethod
    def from_dict(cls, d: dict, where: str = "data spec") -> "DataSpec":
        """The spec a `to_dict` dict describes; unknown or missing keys are one-line errors naming `where`."""
        if not isinstance(d, dict):
            raise UnnoiseError(f"{where}: expected an object, got {type(d).__name__}")
        known = {"shape", "modality", "dtype", "levels", "sample_rate", "class_names", "num_classes", "vocab_size",
                 "atom_types"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UnnoiseError(f"{where}: unknown key {unknown[0]!r}; valid: {', '.join(sorted(known))}")
        for key in ("shape", "modality"):
            if key not in d:
                raise UnnoiseError(f"{where}: missing key {key!r}")
        return cls(**{**d, "shape": tuple(d["shape"]), "class_names": tuple(d.get("class_names", ())),
                      "atom_types": tuple(d.get("atom_types", ()))})


def _checked_shape(shape) -> tuple:
    try:
        dims = tuple(shape)
    except TypeError:
        raise UnnoiseError(f"data spec: shape must be a list of positive integers, got {shape!r}") from None
    if not dims or any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1 for n in dims):
        raise UnnoiseError(f"data spec: shape must be a list of positive integers, got {shape!r}")
    return tuple(int(n) for n in dims)


def dtype_name(dtype) -> str:
    """The spec's name for a torch dtype: torch.int64 -> "int64"; other integer types count as int64."""
    name = str(dtype).removeprefix("torch.")
    if name in DTYPES:
        return name
    if name in ("int8", "int16", "int32", "uint8", "bool"):
        return "int64"
    return "float32"
