"""Devices and numeric precision: the one place in unnoise that names a device type.

`resolve_device(name)` turns a user's `--device` / `train.device` value into a `torch.device`:
"auto" (the default) is the first CUDA device when one is available, else the CPU; "cpu", "cuda" and
"cuda:N" are taken literally, and asking for CUDA on a machine without it is a one-line error, never a
silent CPU run. `autocast(device, precision)` is the mixed-precision context for a precision name:
fp32 runs as is; bf16 autocasts on either device type; fp16 autocasts on CUDA only (CPU float16 matmuls
are slow and, without a gradient scaler, underflow), so fp16 on a CPU is an error naming bf16 instead.
"""
from __future__ import annotations

import contextlib

import torch

from .errors import UnnoiseError

CPU, CUDA, AUTO = "cpu", "cuda", "auto"
DEVICE_CHOICES = (AUTO, CPU, CUDA, "cuda:N")
PRECISIONS = ("fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu() -> torch.device:
    """The CPU device (for tensors that must live in host memory: saving, images, audio)."""
    return torch.device(CPU)


def cuda_available() -> bool:
    return torch.cuda.is_available()


def resolve_device(name: str | torch.device | None = AUTO) -> torch.device:
    """The torch.device a `--device` value names: auto (CUDA if available, else CPU), cpu, cuda, cuda:N."""
    if isinstance(name, torch.device):
        name = str(name)
    text = AUTO if name is None else str(name).strip().lower()
    if text == AUTO:
        return torch.device(CUDA if cuda_available() else CPU)
    if text == CPU:
        return torch.device(CPU)
    kind, _, index = text.partition(":")
    if kind != CUDA or (index and not index.isdigit()):
        raise UnnoiseError(f"device: unknown {name!r}; valid: {', '.join(DEVICE_CHOICES)}")
    if not cuda_available():
        raise UnnoiseError(f"device {name!r}: CUDA is not available on this machine "
                           f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'}); "
                           f"use --device cpu or auto")
    if index and int(index) >= torch.cuda.device_count():
        raise UnnoiseError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(text)


def is_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == CUDA


def local_device(local_rank: int) -> torch.device:
    """The device of a distributed rank: CUDA device `local_rank` when CUDA is available, else the CPU."""
    return torch.device(CUDA, local_rank) if cuda_available() else torch.device(CPU)


def distributed_backend(device: torch.device) -> str:
    """The torch.distributed backend for ranks on `device`: nccl on CUDA, gloo on CPU."""
    return "nccl" if is_cuda(device) else "gloo"


def check_precision(precision: str, device: torch.device | None = None, where: str = "precision") -> None:
    """One-line error for an unknown precision, or fp16 on a CPU."""
    if precision not in PRECISIONS:
        raise UnnoiseError(f"{where}: unknown {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "fp16" and device is not None and not is_cuda(device):
        raise UnnoiseError(f"{where}=fp16 needs a CUDA device (got {device}); use bf16 on a CPU")


def autocast(device: torch.device | str, precision: str = "fp32"):
    """The autocast context for `precision` on `device` (fp32: no autocast; master weights stay fp32)."""
    device = torch.device(device)
    check_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])


def to_device(tree, device: torch.device | str):
    """Tensors of a (nested) dict / list / tuple moved to `device`; anything else kept as is."""
    if isinstance(tree, torch.Tensor):
        return tree.to(device)
    if isinstance(tree, dict):
        return {key: to_device(value, device) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_device(value, device) for value in tree)
    return tree


def synchronize(device: torch.device | str) -> None:
    """Wait for queued work on `device` (timing); a no-op on the CPU."""
    if is_cuda(device):
        torch.cuda.synchronize(torch.device(device))


def device_rng_state(device: torch.device | str) -> torch.Tensor | None:
    """The random state of `device`'s own generator (CUDA: dropout and any sampling on the GPU), for an
    exact resume; None on the CPU, whose state torch.get_rng_state() already covers."""
    if not is_cuda(device):
        return None
    return torch.cuda.get_rng_state(torch.device(device))


def set_device_rng_state(device: torch.device | str, state: torch.Tensor | None) -> None:
    """Restore what device_rng_state returned (nothing to do on the CPU or for an older checkpoint)."""
    if state is not None and is_cuda(device):
        torch.cuda.set_rng_state(state.cpu(), torch.device(device))
