"""KL-regularised convolutional autoencoder (Rombach et al. 2022, "High-resolution image synthesis with
latent diffusion models", Sec. 3.1 and App. G) and a PatchGAN discriminator (Isola et al. 2017).

The encoder maps (B, C, H, W) images to the mean and log-variance of a diagonal Gaussian posterior
q(z | x) over (B, latent_channels, H / f, W / f) latents, f = 2^levels (4 or 8); the decoder maps
latents back to images. Both are stacks of residual blocks with stride-2 downsampling and
nearest-neighbour upsampling, as in the paper's first stage.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .blocks import Downsample, Upsample, group_norm

FACTORS = (4, 8)
LOGVAR_RANGE = (-30.0, 20.0)  # clamp of the posterior log-variance, for a finite KL


class ResidualBlock(nn.Module):
    """out = skip(x) + Conv(SiLU(GN(Conv(SiLU(GN(x)))))); skip is a 1x1 conv when channels change."""

    def __init__(self, in_ch: int, out_ch: int, groups: int = 32):
        super().__init__()
        self.body = nn.Sequential(group_norm(in_ch, groups), nn.SiLU(), nn.Conv2d(in_ch, out_ch, 3, padding=1),
                                  group_norm(out_ch, groups), nn.SiLU(), nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        return self.skip(x) + self.body(x)


def _widths(channels: int, multipliers: tuple[int, ...]) -> list[int]:
    return [channels * m for m in multipliers]


class Encoder(nn.Module):
    """Images (B, C, H, W) -> posterior moments (B, 2 * latent_channels, H / f, W / f)."""

    def __init__(self, in_channels: int, latent_channels: int, channels: int, multipliers, blocks: int, groups: int):
        super().__init__()
        widths = _widths(channels, multipliers)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
        for level, width in enumerate(widths):
            previous = widths[max(level - 1, 0)]
            layers += [ResidualBlock(previous if b == 0 else width, width, groups) for b in range(blocks)]
            if level < len(widths) - 1:
                layers.append(Downsample(width))
        layers += [ResidualBlock(widths[-1], widths[-1], groups), group_norm(widths[-1], groups), nn.SiLU(),
                   nn.Conv2d(widths[-1], 2 * latent_channels, 3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    """Latents (B, latent_channels, h, w) -> images (B, C, h f, w f)."""

    def __init__(self, out_channels: int, latent_channels: int, channels: int, multipliers, blocks: int, groups: int):
        super().__init__()
        widths = _widths(channels, multipliers)[::-1]
        layers: list[nn.Module] = [nn.Conv2d(latent_channels, widths[0], 3, padding=1),
                                   ResidualBlock(widths[0], widths[0], groups)]
        for level, width in enumerate(widths):
            previous = widths[max(level - 1, 0)]
            layers += [ResidualBlock(previous if b == 0 else width, width, groups) for b in range(blocks)]
            if level < len(widths) - 1:
                layers.append(Upsample(width))
        layers += [group_norm(widths[-1], groups), nn.SiLU()]
        self.layers = nn.Sequential(*layers)
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.layers(z))


class KLAutoencoder(nn.Module):
    """KL-regularised autoencoder with downsampling factor `factor` (4 or 8) and `latent_channels`
    latent channels. `channels` is the first level's width, `multipliers` optional per-level widths
    (default 1, 2, 2, ... one per level), `blocks` residual blocks per level."""

    def __init__(self, in_channels: int = 3, latent_channels: int = 4, factor: int = 4, channels: int = 64,
                 multipliers: tuple[int, ...] | None = None, blocks: int = 1, groups: int = 32):
        super().__init__()
        if factor not in FACTORS:
            raise ValueError(f"autoencoder factor must be one of {FACTORS}, got {factor}")
        levels = int(math.log2(factor)) + 1  # f = 2^(levels - 1) downsamplings
        multipliers = tuple(multipliers or (1,) + (2,) * (levels - 1))
        if len(multipliers) != levels:
            raise ValueError(f"factor {factor} needs {levels} channel multipliers, got {len(multipliers)}")
        self.config = {"in_channels": in_channels, "latent_channels": latent_channels, "factor": factor,
                       "channels": channels, "multipliers": list(multipliers), "blocks": blocks, "groups": groups}
        self.encoder = Encoder(in_channels, latent_channels, channels, multipliers, blocks, groups)
        self.decoder = Decoder(in_channels, latent_channels, channels, multipliers, blocks, groups)

    @property
    def factor(self) -> int:
        return self.config["factor"]

    @property
    def latent_channels(self) -> int:
        return self.config["latent_channels"]

    def latent_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """Latent shape (latent_channels, H / f, W / f) of a (C, H, W) image."""
        return (self.latent_channels, shape[-2] // self.factor, shape[-1] // self.factor)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance, each (B, latent_channels, H / f, W / f)."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) from latents (B, latent_channels, H / f, W / f)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None):
        """Reconstruct x through z = mean + exp(logvar / 2) * noise (the mean when noise is None):
        returns (x_hat, mean, logvar)."""
        mean, logvar = self.encode(x)
        z = mean if noise is None else mean + torch.exp(0.5 * logvar) * noise
        return self.decode(z), mean, logvar

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's last weight, where the adaptive GAN weight compares gradient norms."""
        return self.decoder.conv_out.weight


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per sample (B,), summed over latent dimensions:
    0.5 * sum(mean^2 + exp(logvar) - 1 - logvar) (Kingma & Welling 2014, App. B)."""
    return 0.5 * (mean**2 + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017): strided 4x4 convs with LeakyReLU(0.2) and GroupNorm, one logit per
    overlapping patch: (B, C, H, W) -> (B, 1, h, w)."""

    def __init__(self, in_channels: int = 3, channels: int = 64, layers: int = 3, groups: int = 32):
        super().__init__()
        modules: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = channels
        for index in range(1, layers + 1):
            wider = channels * min(2**index, 8)
            stride = 2 if index < layers else 1
            modules += [nn.Conv2d(width, wider, 4, stride=stride, padding=1), group_norm(wider, groups),
                        nn.LeakyReLU(0.2)]
            width = wider
        modules.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
