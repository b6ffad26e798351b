"""The autoencoder codec: z = (mean(x) - shift) * scale with the KL autoencoder's posterior mean, and
x = D(z / scale + shift). The latent scale (Rombach et al. 2022, Sec. 4.3.2: "rescale the latents by
the component-wise standard deviation") is measured once on the training images: shift is the mean
and 1 / scale the standard deviation of every latent value, so training latents have mean 0 and
standard deviation 1, as the diffusion processes assume.

On disk an autoencoder is a directory with `codec.json` ({"kind", "config", "scale", "shift",
"weights", "sha256"}) and its safetensors weights; the SHA-256 of the weights is checked on load.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UnnoiseError
from ..nn.autoencoder import KLAutoencoder
from ..sample.auto.cache import weights_sha256

CODEC_FILE = "codec.json"
WEIGHTS_FILE = "autoencoder.safetensors"


@dataclass(frozen=True)
class LatentScale:
    """z = (mean - shift) * scale and its inverse, computed in float64 and cast back, so the inverse
    returns the mean to within one rounding of its dtype."""

    scale: float = 1.0
    shift: float = 0.0

    def apply(self, mean: torch.Tensor) -> torch.Tensor:
        return ((mean.double() - self.shift) * self.scale).to(mean.dtype)

    def invert(self, z: torch.Tensor) -> torch.Tensor:
        return (z.double() / self.scale + self.shift).to(z.dtype)


@torch.no_grad()
def measure_latent_scale(autoencoder: KLAutoencoder, images: torch.Tensor, batch: int = 256) -> LatentScale:
    """Shift = mean and scale = 1 / standard deviation of all posterior-mean latent values of `images`."""
    total, squares, count = 0.0, 0.0, 0
    device = next(autoencoder.parameters()).device
    for chunk in images.split(batch):
        mean = autoencoder.encode(chunk.to(device))[0].double()
        total, squares, count = total + float(mean.sum()), squares + float((mean * mean).sum()), count + mean.numel()
    shift = total / count
    variance = max(squares / count - shift * shift, 1e-24)
    return LatentScale(scale=variance ** -0.5, shift=shift)


class AutoencoderCodec:
    """Encode with the posterior mean of `autoencoder` and its `latent_scale`; decode through its decoder.
    `path` and `sha256` name the weights it was loaded from (recorded by latent runs)."""

    kind = "autoencoder"

    def __init__(self, autoencoder: KLAutoencoder, latent_scale: LatentScale, path: Path | None = None,
                 sha256: str | None = None):
        self.autoencoder, self.latent_scale, self.path = autoencoder, latent_scale, path
        self.sha256 = sha256 or weights_sha256(autoencoder)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> scaled latents (B, latent_channels, H / f, W / f)."""
        return self.latent_scale.apply(self.autoencoder.encode(x)[0])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images."""
        return self.autoencoder.decode(self.latent_scale.invert(z))

    def latent_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.autoencoder.latent_shape(shape)

    def record(self) -> dict:
        return {"kind": self.kind, "path": str(self.path) if self.path else None, "sha256": self.sha256,
                "scale": self.latent_scale.scale, "shift": self.latent_scale.shift,
                "factor": self.autoencoder.factor, "latent_channels": self.autoencoder.latent_channels}


def _write_atomic(path: Path, write) -> None:
    temporary = path.with_name(path.name + ".tmp")
    write(temporary)
    os.replace(temporary, path)


def save_autoencoder(directory, autoencoder: KLAutoencoder, latent_scale: LatentScale) -> AutoencoderCodec:
    """Write `autoencoder` and its latent scale to `directory` (created); returns the codec it holds."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in autoencoder.state_dict().items()}
    _write_atomic(directory / WEIGHTS_FILE, lambda path: save_file(state, str(path)))
    codec = AutoencoderCodec(autoencoder, latent_scale, directory)
    meta = {"kind": "autoencoder", "config": autoencoder.config, "scale": latent_scale.scale,
            "shift": latent_scale.shift, "weights": WEIGHTS_FILE, "sha256": codec.sha256}
    _write_atomic(directory / CODEC_FILE, lambda path: path.write_text(json.dumps(meta, indent=1)))
    return codec


def _read_meta(directory: Path) -> dict:
    try:
        meta = json.loads((directory / CODEC_FILE).read_text())
    except FileNotFoundError:
        raise UnnoiseError(f"codec {directory}: no {CODEC_FILE}; not an autoencoder directory") from None
    except (OSError, ValueError) as error:
        raise UnnoiseError(f"codec {directory / CODEC_FILE}: unreadable ({type(error).__name__})") from None
    missing = [key for key in ("config", "scale", "shift", "weights", "sha256") if key not in meta]
    if not isinstance(meta, dict) or missing:
        raise UnnoiseError(f"codec {directory / CODEC_FILE}: missing {', '.join(missing) or 'everything'}")
    return meta


def load_codec(directory, expected_sha256: str | None = None, device: torch.device | None = None) -> AutoencoderCodec:
    """The autoencoder codec saved in `directory`. Refused with a one-line error when its weights do not
    hash to the SHA-256 in codec.json, or to `expected_sha256` (what a latent run recorded)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    meta = _read_meta(directory)
    try:
        state = load_file(str(directory / meta["weights"]))
        autoencoder = KLAutoencoder(**meta["config"])
        autoencoder.load_state_dict(state)
    except (OSError, RuntimeError, TypeError, ValueError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UnnoiseError(f"codec {directory}: cannot load the autoencoder weights ({message})") from None
    sha256 = weights_sha256(autoencoder)
    for recorded, where in ((meta["sha256"], CODEC_FILE), (expected_sha256, "the latent run")):
        if recorded is not None and recorded != sha256:
            raise UnnoiseError(f"codec {directory}: the autoencoder changed (weights sha256 {sha256[:16]}, "
                               f"{where} recorded {recorded[:16]}); restore it or retrain on the new one")
    autoencoder.eval().requires_grad_(False)
    if device is not None:
        autoencoder.to(device)
    return AutoencoderCodec(autoencoder, LatentScale(float(meta["scale"]), float(meta["shift"])), directory, sha256)
