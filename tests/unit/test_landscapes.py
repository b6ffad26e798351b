"""The built-in `landscapes` dataset: per-index rendering, captions, held-out combinations and the
analyzer (exact on renders, robust to noise and blur)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unnoise.data.landscape_analyzer import analyze_landscapes, score_attributes, segmentation_accuracy
from unnoise.data.landscapes import (
    HELDOUT_COMBINATIONS, SEGMENT_CLASSES, TIMES, is_heldout, load_landscapes, render_landscapes,
)
from unnoise.errors import UnnoiseError


def _blur(images: torch.Tensor, sigma: float = 0.6) -> torch.Tensor:
    """Separable Gaussian blur with edge replication."""
    taps = torch.arange(-2, 3, dtype=torch.float32)
    kernel = torch.exp(-taps**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    rows = F.conv2d(F.pad(images, (2, 2, 0, 0), mode="replicate"), kernel.view(1, 1, 1, 5).repeat(3, 1, 1, 1), groups=3)
    return F.conv2d(F.pad(rows, (0, 0, 2, 2), mode="replicate"), kernel.view(1, 1, 5, 1).repeat(3, 1, 1, 1), groups=3)


@pytest.fixture(scope="module")
def renders64():
    return render_landscapes(range(240), size=64, split="all", seed=3)


def test_each_image_depends_only_on_its_index():
    whole = render_landscapes(range(12), size=32, seed=5)
    tail = render_landscapes(range(6, 12), size=32, seed=5)
    assert torch.equal(whole["images"][6:], tail["images"])
    assert whole["captions"][6:] == tail["captions"]
    other = render_landscapes(range(12), size=32, seed=6)
    assert not torch.equal(whole["images"], other["images"])


@pytest.mark.parametrize("size", [32, 64, 128])
def test_loader_shapes_and_ranges(size):
    data = load_landscapes(size=size, n=8)
    assert data.x.shape == (8, 3, size, size) and data.x.dtype == torch.float32
    assert float(data.x.min()) >= -1.0 and float(data.x.max()) <= 1.0
    assert data.segmentation.shape == (8, size, size) and data.segmentation.dtype == torch.uint8
    assert int(data.segmentation.max()) < len(SEGMENT_CLASSES)
    assert len(data.captions) == len(data.attributes) == 8


def test_heldout_combinations_never_in_train_and_always_in_heldout():
    train = render_landscapes(range(1500), size=32, split="train")["attributes"]
    test = render_landscapes(range(500), size=32, split="test")["attributes"]
    heldout = render_landscapes(range(300), size=32, split="heldout")["attributes"]
    assert not any(is_heldout(a) for a in train + test)
    assert all(is_heldout(a) for a in heldout)
    for combo in HELDOUT_COMBINATIONS:  # each combination shows up in heldout
        assert any(all(a[k] == v for k, v in combo.items()) for a in heldout)
    for time in TIMES:  # every value still appears in train, with other partners
        assert any(a["time"] == time for a in train)
    for key in ("snow", "lake", "trees", "clouds"):
        assert {a[key] for a in train} == {True, False}


def test_captions_come_in_several_phrasings(renders64):
    captions, attributes = renders64["captions"], renders64["attributes"]
    assert len(set(captions)) > 100
    assert any(c.startswith("a ") and "landscape:" in c for c in captions)
    assert any(c.count(",") >= 3 and ("no lake" in c or "no trees" in c) for c in captions)
    for text, a in zip(captions, attributes):
        assert a["time"] in text or {"day": "daytime", "night": "night"}.get(a["time"], "?") in text
        assert ("snow" in text) == a["snow"]


@pytest.mark.parametrize("size,count", [(32, 150), (64, 240), (128, 30)])
def test_analyzer_is_exact_on_renders(size, count, renders64):
    rendered = renders64 if size == 64 else render_landscapes(range(count), size=size, split="all", seed=3)
    found, segmentation = analyze_landscapes(rendered["images"])
    assert score_attributes(rendered["attributes"], found)["all"] == 1.0
    assert [f["horizon"] for f in found] == [a["horizon"] for a in rendered["attributes"]]
    assert torch.equal(segmentation, rendered["segmentation"])


@pytest.mark.parametrize("corruption", ["noise", "blur", "both"])
def test_analyzer_is_robust_to_noise_and_blur(corruption, renders64):
    images = renders64["images"]
    noise = 0.1 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    corrupted = {"noise": images + noise, "blur": _blur(images), "both": _blur(images) + noise}[corruption]
    found, segmentation = analyze_landscapes(corrupted)
    scores = score_attributes(renders64["attributes"], found)
    assert min(scores.values()) >= 0.98, scores
    assert segmentation_accuracy(renders64["segmentation"], segmentation) >= 0.97


def test_bad_options_are_one_line_errors():
    for options in ({"size": 48}, {"split": "validation"}, {"n": 0}, {"seed": -1}):
        with pytest.raises(UnnoiseError) as error:
            load_landscapes(**options)
        assert "\n" not in str(error.value) and "landscapes" in str(error.value)
    with pytest.raises(UnnoiseError):
        analyze_landscapes(torch.zeros(2, 1, 64, 64))
