"""The `photos` dataset: crops of scikit-image's bundled photographs, split by source photograph."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("skimage")

from unnoise.data.photos import TEST_PHOTOS, TRAIN_PHOTOS, crop_photos, load_photo, load_photos  # noqa: E402
from unnoise.errors import UnnoiseError  # noqa: E402


def test_every_photo_loads_offline_as_rgb():
    for name in TRAIN_PHOTOS + TEST_PHOTOS:
        photo = load_photo(name)
        assert photo.ndim == 3 and photo.shape[0] == 3 and min(photo.shape[1:]) >= 256
        assert -1.0 <= float(photo.min()) and float(photo.max()) <= 1.0


def test_train_and_test_come_from_disjoint_photographs():
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)
    train, test = load_photos(size=32, n=64, split="train"), load_photos(size=32, n=32, split="test")
    assert set(train.sources) <= set(TRAIN_PHOTOS) and len(set(train.sources)) >= 3
    assert set(test.sources) == set(TEST_PHOTOS)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_crops_have_the_size_and_range(size):
    data = load_photos(size=size, n=6)
    assert data.x.shape == (6, 3, size, size) and data.spec.modality == "image"
    assert float(data.x.min()) >= -1.0 and float(data.x.max()) <= 1.0
    assert float(data.x.std()) > 0.05  # real content, not a blank


def test_each_crop_depends_only_on_its_index():
    whole, _ = crop_photos(range(10), 32, "test", seed=2)
    tail, _ = crop_photos(range(4, 10), 32, "test", seed=2)
    assert torch.equal(whole[4:], tail)


def test_bad_options_are_one_line_errors():
    for options in ({"size": 100}, {"split": "heldout"}, {"min_zoom": 0}, {"n": -3}):
        with pytest.raises(UnnoiseError) as error:
            load_photos(**options)
        assert "\n" not in str(error.value) and "photos" in str(error.value)
