"""DataSpec: validation, round trips, every dataset's spec, integer data, and the spec a run config records."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unnoise.data import ArrayDataset, load_dataset
from unnoise.data.spec import MODALITIES, DataSpec
from unnoise.errors import UnnoiseError
from unnoise.run.config import RunConfig, config_from_dict, config_to_dict, spec_of


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_spec_round_trips_through_json():
    spec = DataSpec((1, 4096), "audio", levels=0, sample_rate=8000, class_names=("C4", "D4"))
    back = DataSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec and back.num_classes == 2 and back.shape == (1, 4096)
    tokens = DataSpec((16,), "tokens", dtype="int64", vocab_size=27)
    assert DataSpec.from_dict(tokens.to_dict()) == tokens and tokens.is_integer


@pytest.mark.parametrize("bad, fragment", [
    (dict(shape=(1, 8, 8), modality="hologram"), "unknown data modality 'hologram'"),
    (dict(shape=(1, 8, 8), modality="image", dtype="int8"), "unknown data dtype"),
    (dict(shape=(8, 8), modality="image"), "a image sample has 3 dimensions"),
    (dict(shape=(1, 4096), modality="audio"), "audio needs a sample_rate"),
    (dict(shape=(16,), modality="tokens"), "tokens are integer ids"),
    (dict(shape=(0, 3), modality="points"), "positive integers"),
    (dict(shape=(2,), modality="points", levels=-1), "levels must be a non-negative integer"),
    (dict(shape=(2,), modality="points", class_names=("a",), num_classes=3), "1 class names for num_classes=3"),
])
def test_bad_specs_are_one_line_errors(bad, fragment):
    with pytest.raises(UnnoiseError) as error:
        DataSpec(**bad)
    assert fragment in _one_line(error)


def test_from_dict_names_unknown_and_missing_keys():
    with pytest.raises(UnnoiseError, match="unknown key 'rate'"):
        DataSpec.from_dict({"shape": [2], "modality": "points", "rate": 3})
    with pytest.raises(UnnoiseError, match="missing key 'modality'"):
        DataSpec.from_dict({"shape": [2]})
    assert set(MODALITIES) == {"image", "audio", "points", "tokens", "video", "molecule", "trajectory"}


def test_every_builtin_dataset_has_a_spec(tmp_path):
    pytest.importorskip("sklearn")
    digits = load_dataset("digits")
    assert digits.spec == DataSpec((1, 8, 8), "image", levels=17, class_names=tuple(map(str, range(10))))
    assert load_dataset("toy2d", n=50).spec == DataSpec((2,), "points")
    tones = load_dataset("tones", n=4, length=512)
    assert tones.spec.modality == "audio" and tones.spec.sample_rate == 8000 and tones.spec.shape == (1, 512)
    assert load_dataset("shapes", n=2, size=16).spec.modality == "image"
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    folder = load_dataset("imagefolder", path=tmp_path, size=8)
    assert folder.spec == DataSpec((3, 8, 8), "image", levels=256)


def test_subsets_keep_the_spec():
    tones = load_dataset("tones", n=8, length=512)
    train, heldout = tones.split(0.25)
    assert train.spec == heldout.spec == tones.spec


def test_integer_tokens_stay_int64():
    ids = torch.tensor([[0, 5, 2**40], [3, 1, 4]])  # an id beyond float32's exact integers
    data = ArrayDataset(ids, name="text", modality="tokens")
    assert data.x.dtype == torch.int64 and int(data.x[0, 2]) == 2**40
    x, label = data[1]
    assert x.dtype == torch.int64 and x.tolist() == [3, 1, 4] and int(label) == -1
    assert data.subset(torch.tensor([0])).x.dtype == torch.int64
    assert data.spec == DataSpec((3,), "tokens", dtype="int64")
    assert "ids in [0," in data.describe()
    assert ArrayDataset(torch.ones(2, 3, dtype=torch.float64), modality="points").x.dtype == torch.float32


def test_a_dataset_without_modality_says_so_in_one_line():
    with pytest.raises(UnnoiseError) as error:
        ArrayDataset(torch.zeros(4, 3), name="mine").spec
    assert "mine: no modality given" in _one_line(error)


OLD_CONFIGS = [  # resolved fields of configs written before the modality field existed
    ({"data_shape": [2]}, "points"),
    ({"data_shape": [1, 8, 8], "num_classes": 10, "class_names": list("0123456789"), "data_levels": 17}, "image"),
    ({"data_shape": [1, 4096], "sample_rate": 8000}, "audio"),
]


@pytest.mark.parametrize("resolved, modality", OLD_CONFIGS)
def test_old_config_without_modality_loads_as_before(resolved, modality):
    config = config_from_dict({"data": {"name": "toy2d"}, **resolved})
    assert config.modality == "" and config.data_dtype == "float32"
    spec = spec_of(config)
    assert spec.modality == modality and spec.shape == tuple(resolved["data_shape"]) and config.spec == spec
    assert spec.levels == resolved.get("data_levels", 0) and spec.num_classes == resolved.get("num_classes", 0)


def test_config_records_the_modality_and_dtype():
    config = RunConfig(data_shape=(12,), modality="tokens", data_dtype="int64")
    back = config_from_dict(json.loads(json.dumps(config_to_dict(config))))
    assert back.modality == "tokens" and back.spec == DataSpec((12,), "tokens", dtype="int64")
    with pytest.raises(UnnoiseError) as error:
        RunConfig(data_shape=(12,), modality="smell").spec
    assert "unknown data modality 'smell'" in _one_line(error)


def test_resolve_config_takes_the_modality_from_the_dataset():
    from unnoise.run.build import resolve_config
    from unnoise.run.config import DataConfig, ModelConfig

    data = load_dataset("toy2d", n=20)
    config = RunConfig(data=DataConfig(name="toy2d"), model=ModelConfig(network="mlp"))
    resolved = resolve_config(config, data.shape, data.num_classes, data.levels, (), data.sample_rate,
                              data.spec.modality, data.spec.dtype)
    assert resolved.spec == data.spec
