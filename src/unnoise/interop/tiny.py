"""Tiny random-weight diffusers folders, built with diffusers' and transformers' own classes and written
with their `save_pretrained`: what the interop tests and benchmarks/interop.py load, without a download.

    write_pixel_folder(path, prediction="epsilon")   # UNet2DModel + DDIMScheduler (a DDIMPipeline folder)
    write_sd_folder(path)                            # UNet2DConditionModel, AutoencoderKL, CLIP text model
                                                     # and tokenizer (a StableDiffusionPipeline folder)
"""
from __future__ import annotations

import json
import string
from pathlib import Path

import torch

TOKEN_LENGTH = 12  # the tiny tokenizer's model_max_length (CLIP's is 77)
MERGES = ("r e", "re d</w>", "c a", "ca t</w>", "d o", "do g</w>")


def scheduler_options(prediction: str = "epsilon", zero_snr: bool = False, schedule: str = "linear") -> dict:
    """A DDIMScheduler's options: no clipping of x0 (our samplers never clip), alpha_bar_prev = 1 at the end,
    Stable Diffusion's steps_offset (leading timesteps 1 + k T/n)."""
    start, end = (0.00085, 0.012) if schedule == "scaled_linear" else (0.0001, 0.02)
    return dict(beta_schedule=schedule, prediction_type=prediction, rescale_betas_zero_snr=zero_snr,
                clip_sample=False, set_alpha_to_one=True, steps_offset=1, beta_start=start, beta_end=end)


def write_pixel_folder(path: Path, prediction: str = "epsilon", zero_snr: bool = False,
                       schedule: str = "linear", seed: int = 0) -> Path:
    """A DDIMPipeline folder with a tiny random UNet2DModel on 3 x 8 x 8 images."""
    from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                       block_out_channels=(8, 16), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=4)
    scheduler = DDIMScheduler(**scheduler_options(prediction, zero_snr, schedule))
    DDIMPipeline(unet=unet, scheduler=scheduler).save_pretrained(path)
    return Path(path)


def write_vocabulary(folder: Path) -> Path:
    """vocab.json and merges.txt of a tiny CLIP BPE: letters, letters ending a word, a few merged words."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    letters = list(string.ascii_lowercase)
    merged = [a + b for a, b in (m.split() for m in MERGES)]
    tokens = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters), *merged]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    return folder


def write_sd_folder(path: Path, prediction: str = "epsilon", seed: int = 0, size: int = 8) -> Path:
    """A StableDiffusionPipeline folder: tiny UNet2DConditionModel on 4 x size x size latents, an
    AutoencoderKL with factor 2, a 2-layer CLIP text model and a CLIP tokenizer of a 60-token vocabulary."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    path = Path(path)
    tokenizer = CLIPTokenizer.from_pretrained(write_vocabulary(path.parent / (path.name + "-vocab")),
                                              model_max_length=TOKEN_LENGTH)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=size, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), norm_num_groups=4, cross_attention_dim=16,
                                attention_head_dim=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, layers_per_block=1, sample_size=2 * size)
    text_config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                 num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=TOKEN_LENGTH,
                                 bos_token_id=0, eos_token_id=1, pad_token_id=1)
    encoder = CLIPTextModel(text_config)
    scheduler = DDIMScheduler(**scheduler_options(prediction, schedule="scaled_linear"))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(path)
    return path
