"""The procedural `shapes` dataset: rendering, captions, compositional splits and the analyzer."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from unnoise.data import DATASETS, load_dataset
from unnoise.data.shapes import (
    COLOURS,
    HELDOUT_COMBINATIONS,
    SHAPES,
    analyze_shapes,
    caption,
    load_shapes,
    render_scenes,
    scene_is_heldout,
    score_against,
)
from unnoise.errors import UnnoiseError

ATTRIBUTES = ("shape", "colour", "position", "size")


@pytest.fixture(scope="module")
def train():
    return load_shapes(n=1000, split="train", seed=0)


@pytest.fixture(scope="module")
def mixed_renders():
    """250 one-object and 250 two-object scenes, as the analyzer tests use them."""
    one = load_shapes(n=250, objects="1", seed=7)
    two = load_shapes(n=250, objects="2", seed=7)
    return torch.cat([one.x, two.x]), one.scenes + two.scenes


def _pairs(dataset) -> set[tuple[str, str]]:
    return {(obj["shape"], obj["colour"]) for scene in dataset.scenes for obj in scene}


def _blur(images: torch.Tensor, sigma: float = 0.7) -> torch.Tensor:
    taps = torch.exp(-torch.arange(-1.0, 2.0) ** 2 / (2 * sigma**2))
    kernel = (taps.view(-1, 1) * taps) / taps.sum() ** 2
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, kernel.expand(3, 1, 3, 3).contiguous(), groups=3)


# ---- images -------------------------------------------------------------------------------


def test_registered_shape_range_and_attributes():
    assert DATASETS["shapes"] is load_shapes
    data = load_dataset("shapes", n=64, size=48)
    assert data.x.shape == (64, 3, 48, 48) and data.x.dtype == torch.float32
    assert float(data.x.min()) == -1.0 and float(data.x.max()) <= 1.0
    assert len(data.captions) == len(data.scenes) == 64 and data.levels == 0
    assert data.labels is None and data[0][1].item() == -1
    assert all(1 <= len(scene) <= 2 for scene in data.scenes)


def test_one_object_scenes_carry_a_class_label():
    data = load_shapes(n=100, objects="1")
    assert data.num_classes == len(SHAPES) * len(COLOURS)
    for scene, label in zip(data.scenes, data.labels.tolist()):
        assert data.class_names[label] == f"{scene[0]['colour']} {scene[0]['shape']}"


def test_same_seed_same_data_and_splits_differ(train):
    again = load_shapes(n=1000, split="train", seed=0)
    assert torch.equal(train.x, again.x) and train.captions == again.captions
    first = load_shapes(n=200, split="train")
    assert torch.equal(first.x, load_shapes(n=200, split="all").x)
    others = [load_shapes(n=200, split=split) for split in ("test", "heldout")]
    others.append(load_shapes(n=200, split="train", seed=1))
    assert all(not torch.equal(first.x, other.x) and first.scenes != other.scenes for other in others)


def test_two_objects_stay_in_their_halves():
    data = load_shapes(n=300, objects="2", seed=2)
    for image, scene in zip(data.x, data.scenes):
        gap = image[:, :, 15:17] if scene[0]["position"] == "left" else image[:, 15:17, :]
        assert float(gap.max()) == -1.0  # a clear band between the two objects


# ---- splits -------------------------------------------------------------------------------


def test_heldout_combinations_partition_the_splits(train):
    assert len(HELDOUT_COMBINATIONS) == 4
    assert len({s for s, _ in HELDOUT_COMBINATIONS}) == 4 and len({c for _, c in HELDOUT_COMBINATIONS}) == 4
    assert not any(scene_is_heldout(scene) for scene in train.scenes)
    assert _pairs(train) == {(s, c) for s in SHAPES for c in COLOURS} - set(HELDOUT_COMBINATIONS)
    assert {s for s, _ in _pairs(train)} == set(SHAPES) and {c for _, c in _pairs(train)} == set(COLOURS)
    test = load_shapes(n=1000, split="test")
    assert not any(scene_is_heldout(scene) for scene in test.scenes)
    heldout = load_shapes(n=1000, split="heldout")
    assert all(scene_is_heldout(scene) for scene in heldout.scenes)
    assert set(HELDOUT_COMBINATIONS) <= _pairs(heldout)


# ---- captions -----------------------------------------------------------------------------


def test_captions_name_every_object(train):
    for text, scene in zip(train.captions, train.scenes):
        words = set(re.findall(r"[a-z]+", text))
        for obj in scene:
            assert {obj["shape"], obj["colour"], obj["position"]} <= words, (text, scene)
    vocabulary = r"\b(%s)\b" % "|".join([*SHAPES, *COLOURS, "left", "right", "top", "bottom", "centre",
                                         "small", "large"])
    skeletons = {re.sub(vocabulary, "_", text) for text in train.captions}
    assert len(skeletons) >= 8  # several phrasings for one and for two objects


def test_caption_phrasings():
    one = [{"shape": "triangle", "colour": "red", "position": "left", "size": "small"}]
    two = one + [{"shape": "circle", "colour": "blue", "position": "right", "size": "large"}]
    assert caption(one, 0) == "a red triangle on the left"
    assert caption(one, 1) == "left: red triangle"
    assert caption(one, 2) == "a small red triangle on the left"
    assert caption(two, 0) == "a red triangle on the left and a blue circle on the right"
    assert caption(two, 1) == "left: red triangle; right: blue circle"
    assert caption(two, 3) == "a blue circle on the right and a red triangle on the left"


# ---- analyzer -----------------------------------------------------------------------------


def test_analyzer_reads_clean_renders_exactly(mixed_renders):
    images, scenes = mixed_renders
    scores = score_against(scenes, analyze_shapes(images))
    assert all(scores[key] == 1.0 for key in (*ATTRIBUTES, "count", "scene")), scores
    assert scores["objects"] == 750


def test_analyzer_is_robust_to_noise_and_blur(mixed_renders):
    images, scenes = mixed_renders
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    scores = score_against(scenes, analyze_shapes(_blur(images) + 0.1 * noise))
    assert all(scores[key] >= 0.97 for key in ATTRIBUTES), scores


def test_analyzer_round_trip_blank_and_scoring():
    scene = [{"shape": "cross", "colour": "cyan", "position": "top", "size": "large"},
             {"shape": "square", "colour": "magenta", "position": "bottom", "size": "small"}]
    assert analyze_shapes(render_scenes([scene])) == [scene]
    assert analyze_shapes(-torch.ones(2, 3, 32, 32)) == [[], []]
    missing = score_against([scene], [[dict(scene[0], shape="circle")]])
    assert missing["position"] == 0.5 and missing["shape"] == 0.0 and missing["colour"] == 0.5
    assert missing["count"] == 0.0 and missing["scene"] == 0.0
    with pytest.raises(UnnoiseError, match="scenes"):
        score_against([scene], [])
    with pytest.raises(UnnoiseError, match="analyze_shapes"):
        analyze_shapes(torch.zeros(1, 3, 32, 16))


@pytest.mark.parametrize(
    "options, word",
    [({"size": 8}, "size"), ({"split": "valid"}, "split"), ({"n": 0}, "n"),
     ({"objects": "3"}, "objects"), ({"seed": -1}, "seed")],
)
def test_bad_options_raise_one_line(options, word):
    with pytest.raises(UnnoiseError, match=rf"\b{word}\b") as error:
        load_dataset("shapes", **options)
    assert "\n" not in str(error.value)
