"""Feature extractors for sample-quality metrics.

Each built-in dataset has a small classifier trained deterministically on its real training split; its
penultimate activations are the features for FD / KID / precision-recall and its predictions label
samples. The weights are cached under the user's cache directory ($UNNOISE_CACHE, else
$XDG_CACHE_HOME/unnoise, else ~/.cache/unnoise) and rebuilt when missing; their SHA-256 goes into every
evaluation's protocol. Other extractors plug in through `register_extractor(name, factory)`.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from ..errors import UnnoiseError, unknown_name
from .extractor import Extractor  # re-exported: extractors are built and registered through this module

DIGITS_VERSION = 1
SHAPES_VERSION = 1


class DigitsClassifier(nn.Module):
    """8x8 digits -> 128 features -> 10 classes."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.SiLU())
        self.head = nn.Linear(128, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class ShapesClassifier(nn.Module):
    """32x32 RGB single-object shapes -> 128 features -> 24 (shape, colour) classes."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.SiLU(), nn.Flatten(), nn.Linear(64 * 8 * 8, 128),
            nn.SiLU())
        self.head = nn.Linear(128, 24)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


@dataclass(frozen=True)
class ClassifierSpec:
    """A built-in dataset's feature classifier: its network, data splits, training length and cache name."""

    name: str
    version: int
    network: Callable[[], nn.Module]
    dataset: str
    options: dict
    input_shape: tuple
    steps: int


DIGITS = ClassifierSpec("digits-classifier", DIGITS_VERSION, DigitsClassifier, "digits", {}, (1, 8, 8), 1500)
SHAPES = ClassifierSpec("shapes-classifier", SHAPES_VERSION, ShapesClassifier, "shapes",
                        {"objects": "1", "n": 6000}, (3, 32, 32), 600)


def cache_dir() -> Path:
    if os.environ.get("UNNOISE_CACHE"):
        return Path(os.environ["UNNOISE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "unnoise"


def train_classifier(spec: ClassifierSpec, seed: int = 0) -> tuple[nn.Module, float]:
    """Deterministic training on the dataset's train split; returns the model and its test accuracy."""
    from ..data import load_dataset

    torch.manual_seed(seed)
    train = load_dataset(spec.dataset, split="train", **spec.options)
    test = load_dataset(spec.dataset, split="test", **spec.options)
    model = spec.network()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(spec.steps):
        index = torch.randint(0, len(train.x), (128,), generator=g)
        batch = train.x[index]
        noisy = batch + 0.05 * torch.randn(batch.shape, generator=g)  # robust to tiny noise
        loss = nn.functional.cross_entropy(model(noisy), train.labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(test.x).argmax(1) == test.labels).float().mean())
    return model, accuracy


def train_digits_classifier(steps: int = 1500, seed: int = 0) -> tuple[DigitsClassifier, float]:
    """The digits classifier, trained deterministically; returns the model and its test accuracy."""
    return train_classifier(dataclasses.replace(DIGITS, steps=steps), seed)


def cached_extractor(spec: ClassifierSpec) -> Extractor:
    """The spec's classifier as a feature extractor, trained and cached on first use."""
    from safetensors.torch import load_file, save_file

    path = cache_dir() / "features" / f"{spec.name}-v{spec.version}.safetensors"
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        model, accuracy = train_classifier(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
        os.replace(tmp, path)
        meta_path.write_text(json.dumps({"test_accuracy": accuracy, "version": spec.version}))
    model = spec.network()
    try:
        model.load_state_dict(load_file(str(path)))
    except Exception as exc:  # a damaged cache file is rebuilt on the next run
        path.unlink(missing_ok=True)
        raise UnnoiseError(f"{path}: unreadable cached classifier ({exc}); removed, run again to rebuild") from None
    model.eval().requires_grad_(False)
    info = {**json.loads(meta_path.read_text()), "path": str(path), "features": 128, "input": list(spec.input_shape)}
    checked = functools.partial(_checked_input, spec)
    return Extractor(spec.name, lambda x: model.body(checked(x)), lambda x: model(checked(x)),
                     hashlib.sha256(path.read_bytes()).hexdigest(), info)


def digits_extractor() -> Extractor:
    """The cached digits classifier (trained and cached on first use)."""
    return cached_extractor(DIGITS)


def shapes_extractor() -> Extractor:
    """The cached single-object shapes classifier (trained and cached on first use)."""
    return cached_extractor(SHAPES)


def _checked_input(spec: ClassifierSpec, x: Tensor) -> Tensor:
    x = x.float().clamp(-1, 1)
    if tuple(x.shape[1:]) != spec.input_shape:
        raise UnnoiseError(f"the {spec.name} takes (N, {', '.join(map(str, spec.input_shape))}) images, "
                           f"got {tuple(x.shape)}")
    return x


EXTRACTORS: dict[str, Callable[[], Extractor]] = {"digits": digits_extractor, "shapes": shapes_extractor}


def register_extractor(name: str, factory: Callable[[], Extractor]) -> None:
    """Make `factory` the extractor for dataset `name` (or any name passed as `extractor=`)."""
    EXTRACTORS[name] = factory


def extractor_for(name: str) -> Extractor:
    if name not in EXTRACTORS:
        raise unknown_name("feature extractor", name, EXTRACTORS)
    return EXTRACTORS[name]()


def _inception_from_env() -> Extractor:
    from .inception import inception_from_env  # on use: the Inception weights are large and optional

    return inception_from_env()


register_extractor("inception", _inception_from_env)
