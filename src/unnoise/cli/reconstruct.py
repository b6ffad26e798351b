"""`unnoise reconstruct RUN --input IMG`: an image through the codec of an autoencoder run (or of a latent
run's autoencoder): encoded to its scaled latents and decoded back. Writes the reconstruction, prints its
PSNR and SSIM against the input, and with --latents saves the latents (safetensors)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UnnoiseError
from .common import add_device, check_output

SUMMARY = "encode an image with an autoencoder run's codec and decode it back (PSNR, SSIM, optional latents)"


def add_parser(sub) -> None:
    p = sub.add_parser("reconstruct", help=SUMMARY, description=SUMMARY)
    p.add_argument("run_dir", type=Path, help="an autoencoder run, or a latent run (its model.codec)")
    p.add_argument("--input", type=Path, required=True, help="the image (PNG/JPEG) at the run's size")
    p.add_argument("--out", type=Path, default=Path("reconstruction.png"), help="the reconstruction (.png)")
    p.add_argument("--latents", type=Path, help="also save the scaled latents (1, C, h, w) here (.safetensors)")
    add_device(p)
    p.set_defaults(handler=run)


def run(args) -> None:
    from safetensors.torch import save_file

    from ..eval.reconstruction import reconstruction_metrics
    from ..io import write_samples
    from ..pipeline import Pipeline
    from .restore import read_input

    check_output("--out", args.out)
    check_output("--latents", args.latents)
    if args.latents is not None and args.latents.suffix != ".safetensors":
        raise UnnoiseError(f"--latents {args.latents}: expected a .safetensors file")
    pipe = Pipeline.load(args.run_dir, device=args.device)
    if pipe.codec.kind == "identity":
        raise UnnoiseError(f"{args.run_dir}: has no codec (neither a trained autoencoder run nor a latent run)")
    channels, height, width = pipe.config.data_shape
    x = read_input(args.input, channels, (height, width), f"(the run's {height}x{width} images)")
    z = pipe.encode(x)
    x_hat = pipe.decode(z).clamp(-1, 1)
    write_samples(x_hat, pipe.config.spec, args.out)
    if args.latents is not None:
        save_file({"latents": z.contiguous()}, str(args.latents))
    metrics = reconstruction_metrics(x, x_hat)
    summary = {"input": str(args.input), "out": str(args.out), "latent_shape": list(z.shape[1:]),
               "psnr": metrics["psnr"], "ssim": metrics["ssim"], "latents": str(args.latents) if args.latents else None}
    print(json.dumps(summary))
