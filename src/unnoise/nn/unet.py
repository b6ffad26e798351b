"""U-Net denoiser network (Ronneberger et al. 2015; Ho et al. 2020; Dhariwal & Nichol 2021).

Dimension-generic: ``dims=2`` for images (B, C, H, W), ``dims=1`` for signals (B, C, L).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.utils.checkpoint
import torch.nn.functional as F
from torch import nn

from .blocks import AttentionBlock, CrossAttentionBlock, Downsample, EmbedSequential, ResBlock, Upsample, conv_nd, group_norm, zero_
from .config import freeze, require
from .embedding import EMBEDDINGS, ClassConditioned, Conditioning, named_condition


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of :class:`UNet`.

    Level i has ``base_channels * channel_mult[i]`` channels and spatial size
    ``image_size / 2**i``; self-attention is added at levels whose size is in
    ``attention_resolutions`` (and always in the middle). ``image_size`` is the
    length of the signal when ``dims=1``. ``scale_shift`` selects FiLM-style
    conditioning in the ResBlocks instead of adding the embedding.
    """

    in_channels: int
    out_channels: int | None = None
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = ()
    image_size: int = 32
    num_heads: int = 4
    dropout: float = 0.0
    embedding: str = "sinusoidal"
    num_classes: int = 0
    groups: int = 32
    dims: int = 2
    scale_shift: bool = False
    checkpointing: bool = False  # recompute each block in the backward pass (less memory, ~30% more compute)
    context_dim: int = 0  # > 0: text conditioning; cross-attention to (B, L, context_dim) tokens after every
    #                       self-attention block, and the pooled text vector added to the noise embedding
    pooled_dim: int = 0  # width of the pooled text vector; 0: context_dim
    cond_channels: int = 0  # > 0: image conditioning (SR3); cond["lowres"] (B, cond_channels, *S) is
    #                         concatenated to the input along channels
    patch_size: int = 1  # > 1: fold each patch (p samples, or p x p pixels) into channels before the stem and
    #                      back after the head, so every level runs at 1/p of the size (long waveforms)

    def __post_init__(self) -> None:
        mult, attn = freeze(self, "channel_mult"), freeze(self, "attention_resolutions")
        require(self.in_channels >= 1, f"in_channels must be >= 1, got {self.in_channels}")
        require(self.out_channels is None or self.out_channels >= 1,
                f"out_channels must be >= 1, got {self.out_channels}")
        require(self.base_channels >= 1, f"base_channels must be >= 1, got {self.base_channels}")
        require(len(mult) > 0 and min(mult) >= 1, f"channel_mult must be positive integers, got {mult}")
        require(self.num_res_blocks >= 1, f"num_res_blocks must be >= 1, got {self.num_res_blocks}")
        require(self.dims in (1, 2), f"dims must be 1 or 2, got {self.dims}")
        require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        require(self.num_classes >= 0, f"num_classes must be >= 0, got {self.num_classes}")
        require(self.context_dim >= 0, f"context_dim must be >= 0, got {self.context_dim}")
        require(self.pooled_dim >= 0, f"pooled_dim must be >= 0, got {self.pooled_dim}")
        require(self.cond_channels >= 0, f"cond_channels must be >= 0, got {self.cond_channels}")
        require(self.groups >= 1 and self.num_heads >= 1, "groups and num_heads must be >= 1")
        require(self.patch_size >= 1, f"patch_size must be >= 1, got {self.patch_size}")
        require(self.embedding in EMBEDDINGS,
                f"unknown embedding {self.embedding!r}; valid: {', '.join(sorted(EMBEDDINGS))}")
        factor = self.downsample_factor
        require(self.image_size >= factor and self.image_size % factor == 0,
                f"image_size {self.image_size} must be a multiple of 2**(len(channel_mult)-1) * patch_size = {factor}")
        missing = sorted(set(attn) - set(self.resolutions))
        require(not missing, f"attention_resolutions {missing} not among the U-Net's resolutions {self.resolutions}")
        for ch in {self.base_channels * m for m, r in zip(mult, self.resolutions) if r in attn} | {self.mid_channels}:
            require(ch % self.num_heads == 0, f"{ch} channels are not divisible by num_heads={self.num_heads}")

    @property
    def downsample_factor(self) -> int:
        """Total downsampling of the spatial size between the input and the last level."""
        return self.patch_size * 2 ** (len(self.channel_mult) - 1)

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Spatial size at each level, from ``image_size / patch_size`` down."""
        return tuple(self.image_size // self.patch_size // 2**i for i in range(len(self.channel_mult)))

    @property
    def mid_channels(self) -> int:
        """Channels of the deepest level (and the middle blocks)."""
        return self.base_channels * self.channel_mult[-1]

    @property
    def emb_dim(self) -> int:
        """Size of the conditioning vector (4 * base_channels, as in DDPM)."""
        return 4 * self.base_channels


def fold_patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, *S) -> (B, C * p^dims, *S / p): each p-patch (or p x p) becomes channels c * p^dims + offset."""
    if p == 1:
        return x
    if x.ndim == 4:
        return F.pixel_unshuffle(x, p)
    b, c, length = x.shape
    return x.reshape(b, c, length // p, p).transpose(2, 3).reshape(b, c * p, length // p)


def unfold_patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """The inverse of :func:`fold_patches`."""
    if p == 1:
        return x
    if x.ndim == 4:
        return F.pixel_shuffle(x, p)
    b, cp, length = x.shape
    return x.reshape(b, cp // p, p, length).transpose(2, 3).reshape(b, cp // p, length * p)


class UNet(ClassConditioned, nn.Module):
    """U-Net: ``forward(x, t, cond=None)`` with x (B, C, *S), t (B,), cond (B,) or None.

    Stem conv; down path of ResBlocks (+attention) with strided-conv downsampling;
    middle ResBlock-Attention-ResBlock; up path concatenating skips, with
    nearest+conv upsampling; GroupNorm-SiLU-conv head initialised to zero.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        self.cond_embed = Conditioning(c.embedding, c.base_channels, c.emb_dim, c.num_classes,
                                       c.pooled_dim or c.context_dim)
        ch = c.base_channels * c.channel_mult[0]
        folded = c.patch_size ** c.dims  # channels per input channel after folding the patches
        self.stem = conv_nd(c.dims, (c.in_channels + c.cond_channels) * folded, ch, 3, padding=1)
        skip_channels = [ch]
        self.down = self._build_down(skip_channels)
        self.middle = EmbedSequential(self._res(c.mid_channels, c.mid_channels),
                                      *self._attention(c.mid_channels),
                                      self._res(c.mid_channels, c.mid_channels))
        self.skip_channels = tuple(skip_channels)  # channels of each skip, stem first (ControlNet reads them)
        self.up = self._build_up(skip_channels)
        out_channels = c.in_channels if c.out_channels is None else c.out_channels
        self.head = nn.Sequential(group_norm(ch, c.groups), nn.SiLU(),
                                  zero_(conv_nd(c.dims, ch, out_channels * folded, 3, padding=1)))

    def _res(self, in_ch: int, out_ch: int) -> ResBlock:
        c = self.config
        return ResBlock(in_ch, out_ch, c.emb_dim, dims=c.dims, groups=c.groups,
                        dropout=c.dropout, scale_shift=c.scale_shift)

    def _attention(self, ch: int) -> list[nn.Module]:
        """Self-attention, followed by cross-attention to the text tokens in text-conditioned U-Nets."""
        c = self.config
        layers: list[nn.Module] = [AttentionBlock(ch, c.num_heads, c.groups)]
        if c.context_dim:
            layers.append(CrossAttentionBlock(ch, c.context_dim, c.num_heads, c.groups))
        return layers

    def _build_down(self, skip_channels: list[int]) -> nn.ModuleList:
        """Encoder stages; records each stage's output channels in ``skip_channels``."""
        c, blocks = self.config, nn.ModuleList()
        ch = skip_channels[-1]
        for level, (mult, res) in enumerate(zip(c.channel_mult, c.resolutions)):
            for _ in range(c.num_res_blocks):
                layers = [self._res(ch, c.base_channels * mult)]
                ch = c.base_channels * mult
                if res in c.attention_resolutions:
                    layers.extend(self._attention(ch))
                blocks.append(EmbedSequential(*layers))
                skip_channels.append(ch)
            if level < len(c.channel_mult) - 1:
                blocks.append(EmbedSequential(Downsample(ch, c.dims)))
                skip_channels.append(ch)
        return blocks

    def _build_up(self, skip_channels: list[int]) -> nn.ModuleList:
        """Decoder stages; each consumes one skip (popped from ``skip_channels``)."""
        c, blocks = self.config, nn.ModuleList()
        ch = c.mid_channels
        for level in reversed(range(len(c.channel_mult))):
            out_ch, res = c.base_channels * c.channel_mult[level], c.resolutions[level]
            for i in range(c.num_res_blocks + 1):
                layers = [self._res(ch + skip_channels.pop(), out_ch)]
                ch = out_ch
                if res in c.attention_resolutions:
                    layers.extend(self._attention(ch))
                if level > 0 and i == c.num_res_blocks:
                    layers.append(Upsample(ch, c.dims))
                blocks.append(EmbedSequential(*layers))
        return blocks

    def _check_input(self, x: torch.Tensor) -> None:
        c = self.config
        if x.ndim != c.dims + 2 or x.shape[1] != c.in_channels:
            raise ValueError(f"UNet expects (B, {c.in_channels}, {', '.join(['size'] * c.dims)}) input, "
                             f"got shape {tuple(x.shape)}")
        if any(s % c.downsample_factor for s in x.shape[2:]):
            raise ValueError(f"UNet spatial sizes must be multiples of {c.downsample_factor}, "
                             f"got {tuple(x.shape[2:])}")

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None, residuals=None) -> torch.Tensor:
        """Predict from ``x`` (B, C, *S) at noise input ``t`` (B,) with the named condition parts ``cond``
        (any combination the network was built for): "label" (B,), "text" = {"tokens": (B, L, D),
        "mask": (B, L), "pooled": (B, D)}, "lowres" (B, cond_channels, *S) (SR3: the upsampled
        low-resolution input). Single-part forms (labels, a text dict, {"image": ...}) are accepted.
        ``residuals`` (ControlNet, nn/controlnet.py): one tensor per skip, in order, then one for the
        middle block's output, each added to it before the decoder reads it."""
        skips, h, emb, context = self.encode(x, t, cond)
        if residuals is not None:
            *skip_residuals, middle_residual = residuals
            skips = [s + r for s, r in zip(skips, skip_residuals, strict=True)]
            h = h + middle_residual
        for block in self.up:
            h = self._run(block, torch.cat([h, skips.pop()], dim=1), emb, context)  # concat skip along channels
        return unfold_patches(self.head(h), self.config.patch_size)

    def encode(self, x: torch.Tensor, t: torch.Tensor, cond=None, stem_residual=None):
        """The encoder and middle block: (skips, middle output, embedding, text context); the skips are
        the stem's output then every down block's. ``stem_residual`` (B, C0, *S/p) is added to the stem's
        output (a ControlNet's encoded control image)."""
        self._check_input(x)
        cond = named_condition(cond)
        if self.config.cond_channels:
            x = torch.cat([x, self._condition_image(cond, x)], dim=1)  # (B, C + C_cond, *S)
        elif "lowres" in cond:
            raise ValueError("an image condition was given but this U-Net has no image input (cond_channels=0)")
        emb = self.cond_embed(t, cond, x.shape[0])  # (B, 4 * base_channels)
        text = cond.get("text")
        context = (text["tokens"], text["mask"].bool()) if text is not None and self.config.context_dim else None
        h = self.stem(fold_patches(x, self.config.patch_size))
        if stem_residual is not None:
            h = h + stem_residual
        skips = [h]
        for block in self.down:
            h = self._run(block, h, emb, context)
            skips.append(h)
        return skips, self._run(self.middle, h, emb, context), emb, context

    def _condition_image(self, cond, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        image = cond.get("lowres")
        expected = (x.shape[0], c.cond_channels, *x.shape[2:])
        if image is None or tuple(image.shape) != expected:
            got = "no image" if image is None else f"shape {tuple(image.shape)}"
            raise ValueError(f"this U-Net is image-conditioned: cond['lowres'] must be {expected}, got {got}")
        return image.to(x.dtype)

    def _run(self, block: nn.Module, h: torch.Tensor, emb: torch.Tensor, context) -> torch.Tensor:
        if self.config.checkpointing and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(block, h, emb, context, use_reentrant=False)
        return block(h, emb, context)
