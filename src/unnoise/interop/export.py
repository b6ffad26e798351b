"""Export a trained run to a diffusers folder: `unnoise export RUN --format diffusers --out DIR`.

What can be exported: a pixel run whose network is our 2-D U-Net configured like diffusers' UNet2DModel,
on the discrete DDPM process with eps / v / x0 prediction. Our blocks compute what UNet2DModel's do (a
ResnetBlock2D adds the projected embedding before its second GroupNorm, self-attention with one GroupNorm
and a residual, stride-2 convolutions padded by 1, nearest-neighbour upsampling then a convolution,
sinusoids [cos, sin] with frequencies 10000^(-i/half)), so the weights move over name by name (the fused
q/k/v projection is split in three). The folder is written by diffusers' own DDIMPipeline.save_pretrained
with a DDIMScheduler whose betas are the run's, so diffusers and `unnoise sample DIR` both load it.

What cannot, and why (the error names the first reason):
  - other networks (MLP, DiT/transformer, WaveNet, EGNN, 1-D U-Nets): no diffusers model computes them;
  - U-Net options UNet2DModel has no counterpart for: FiLM scale-shift (UNet2DModel's mid-block attention
    then drops its GroupNorm), text cross-attention and pooled text (UNet2DConditionModel lays out its
    transformer blocks differently), class labels (our null-class row), low-resolution conditioning
    channels, patch folding, Fourier embeddings, GroupNorm groups that do not divide every width
    (we use gcd(groups, width) per layer), attention at widths with different head sizes (UNet2DModel
    takes one head size), a first channel multiplier other than 1 (its embedding width is tied to it);
  - processes other than the discrete DDPM chain (continuous VP, VE, EDM, flow): diffusers' DDPM-family
    schedulers only read betas, and the EDM / VE preconditionings are not prediction types of theirs;
  - our autoencoder (codec): its encoder downsamples with symmetric padding where diffusers' AutoencoderKL
    pads right and bottom only, and its middle has one residual block where AutoencoderKL's has two around
    an attention layer, so AutoencoderKL cannot compute it.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UnnoiseError

PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}
DDPM_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}


def _refuse(run_dir: Path, reason: str):
    raise UnnoiseError(f"{run_dir}: cannot export to diffusers: {reason} (see README, 'Use your own diffusers model')")


def check_exportable(run_dir: Path, config, net) -> None:
    """One-line errors naming the first thing UNet2DModel / DDIMScheduler cannot express."""
    m = config.model
    if m.network != "unet" or not hasattr(net, "config"):
        _refuse(run_dir, f"network {m.network!r} has no diffusers counterpart (only the 2-D unet exports)")
    if m.codec and m.codec not in ("identity", {"kind": "identity"}):
        _refuse(run_dir, "latent runs do not export (our autoencoder is not an AutoencoderKL)")
    if m.process != "ddpm":
        _refuse(run_dir, f"process {m.process!r}: diffusers' DDPM schedulers need the discrete ddpm chain")
    if m.prediction not in PREDICTION_TYPES:
        _refuse(run_dir, f"prediction {m.prediction!r}; exportable: {', '.join(PREDICTION_TYPES)}")
    if m.learned_variance:
        _refuse(run_dir, "learned variances (DDIMScheduler reads one output per channel)")
    schedule = dict(m.process_options).get("schedule", "linear")
    if schedule not in DDPM_SCHEDULES:
        _refuse(run_dir, f"beta schedule {schedule!r}; exportable: {', '.join(DDPM_SCHEDULES)}")
    c = net.config
    options = {"dims": (c.dims, 2), "scale_shift": (c.scale_shift, False), "context_dim": (c.context_dim, 0),
               "num_classes": (c.num_classes, 0), "cond_channels": (c.cond_channels, 0),
               "patch_size": (c.patch_size, 1), "embedding": (c.embedding, "sinusoidal"),
               "channel_mult[0]": (c.channel_mult[0], 1)}
    for name, (value, wanted) in options.items():
        if value != wanted:
            _refuse(run_dir, f"U-Net option {name}={value!r} (UNet2DModel needs {wanted!r})")
    widths = [c.base_channels * mult for mult in c.channel_mult]
    if any(width % c.groups for width in widths):
        _refuse(run_dir, f"groups={c.groups} does not divide every width {widths}")
    attended = {w for w, r in zip(widths, c.resolutions) if r in c.attention_resolutions} | {c.mid_channels}
    if len(attended) > 1:
        _refuse(run_dir, f"attention at widths {sorted(attended)} with num_heads={c.num_heads} has several head "
                         "sizes; UNet2DModel takes one")


def unet2d_config(net) -> dict:
    """UNet2DModel keyword arguments computing what our U-Net computes."""
    c = net.config
    widths = [c.base_channels * mult for mult in c.channel_mult]
    attention = [r in c.attention_resolutions for r in c.resolutions]
    out = c.in_channels if c.out_channels is None else c.out_channels
    return dict(sample_size=c.image_size, in_channels=c.in_channels, out_channels=out,
                layers_per_block=c.num_res_blocks, block_out_channels=tuple(widths),
                down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
                up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
                norm_num_groups=c.groups, attention_head_dim=c.mid_channels // c.num_heads, dropout=c.dropout,
                flip_sin_to_cos=True, freq_shift=0, norm_eps=1e-5, add_attention=True)


def _resnet(ours: str, theirs: str) -> dict:
    return {f"{ours}.in_layers.0": f"{theirs}.norm1", f"{ours}.in_layers.2": f"{theirs}.conv1",
            f"{ours}.emb_proj.1": f"{theirs}.time_emb_proj", f"{ours}.norm2": f"{theirs}.norm2",
            f"{ours}.out_layers.2": f"{theirs}.conv2", f"{ours}.skip": f"{theirs}.conv_shortcut"}


def _attention(ours: str, theirs: str) -> dict:
    return {f"{ours}.norm": f"{theirs}.group_norm", f"{ours}.proj": f"{theirs}.to_out.0",
            f"{ours}.qkv": (f"{theirs}.to_q", f"{theirs}.to_k", f"{theirs}.to_v")}


def module_names(net) -> dict:
    """Our module name -> diffusers' module name (or three names for the fused q/k/v projection)."""
    c = net.config
    names = {"cond_embed.noise.mlp.0": "time_embedding.linear_1", "cond_embed.noise.mlp.2": "time_embedding.linear_2",
             "stem": "conv_in", "head.0": "conv_norm_out", "head.2": "conv_out"}
    names |= _resnet("middle.0", "mid_block.resnets.0") | _attention("middle.1", "mid_block.attentions.0")
    names |= _resnet("middle.2", "mid_block.resnets.1")
    levels, index = len(c.channel_mult), 0
    for level in range(levels):
        for j in range(c.num_res_blocks):
            names |= _resnet(f"down.{index}.0", f"down_blocks.{level}.resnets.{j}")
            names |= _attention(f"down.{index}.1", f"down_blocks.{level}.attentions.{j}")
            index += 1
        if level < levels - 1:
            names[f"down.{index}.0.conv"] = f"down_blocks.{level}.downsamplers.0.conv"
            index += 1
    index = 0
    for block, level in enumerate(reversed(range(levels))):
        for i in range(c.num_res_blocks + 1):
            names |= _resnet(f"up.{index}.0", f"up_blocks.{block}.resnets.{i}")
            names |= _attention(f"up.{index}.1", f"up_blocks.{block}.attentions.{i}")
            last = f"up.{index}.{len(net.up[index]) - 1}.conv"
            if level > 0 and i == c.num_res_blocks:
                names[last] = f"up_blocks.{block}.upsamplers.0.conv"
            index += 1
    return names


