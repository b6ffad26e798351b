"""Inception-v3 FID features from a local weights file; nothing is ever downloaded.

`InceptionV3FID` is the FID variant of Inception-v3, the network behind the usual
`pt_inception-2015-12-05-6726825d.pth` weights (a port of TensorFlow's 2015-12-05 graph): its average
pools ignore padded zeros and Mixed_7c pools by max, as TensorFlow's graph does. Its state-dict keys
follow torchvision's Inception3 naming, so that file loads as is. Features are the 2048 globally
average-pooled activations after Mixed_7c, computed on images resized bilinearly to 299x299 and fed
in [-1, 1], the range those weights expect.
"""
from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..device import cpu
from ..errors import UnnoiseError
from ..run.checkpoint import file_sha256
from .extractor import Extractor

ENV_VAR = "UNNOISE_INCEPTION_WEIGHTS"
FEATURES = 2048
CLASSES = 1008
SIZE = 299
CHUNK = 50


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 0.001), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: Tensor) -> Tensor:
    """3x3 stride-1 average that, like TensorFlow's, leaves padded zeros out of the mean."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pooled branches -> 224 + pool_features channels."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool(x))], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction: strided 3x3, strided double 3x3, max pool -> 480 + cin channels."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions of width c7 -> 768 channels."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7dbl = x
        for i in range(1, 6):
            b7dbl = getattr(self, f"branch7x7dbl_{i}")(b7dbl)
        return torch.cat([self.branch1x1(x), b7, b7dbl, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction: strided 3x3, 7x7-then-strided-3x3, max pool -> 512 + cin channels."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 heads -> 2048 channels; the pool branch averages or maxes."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        b3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3dbl = torch.cat([self.branch3x3dbl_3a(b3dbl), self.branch3x3dbl_3b(b3dbl)], 1)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat([self.branch1x1(x), b3, b3dbl, self.branch_pool(pooled)], 1)


class InceptionV3FID(nn.Module):
    """The FID Inception-v3: (N, 3, 299, 299) in [-1, 1] -> (N, 2048) features; `logits` adds fc (1008)."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURES, CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean((2, 3))

    def logits(self, x: Tensor) -> Tensor:
        return self.fc(self(x))


def prepare_images(x: Tensor) -> Tensor:
    """(N, 1 or 3, H, W) in [-1, 1] -> (N, 3, 299, 299) float in [-1, 1], resized bilinearly."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise UnnoiseError(f"Inception features take (N, 1 or 3, H, W) images, got {tuple(x.shape)}")
    x = x.float().clamp(-1, 1).expand(-1, 3, -1, -1)
    if tuple(x.shape[2:]) != (SIZE, SIZE):
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return x


def inception_features(model: InceptionV3FID, x: Tensor, chunk: int = CHUNK) -> Tensor:
    """(N, C, H, W) images in [-1, 1] -> (N, 2048) features, `chunk` images at a time, on x's device."""
    device = next(model.parameters()).device
    with torch.no_grad():
        parts = [model(prepare_images(part.to(device))).to(x.device) for part in x.split(chunk)]
    return torch.cat(parts) if parts else x.new_zeros(0, FEATURES, dtype=torch.float32)


def _read_state_dict(path: Path) -> dict:
    """The file's tensors; .safetensors via safetensors, anything else via torch.load(weights_only=True)."""
    if not path.is_file():
        raise UnnoiseError(f"{path}: no such Inception weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        return torch.load(path, map_location=cpu(), weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's weights_only refusal of anything but tensors and containers
        raise UnnoiseError(f"{path}: not a plain tensor state dict; refused by torch.load(weights_only=True), "
                           f"never unpickled: {_reason(exc)}") from None
    except Exception as exc:
        raise UnnoiseError(f"{path}: cannot read Inception weights: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    """The telling line of a loader's multi-line message (the WeightsUnpickler part of torch's)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split("WeightsUnpickler error:")[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [type(exc).__name__]
    return lines[0].split(". Please")[0][:200]


def _mismatches(model: nn.Module, state: Mapping) -> list[str]:
    """Missing, unexpected and wrongly shaped keys (a missing num_batches_tracked is harmless)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__} "
             f"(expected {tuple(expected[k].shape)})"
             for k, v in state.items()
             if k in expected and not (isinstance(v, Tensor) and v.shape == expected[k].shape)]
    return [f"{label} {_first(keys)}" for label, keys in
            (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]


def _first(keys: list[str], n: int = 3) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_inception_weights(path: str | os.PathLike) -> InceptionV3FID:
    """An InceptionV3FID in eval mode with the weights in `path` (.safetensors, or a .pth/.pt state dict)."""
    path = Path(path)
    state = _read_state_dict(path)
    if not isinstance(state, Mapping):
        raise UnnoiseError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    model = InceptionV3FID()
    problems = _mismatches(model, state)
    if problems:
        raise UnnoiseError(f"{path}: not FID Inception-v3 weights: " + "; ".join(problems))
    model.load_state_dict(dict(state), strict=False)
    return model.eval().requires_grad_(False)


def inception_extractor(weights_path: str | os.PathLike) -> Extractor:
    """The `inception-v3-fid` Extractor: 2048 pool features of the weights in `weights_path`."""
    path = Path(weights_path).expanduser()
    model = load_inception_weights(path)
    info = {"path": str(path), "features": FEATURES, "input": [3, SIZE, SIZE], "resize": "bilinear"}
    return Extractor("inception-v3-fid", lambda x: inception_features(model, x), None, file_sha256(path), info)


def inception_from_env() -> Extractor:
    """The Inception extractor for the weights file named by $UNNOISE_INCEPTION_WEIGHTS."""
    path = os.environ.get(ENV_VAR)
    if not path:
        raise UnnoiseError(f"the inception extractor needs local weights: point {ENV_VAR} (or --inception-weights) "
                           "at a pt_inception-2015-12-05 weights file (.pth or .safetensors); nothing is downloaded")
    return inception_extractor(path)
