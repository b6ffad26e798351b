"""Datasets (digits, toy2d, imagefolder), the registry, and the image writers."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from unnoise.data import DATASETS, ArrayDataset, load_dataset
from unnoise.errors import UnnoiseError
from unnoise.io.image import grid_array, save_gif, save_grid, to_uint8
from unnoise.io.points import save_scatter

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def digits() -> ArrayDataset:
    pytest.importorskip("sklearn")
    return load_dataset("digits")


# ---- digits -------------------------------------------------------------------------------


def test_digits_shape_range_labels(digits):
    assert len(digits) == 1797
    assert digits.x.shape == (1797, 1, 8, 8) and digits.x.dtype == torch.float32
    assert digits.shape == (1, 8, 8)
    assert float(digits.x.min()) == -1.0 and float(digits.x.max()) == 1.0
    assert digits.num_classes == 10 and digits.class_names == [str(d) for d in range(10)]
    assert set(digits.labels.tolist()) == set(range(10))
    image, label = digits[5]
    assert image.shape == (1, 8, 8) and int(label) == int(digits.labels[5])
    assert "1797" in digits.describe() and "\n" not in digits.describe()


@pytest.mark.parametrize("size", [4, 16])
def test_digits_resize(size):
    pytest.importorskip("sklearn")
    data = load_dataset("digits", size=size)
    assert data.x.shape == (1797, 1, size, size)
    assert float(data.x.min()) >= -1.0 and float(data.x.max()) <= 1.0


def test_split_is_deterministic_and_disjoint(digits):
    train, heldout = digits.split(0.2, seed=3)
    again_train, _ = digits.split(0.2, seed=3)
    assert len(train) + len(heldout) == 1797 and len(heldout) == round(1797 * 0.2)
    assert torch.equal(train.x, again_train.x)
    assert train.class_names == digits.class_names
    with pytest.raises(UnnoiseError, match="fraction"):
        digits.split(1.0)


# ---- toy2d --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["moons", "swissroll", "ring"])
def test_toy2d_kinds_are_unit_scale(kind):
    data = load_dataset("toy2d", kind=kind, n=4000)
    assert data.x.shape == (4000, 2) and data.shape == (2,)
    assert 0.5 < float(data.x.std(dim=0).mean()) < 1.5
    assert float(data.x.mean(dim=0).abs().max()) < 0.2


def test_toy2d_ring_labels_are_modes():
    data = load_dataset("toy2d", kind="ring", n=2000)
    assert data.num_classes == 8
    radius = data.x.norm(dim=1)
    assert torch.allclose(radius, torch.full_like(radius, 1.5), atol=0.2)
    angle = torch.atan2(data.x[:, 1], data.x[:, 0]) % (2 * np.pi)
    nearest_mode = torch.round(angle / (2 * np.pi / 8)).long() % 8
    assert torch.equal(nearest_mode, data.labels)


def test_toy2d_unlabelled_items_have_label_minus_one():
    data = load_dataset("toy2d", kind="moons", n=10)
    assert data.labels is None and data.num_classes == 0
    assert int(data[0][1]) == -1


def test_toy2d_seed_determinism():
    first = load_dataset("toy2d", kind="swissroll", n=500, seed=7)
    second = load_dataset("toy2d", kind="swissroll", n=500, seed=7)
    other = load_dataset("toy2d", kind="swissroll", n=500, seed=8)
    assert torch.equal(first.x, second.x)
    assert not torch.equal(first.x, other.x)


def test_toy2d_bad_kind_lists_valid_kinds():
    with pytest.raises(UnnoiseError) as error:
        load_dataset("toy2d", kind="spiral")
    message = str(error.value)
    assert "spiral" in message and all(k in message for k in ("moons", "swissroll", "ring"))


def test_toy2d_bad_values():
    with pytest.raises(UnnoiseError, match="toy2d n"):
        load_dataset("toy2d", n=0)
    with pytest.raises(UnnoiseError, match="toy2d noise"):
        load_dataset("toy2d", noise=-1)


# ---- registry -----------------------------------------------------------------------------


def test_unknown_dataset_lists_names():
    with pytest.raises(UnnoiseError) as error:
        load_dataset("mnist")
    assert "mnist" in str(error.value)
    assert all(name in str(error.value) for name in DATASETS)


def test_unknown_option_lists_valid_options():
    with pytest.raises(UnnoiseError) as error:
        load_dataset("toy2d", kinds="ring")
    message = str(error.value)
    assert "'kinds'" in message and "kind" in message and "noise" in message


# ---- imagefolder --------------------------------------------------------------------------


def _write_image(path, size, colour, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)


@pytest.fixture()
def image_tree(tmp_path):
    root = tmp_path / "pictures"
    _write_image(root / "cats" / "a.png", (40, 30), (255, 0, 0), "PNG")
    _write_image(root / "cats" / "b.jpg", (20, 20), (0, 255, 0), "JPEG")
    _write_image(root / "dogs" / "nested" / "c.png", (16, 48), (0, 0, 255), "PNG")
    (root / "dogs" / "broken.png").write_bytes(np.random.default_rng(0).bytes(300))
    (root / "dogs" / "notes.txt").write_text("not an image\n")
    return root


def test_imagefolder_loads_good_images_and_skips_bad(image_tree, caplog):
    with caplog.at_level(logging.INFO, logger="unnoise.data"):
        data = load_dataset("imagefolder", path=str(image_tree), size=8)
    assert data.x.shape == (3, 3, 8, 8)
    assert float(data.x.min()) >= -1.0 and float(data.x.max()) <= 1.0
    assert len(data.skipped) == 2
    assert {Path(p).name for p in data.skipped} == {"broken.png", "notes.txt"}
    assert data.class_names == ["cats", "dogs"] and data.labels.tolist() == [0, 0, 1]
    red = data.x[0]
    assert float(red[0].mean()) > 0.9 and float(red[1].mean()) < -0.9
    messages = [record.getMessage() for record in caplog.records]
    assert sum("(unreadable: " in m for m in messages) == 2
    assert any("loaded 3 images, skipped 2 files" in m for m in messages)


def test_imagefolder_skips_wrong_mode_and_too_small_and_data_check_lists_them(image_tree, capsys):
    from PIL import Image

    from unnoise.cli.main import main

    Image.new("CMYK", (20, 20)).save(image_tree / "cats" / "print.jpg")
    Image.new("RGB", (4, 4)).save(image_tree / "dogs" / "tiny.png")
    data = load_dataset("imagefolder", path=str(image_tree), size=8)
    assert {Path(p).name for p in data.skipped} == {"broken.png", "notes.txt", "print.jpg", "tiny.png"}
    assert len(load_dataset("imagefolder", path=str(image_tree), size=8, min_size=0).skipped) == 3
    assert main(["data", "check", str(image_tree), "--size", "8"]) == 1
    out = capsys.readouterr().out
    assert "print.jpg: wrong mode: CMYK" in out and "tiny.png: too small: 4x4" in out
    assert "broken.png: unreadable" in out and "notes.txt: unreadable" in out
    assert "checked 7 files: 3 usable, 4 with problems" in out


def test_imagefolder_gray_and_unlabelled(image_tree):
    _write_image(image_tree / "loose.png", (10, 10), (255, 255, 255), "PNG")
    data = load_dataset("imagefolder", path=image_tree, size=6, mode="grayscale", crop="none")
    assert data.x.shape == (4, 1, 6, 6)
    assert data.labels is None and data.num_classes == 0


def test_imagefolder_empty_folder_names_path(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UnnoiseError, match="no usable images") as error:
        load_dataset("imagefolder", path=empty)
    assert str(empty) in str(error.value)


def test_imagefolder_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UnnoiseError, match="no such directory") as error:
        load_dataset("imagefolder", path=missing)
    assert str(missing) in str(error.value)


def test_imagefolder_bad_mode(image_tree):
    with pytest.raises(UnnoiseError, match="mode"):
        load_dataset("imagefolder", path=image_tree, mode="cmyk")


# ---- image writers ------------------------------------------------------------------------


def test_to_uint8_maps_range():
    values = to_uint8(torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]))
    assert values.dtype == np.uint8 and values.tolist() == [0, 0, 128, 255, 255]


def test_save_grid_grayscale_upscaled(tmp_path):
    images = torch.rand(6, 1, 8, 8) * 2 - 1
    path = save_grid(images, tmp_path / "out" / "grid.png", nrow=3, upscale=4, pad=1)
    with Image.open(path) as picture:
        assert picture.mode == "L"
        assert picture.size == (3 * 33 + 1, 2 * 33 + 1)


def test_save_grid_rgb_pixels(tmp_path):
    images = torch.full((1, 3, 2, 2), -1.0)
    images[0, 0] = 1.0
    path = save_grid(images, tmp_path / "red.png", pad=0)
    with Image.open(path) as picture:
        assert picture.mode == "RGB" and picture.size == (2, 2)
        assert picture.getpixel((0, 0)) == (255, 0, 0)


def test_grid_rejects_bad_channels():
    with pytest.raises(UnnoiseError, match="C in"):
        grid_array(torch.zeros(2, 2, 4, 4))


def test_save_gif_frames(tmp_path):
    frames = [torch.full((4, 1, 8, 8), value) for value in (-1.0, 0.0, 1.0)]
    path = save_gif(frames, tmp_path / "anim" / "steps.gif", duration_ms=50, upscale=2)
    with Image.open(path) as picture:
        assert picture.format == "GIF"
        assert picture.n_frames == 3
        assert picture.size == (2 * 17 + 1, 2 * 17 + 1)


def test_scatter_png(tmp_path):
    points = load_dataset("toy2d", kind="ring", n=300)
    points.x[0] = float("nan")
    path = save_scatter(points.x, tmp_path / "scatter.png", size=128, labels=points.labels)
    with Image.open(path) as picture:
        assert picture.size == (128, 128)
        assert len(picture.getcolors(maxcolors=4096)) > 3


def test_imagefolder_skips_truncated_png(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "whole.png")
    encoded = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(encoded[: len(encoded) // 2])
    data = load_dataset("imagefolder", path=tmp_path, size=8)
    assert len(data) == 1 and [Path(p).name for p in data.skipped] == ["cut.png"]


def test_check_folder_lists_symlinked_folders_without_following_them(tmp_path):
    from unnoise.data.imagefolder import check_folder

    (tmp_path / "loop").mkdir()
    (tmp_path / "loop" / "self").symlink_to("..", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    total, problems = check_folder(tmp_path, 8)
    assert total == 0
    assert sorted((p.name, why) for p, why in problems) == [
        ("link", "symlink to a directory: not followed"), ("self", "symlink loop: not followed")]