def converted_state(net) -> dict:
    """Our U-Net's parameters under diffusers' UNet2DModel names."""
    names, state, out = module_names(net), net.state_dict(), {}
    for key, tensor in state.items():
        module, _, leaf = key.rpartition(".")
        target = names.get(module)
        if target is None:
            raise UnnoiseError(f"export: no UNet2DModel counterpart for parameter {key!r}")
        if isinstance(target, tuple):  # fused (3C, C) q/k/v rows -> three (C, C)
            for name, part in zip(target, tensor.chunk(3, dim=0)):
                out[f"{name}.{leaf}"] = part.contiguous()
        else:
            out[f"{target}.{leaf}"] = tensor
    return out


def scheduler_config(config, process) -> dict:
    """DDIMScheduler keyword arguments describing the run's chain (diffusers recomputes its betas in float32)."""
    c = process.cfg
    return dict(num_train_timesteps=c.steps, beta_schedule=DDPM_SCHEDULES[c.schedule], beta_start=c.beta_start,
                beta_end=c.beta_end, rescale_betas_zero_snr=c.zero_terminal_snr,
                prediction_type=PREDICTION_TYPES[config.model.prediction], clip_sample=False,
                set_alpha_to_one=True, timestep_spacing="trailing")


def export_diffusers(run_dir, out: Path, weights: str = "ema") -> Path:
    """Write the run as a DDIMPipeline folder at `out` (which must not exist yet); returns `out`."""
    from ..run.load import load_run

    run_dir, out = Path(run_dir), Path(out)
    if out.exists():
        raise UnnoiseError(f"--out {out} already exists; choose a new directory")
    denoiser, config = load_run(run_dir, weights)
    net = denoiser.net
    check_exportable(run_dir, config, net)
    try:
        from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel
    except ImportError:
        raise UnnoiseError("export --format diffusers needs the diffusers extra: "
                           "pip install 'unnoise[diffusers]'") from None
    unet = UNet2DModel(**unet2d_config(net))
    missing, unexpected = unet.load_state_dict(converted_state(net), strict=False)
    if missing or unexpected:
        raise UnnoiseError(f"export: weights do not map onto UNet2DModel (missing {missing[:2]}, "
                           f"unexpected {unexpected[:2]})")
    scheduler = DDIMScheduler(**scheduler_config(config, denoiser.process))
    DDIMPipeline(unet=unet, scheduler=scheduler).save_pretrained(out)
    (out / "unnoise_export.json").write_text(json.dumps({"run": str(run_dir.resolve()), "weights": weights}))
    return out
