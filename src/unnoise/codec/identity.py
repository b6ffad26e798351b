"""The identity codec: diffusion space is data space (pixel runs)."""
from __future__ import annotations

import torch


class IdentityCodec:
    """encode and decode return their input unchanged, so a run through it equals a pixel run bit for bit."""

    kind = "identity"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def latent_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape)

    def record(self) -> dict:
        """What a run stores to rebuild this codec."""
        return {"kind": self.kind}
