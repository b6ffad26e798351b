"""The ControlNet objective (Zhang et al. 2023): the denoising loss of the controlled U-Net, with only the
ControlNet's parameters trained; the frozen base's weights are hashed at the start and checked at every
checkpoint, so a run can never save a changed base."""
from __future__ import annotations

from torch import Tensor, nn

from ..errors import UnnoiseError
from .denoising import DenoisingObjective


class ControlObjective(DenoisingObjective):
    """DenoisingObjective for a denoiser whose net is a ControlledUNet; `base_sha256` is the base's hash."""

    def __init__(self, denoiser, conditions, train, levels: int = 0, base_sha256: str | None = None):
        super().__init__(denoiser, conditions, train, levels)
        from ..sample.auto.cache import weights_sha256

        self.base_sha256 = base_sha256 or weights_sha256(self.model.base)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The ControlNet's parameters (the base is frozen)."""
        return [p for p in self.model.control.parameters() if p.requires_grad]

    def check_base(self) -> None:
        from ..sample.auto.cache import weights_sha256

        found = weights_sha256(self.model.base)
        if found != self.base_sha256:
            raise UnnoiseError(f"the frozen base's weights changed during training (sha256 {found[:12]}..., "
                               f"expected {self.base_sha256[:12]}...)")

    def state(self) -> dict[str, Tensor]:
        self.check_base()  # called for every checkpoint
        return super().state()
