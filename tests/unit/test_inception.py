"""Inception-v3 FID features from a local weights file (random weights here; nothing is downloaded)."""
import hashlib

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from unnoise.errors import UnnoiseError
from unnoise.eval.features import extractor_for
from unnoise.eval.inception import (ENV_VAR, InceptionV3FID, inception_extractor, inception_features,
                                    load_inception_weights, prepare_images)

MISSING = "Mixed_6b.branch7x7_2.conv.weight"
UNPICKLED = []


def _mark_unpickled():
    UNPICKLED.append(True)


class Payload:
    """Would run code when unpickled; weights_only loading must refuse it."""

    def __reduce__(self):
        return _mark_unpickled, ()


def _random_model(seed: int = 0) -> InceptionV3FID:
    """Weights that keep activations of order one, so equal features mean equal weights."""
    torch.manual_seed(seed)
    model = InceptionV3FID()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            for tensor, low, high in ((module.weight, 0.8, 1.2), (module.bias, -0.1, 0.1),
                                      (module.running_mean, -0.1, 0.1), (module.running_var, 0.8, 1.2)):
                nn.init.uniform_(tensor.data, low, high)
    return model.eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A random model and its state dict saved as .safetensors and as a .pth."""
    root = tmp_path_factory.mktemp("inception")
    model = _random_model()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(root / "w.safetensors"))
    torch.save(state, root / "w.pth")
    return model, root


def _one_line_error(call, *fragments):
    with pytest.raises(UnnoiseError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_state_dict_names_shapes_and_size():
    state = InceptionV3FID().state_dict()
    expected = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3), "Conv2d_2b_3x3.conv.weight": (64, 32, 3, 3),
        "Conv2d_3b_1x1.conv.weight": (80, 64, 1, 1), "Conv2d_4a_3x3.bn.running_var": (192,),
        "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5), "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_5d.branch_pool.conv.weight": (64, 288, 1, 1), "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7), "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
        "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3), "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
        "Mixed_7b.branch3x3_1.conv.weight": (384, 1280, 1, 1), "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
        "Mixed_7c.branch_pool.bn.num_batches_tracked": (), "fc.weight": (1008, 2048), "fc.bias": (1008,)}
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert len(state) == 94 * 6 + 2  # 94 conv+bn units (weight, bn x5), fc weight and bias
    assert not any(k.startswith("AuxLogits") for k in state)
    params = sum(p.numel() for p in InceptionV3FID().parameters())
    assert params == 23_850_960  # torchvision's 27_161_264 less AuxLogits (3_326_696), fc 1000 -> 1008 classes


def test_safetensors_and_pth_load_to_the_same_features(weights):
    model, root = weights
    from_st, from_pth = load_inception_weights(root / "w.safetensors"), load_inception_weights(root / "w.pth")
    for loaded in (from_st, from_pth):
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    a, b = inception_features(from_st, x), inception_features(from_pth, x)
    assert a.shape == (2, 2048) and torch.equal(a, b)
    assert a.std() > 0.01  # real signal, not vanished activations


def test_extractor_on_grayscale_and_small_images(weights, monkeypatch):
    _, root = weights
    monkeypatch.setenv(ENV_VAR, str(root / "w.pth"))
    ext = extractor_for("inception")
    assert ext.name == "inception-v3-fid" and ext.logits is None
    assert ext.weights_sha256 == hashlib.sha256((root / "w.pth").read_bytes()).hexdigest()
    assert ext.info == {"path": str(root / "w.pth"), "features": 2048, "input": [3, 299, 299], "resize": "bilinear"}
    features = ext.features(torch.rand(2, 1, 8, 8) * 2 - 1)
    assert features.shape == (2, 2048) and features.isfinite().all()


class Recorder(nn.Module):
    """Stands in for the network: records batch sizes, returns 2048 input values per image."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))
        self.sizes = []

    def forward(self, x):
        self.sizes.append(len(x))
        return x.flatten(1)[:, :2048]


def test_features_go_in_chunks_of_resized_three_channel_images():
    gray, recorder = torch.rand(5, 1, 8, 8) * 2 - 1, Recorder()
    features = inception_features(recorder, gray, chunk=2)
    assert recorder.sizes == [2, 2, 1] and features.shape == (5, 2048)
    torch.testing.assert_close(features, inception_features(Recorder(), gray.repeat(1, 3, 1, 1)))
    assert inception_features(Recorder(), gray[:0]).shape == (0, 2048)


def test_prepare_images_resizes_and_rejects_odd_shapes():
    x = prepare_images(torch.randn(2, 1, 8, 8) * 3)
    assert x.shape == (2, 3, 299, 299) and x.min() == -1 and x.max() == 1  # clamped to [-1, 1]
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    assert prepare_images(torch.zeros(1, 3, 299, 299)).shape == (1, 3, 299, 299)
    for shape in [(2, 2, 8, 8), (2, 8, 8)]:
        _one_line_error(lambda: prepare_images(torch.zeros(shape)), "(N, 1 or 3, H, W)")


def test_missing_key_names_the_file_and_key(weights, tmp_path):
    state = _random_model().state_dict()
    del state[MISSING]
    torch.save(state, tmp_path / "partial.pth")
    _one_line_error(lambda: load_inception_weights(tmp_path / "partial.pth"), "partial.pth", "missing " + MISSING)


def test_unexpected_and_misshapen_keys_are_named(tmp_path):
    state = {k: v for k, v in _random_model().state_dict().items() if not k.endswith("num_batches_tracked")}
    state["AuxLogits.fc.weight"] = torch.zeros(1000, 768)
    state["fc.weight"] = torch.zeros(1000, 2048)
    torch.save(state, tmp_path / "other.pth")
    message = _one_line_error(lambda: load_inception_weights(tmp_path / "other.pth"), "other.pth",
                              "unexpected AuxLogits.fc.weight",
                              "wrong shape fc.weight (1000, 2048) (expected (1008, 2048))")
    assert "missing" not in message  # num_batches_tracked may be absent


def test_state_dict_without_num_batches_tracked_loads(weights, tmp_path):
    model, _ = weights
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(state, str(tmp_path / "old.safetensors"))
    loaded = load_inception_weights(tmp_path / "old.safetensors")
    assert torch.equal(loaded.fc.weight, model.fc.weight)


def test_pickled_objects_are_refused_without_running_them(tmp_path):
    torch.save({"fc.weight": torch.zeros(1), "payload": Payload()}, tmp_path / "evil.pth")
    _one_line_error(lambda: load_inception_weights(tmp_path / "evil.pth"), "evil.pth", "weights_only=True",
                    "Unsupported global")
    assert UNPICKLED == []


def test_unreadable_or_absent_files_name_the_file(tmp_path):
    _one_line_error(lambda: load_inception_weights(tmp_path / "absent.pth"), "absent.pth", "no such")
    for name in ("junk.pth", "junk.safetensors"):
        (tmp_path / name).write_bytes(b"not weights at all")
        _one_line_error(lambda: load_inception_weights(tmp_path / name), name, "cannot read" if "safe" in name
                        else "refused by torch.load(weights_only=True)")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    _one_line_error(lambda: load_inception_weights(tmp_path / "list.pth"), "list.pth", "state dict")


def test_unset_environment_variable_says_what_to_do(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    _one_line_error(lambda: extractor_for("inception"), ENV_VAR, "--inception-weights", "pt_inception-2015-12-05",
                    "nothing is downloaded")


def test_extractor_for_a_missing_path_names_it(tmp_path):
    _one_line_error(lambda: inception_extractor(tmp_path / "nope.safetensors"), "nope.safetensors")
