"""Autoencoder runs in the studio: an uploaded image encoded with the run's codec and decoded back (such a
run does not sample). The output PNG carries the job's settings; its record holds the PSNR in dB."""
from __future__ import annotations

from .fields import Field
from .kinds import Form, Kind, register_kind
from .media import image_tensor


def reconstruct_fields(config) -> list[Field]:
    return [Field("image", "image", "Image", help="at the run's size")]


def _input(config, images):
    channels, height, width = config.data_shape
    return image_tensor(images["image"], channels, (height, width), "field 'image'")


def check_reconstruct(config, params, images) -> None:
    """Submission-time check: the upload at the run's size."""
    _input(config, images)


def reconstruct(ctx) -> None:
    from ..eval.reconstruction import reconstruction_metrics

    ctx.start(1)
    x = _input(ctx.config, ctx.images)
    x_hat = ctx.pipe.decode(ctx.pipe.encode(x)).clamp(-1, 1)
    psnr = float(reconstruction_metrics(x, x_hat)["psnr"])
    ctx.write_png("000.png", x_hat[0], seed=0, psnr_db=round(psnr, 2))
    ctx.advance()


register_kind(Kind("autoencoder", lambda config: config.model.network == "autoencoder",
                   (Form("reconstruct", "Reconstruct", reconstruct_fields, reconstruct, check=check_reconstruct),),
                   "autoencoder: encode and decode an image"))
