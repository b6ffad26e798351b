"""Device resolution and precision: one-line errors, never a silent CPU run when CUDA was asked for."""
import pytest
import torch

from unnoise.device import PRECISIONS, autocast, cpu, resolve_device, to_device
from unnoise.errors import UnnoiseError


def test_auto_and_cpu():
    assert resolve_device("cpu") == cpu()
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected and resolve_device(None).type == expected
    assert resolve_device(torch.device("cpu")) == cpu()


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu", ""])
def test_unknown_device_names_are_one_line_errors(name):
    with pytest.raises(UnnoiseError, match="valid: auto, cpu, cuda, cuda:N") as info:
        resolve_device(name)
    assert "\n" not in str(info.value)


def test_cuda_without_cuda_is_an_error_not_a_cpu_run(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:0", "CUDA"):
        with pytest.raises(UnnoiseError, match="CUDA is not available") as info:
            resolve_device(name)
        assert "\n" not in str(info.value)
    assert resolve_device("auto") == cpu()


def test_autocast_per_precision():
    assert PRECISIONS == ("fp32", "bf16", "fp16")
    x = torch.randn(4, 4)
    with autocast(cpu(), "fp32"):
        assert (x @ x).dtype == torch.float32
    with autocast(cpu(), "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    with pytest.raises(UnnoiseError, match="fp16 needs a CUDA device"):
        autocast(cpu(), "fp16")
    with pytest.raises(UnnoiseError, match="unknown 'fp8'"):
        autocast(cpu(), "fp8")


def test_to_device_moves_nested_conditions():
    tree = {"label": torch.zeros(2, dtype=torch.long), "text": {"pooled": torch.ones(2, 3)}, "none": None}
    moved = to_device(tree, cpu())
    assert moved["text"]["pooled"].device == cpu() and moved["none"] is None
