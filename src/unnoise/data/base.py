"""The in-memory dataset every loader returns, plus small option-checking helpers."""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Sequence

import torch
from torch.utils.data import Dataset

from unnoise.data.spec import DataSpec, dtype_name
from unnoise.errors import UnnoiseError, unknown_name

EXTRA_HINT = "install the extra: pip install 'unnoise[data]'"


def import_extra(module: str, needed_by: str, package: str) -> ModuleType:
    """Import an optional dependency, or raise a one-line hint naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UnnoiseError(f"{needed_by} needs {package}; {EXTRA_HINT}") from None


def positive_int(value, field: str) -> int:
    """Accept an int (or an integer string, as a CLI passes it) that is >= 1."""
    if isinstance(value, bool):
        raise UnnoiseError(f"{field} must be a positive integer, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UnnoiseError(f"{field} must be a positive integer, got {value!r}") from None
    if number < 1 or (isinstance(value, float) and number != value):
        raise UnnoiseError(f"{field} must be a positive integer, got {value!r}")
    return number


def seed_int(value, field: str) -> int:
    """Accept a non-negative integer seed (or its string form); booleans are refused."""
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise UnnoiseError(f"{field} must be a non-negative integer, got {value!r}")
    return int(value)


def size_of(value, field: str, sizes: Sequence[int]) -> int:
    """Accept a positive integer image size that is one of `sizes`."""
    size = positive_int(value, field)
    if size not in sizes:
        raise UnnoiseError(f"{field} must be one of {', '.join(map(str, sizes))}, got {size}")
    return size


def non_negative_float(value, field: str) -> float:
    """Accept a number (or numeric string) that is >= 0 and finite."""
    if isinstance(value, bool):
        raise UnnoiseError(f"{field} must be a non-negative number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UnnoiseError(f"{field} must be a non-negative number, got {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise UnnoiseError(f"{field} must be a non-negative number, got {value!r}")
    return number


def choice(value, field: str, valid: Sequence[str], aliases: dict[str, str] | None = None) -> str:
    """Normalise a string option against its valid values (case-insensitive, with aliases)."""
    key = str(value).strip().lower()
    key = (aliases or {}).get(key, key)
    if key not in valid:
        raise unknown_name(field, str(value), list(valid) + list(aliases or {}))
    return key


class ArrayDataset(Dataset):
    """Samples held in memory as one tensor `x` (N, *shape): float32 values scaled to about [-1, 1], or
    int64 ids when `x` holds integers (token ids keep their dtype).

    `labels` is a LongTensor (N,) of class indices, or None when unlabelled; `class_names`
    names each index. Items are `(x_i, label_i)` with label -1 when unlabelled. `modality`, `levels`
    and `sample_rate` describe the samples; `spec` gathers them into a DataSpec.
    """

    def __init__(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        class_names: Sequence[str] | None = None,
        name: str = "dataset",
        *,
        modality: str | None = None,
        levels: int = 0,
        sample_rate: int = 0,
    ) -> None:
        x = torch.as_tensor(x)
        if x.ndim < 2 or x.shape[0] == 0:
            raise UnnoiseError(f"{name}: expected a non-empty (N, ...) tensor, got shape {tuple(x.shape)}")
        integer = not (x.is_floating_point() or x.is_complex())
        self.x = x.detach().to(torch.int64 if integer else torch.float32).contiguous()
        self.labels = None if labels is None else self._checked_labels(labels, name)
        self.name = name
        self.class_names = self._default_class_names(class_names)
        self.skipped: list[str] = []
        self.modality = modality  # image, audio, points, tokens, video or molecule (see data/spec.py)
        self.levels = int(levels)  # quantization levels on [-1, 1] (256 for 8-bit pixels); 0: continuous values
        self.sample_rate = int(sample_rate)  # audio: samples per second; 0 otherwise
        self._no_label = torch.tensor(-1, dtype=torch.long)

    def _checked_labels(self, labels: torch.Tensor, name: str) -> torch.Tensor:
        labels = torch.as_tensor(labels).to(torch.long).reshape(-1)
        if labels.shape[0] != self.x.shape[0]:
            raise UnnoiseError(f"{name}: {labels.shape[0]} labels for {self.x.shape[0]} samples")
        if labels.numel() and int(labels.min()) < 0:
            raise UnnoiseError(f"{name}: labels must be >= 0, found {int(labels.min())}")
        return labels

    def _default_class_names(self, class_names: Sequence[str] | None) -> list[str]:
        if self.labels is None:
            return []
        if class_names is None:
            return [str(index) for index in range(int(self.labels.max()) + 1)]
        names = [str(item) for item in class_names]
        if int(self.labels.max()) >= len(names):
            raise UnnoiseError(f"{self.name}: label {int(self.labels.max())} has no class name")
        return names

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. (1, 8, 8) or (2,)."""
        return tuple(self.x.shape[1:])

    @property
    def spec(self) -> DataSpec:
        """What one sample is: shape, dtype, modality, levels, sample rate and class names."""
        if self.modality is None:
            raise UnnoiseError(f"{self.name}: no modality given; pass ArrayDataset(..., modality=...) "
                               f"(image, audio, points, tokens, video or molecule)")
        return DataSpec(shape=self.shape, modality=self.modality, dtype=dtype_name(self.x.dtype), levels=self.levels,
                        sample_rate=self.sample_rate, class_names=tuple(self.class_names),
                        num_classes=self.num_classes)

    @property
    def num_classes(self) -> int:
        """Number of classes; 0 when unlabelled."""
        return len(self.class_names) if self.labels is not None else 0

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        label = self._no_label if self.labels is None else self.labels[index]
        return self.x[index], label

    def subset(self, indices: torch.Tensor, name: str | None = None) -> "ArrayDataset":
        """A new dataset holding the samples at `indices` (same class names, modality, levels, sample rate)."""
        labels = None if self.labels is None else self.labels[indices]
        names = self.class_names if self.labels is not None else None
        return ArrayDataset(self.x[indices], labels, names, name or self.name, modality=self.modality,
                            levels=self.levels, sample_rate=self.sample_rate)

    def split(self, fraction: float, seed: int = 0) -> tuple["ArrayDataset", "ArrayDataset"]:
        """Shuffle with `seed` and hold out `fraction` of the samples: returns (train, heldout)."""
        fraction = float(fraction)
        count = len(self)
        heldout_count = int(round(count * fraction))
        if not 0.0 < fraction < 1.0 or not 0 < heldout_count < count:
            raise UnnoiseError(
                f"{self.name}: split fraction {fraction} leaves an empty part of {count} samples"
            )
        generator = torch.Generator().manual_seed(int(seed))
        order = torch.randperm(count, generator=generator)
        train = self.subset(order[heldout_count:], f"{self.name}[train]")
        heldout = self.subset(order[:heldout_count], f"{self.name}[heldout]")
        return train, heldout

    def describe(self) -> str:
        """One-line summary: name, count, sample shape, classes and value range."""
        low, high = float(self.x.min()), float(self.x.max())
        classes = f"{self.num_classes} classes" if self.labels is not None else "unlabelled"
        values = f"ids in [{int(low)}, {int(high)}]" if not self.x.is_floating_point() else f"values in [{low:.2f}, {high:.2f}]"
        text = f"{self.name}: {len(self)} samples of shape {self.shape}, {classes}, {values}"
        if self.skipped:
            text += f", skipped {len(self.skipped)} unreadable files"
        return text

    def __repr__(self) -> str:
        return f"ArrayDataset({self.describe()})"
