"""Codecs between data space and diffusion space (Rombach et al. 2022): a diffusion model trains and
samples in the codec's latent space; `decode` brings samples back to data.

Every codec offers `encode(x) -> z`, `decode(z) -> x`, `latent_shape(data_shape)` and `record()`, the
JSON dict a latent run stores; `codec_from_record` rebuilds the codec from it and refuses an
autoencoder whose weights changed since (SHA-256) with a one-line error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from ..errors import UnnoiseError
from .autoencoder import AutoencoderCodec, LatentScale, load_codec, measure_latent_scale, save_autoencoder
from .identity import IdentityCodec


class Codec(Protocol):
    kind: str

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Data (B, *data_shape) -> diffusion-space tensors (B, *latent_shape)."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Diffusion-space tensors back to data."""

    def latent_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The diffusion-space shape of one sample of data shape `shape`."""

    def record(self) -> dict:
        """A JSON dict from which `codec_from_record` rebuilds this codec."""


def codec_from_record(record: dict | None, base: Path | None = None) -> Codec:
    """The codec a run recorded: None or {"kind": "identity"} -> IdentityCodec; {"kind": "autoencoder",
    "path": DIR, "sha256": HEX} -> the autoencoder at DIR (relative paths against `base`), refused with
    a one-line error when its weights no longer hash to HEX."""
    if record is None or record.get("kind") == "identity":
        return IdentityCodec()
    if record.get("kind") != "autoencoder":
        raise UnnoiseError(f"codec: unknown kind {record.get('kind')!r}; valid: autoencoder, identity")
    path = Path(record["path"])
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return load_codec(path, expected_sha256=record.get("sha256"))


__all__ = ["AutoencoderCodec", "Codec", "IdentityCodec", "LatentScale", "codec_from_record", "load_codec",
           "measure_latent_scale", "save_autoencoder"]
