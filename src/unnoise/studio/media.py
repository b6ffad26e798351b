"""Pictures in and out of the studio: PNGs that carry their settings in a text chunk, and uploads decoded
safely (data: URLs limited in bytes, only PNG or JPEG, the pixel count checked from the header before any
decoding, Pillow's decompression-bomb warning raised as an error).
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import struct
import warnings
import zlib

import numpy as np
import torch

from ..errors import UnnoiseError

SETTINGS_KEY = "unnoise"  # the PNG tEXt keyword holding a picture's settings (JSON)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
UPLOAD_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG"}


def _pillow():
    from ..data.base import import_extra

    return import_extra("PIL.Image", "unnoise serve", "Pillow")


def png_bytes(image: torch.Tensor, settings: dict) -> bytes:
    """One image (C, H, W) in [-1, 1] as PNG bytes with `settings` as JSON in a tEXt chunk: the same image and
    settings always give the same bytes."""
    from PIL import PngImagePlugin

    from ..io.image import to_uint8

    pixels = to_uint8(image)  # (C, H, W) uint8
    channels_last = np.ascontiguousarray(pixels.transpose(1, 2, 0))  # (C, H, W) -> (H, W, C)
    picture = _pillow().fromarray(pixels[0] if pixels.shape[0] == 1 else channels_last)
    info = PngImagePlugin.PngInfo()
    info.add_text(SETTINGS_KEY, json.dumps(settings, sort_keys=True, separators=(",", ":")))
    out = io.BytesIO()
    picture.save(out, format="PNG", pnginfo=info, compress_level=6)
    return out.getvalue()


def picture_tensor(path) -> torch.Tensor:
    """An 8-bit picture file as (3, H, W) in [-1, 1] (exact: png_bytes writes the same pixels back), so a
    drawing made elsewhere can be stored again with the job's settings."""
    with _pillow().open(path) as picture:
        pixels = np.asarray(picture.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy()) / 127.5 - 1.0


def settings_from_png(data: bytes) -> dict:
    """The settings a studio PNG carries (read from its chunks, without decoding the pixels)."""
    if not data.startswith(PNG_SIGNATURE):
        raise UnnoiseError("not a PNG file (the settings travel in PNG text chunks)")
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if len(body) < length:
            break
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            text = _text_chunk(kind, body)
            if text is not None:
                return _settings_json(text)
        if kind == b"IEND":
            break
        position += 12 + length
    raise UnnoiseError("this PNG carries no unnoise settings (it was not written by the studio)")


def _text_chunk(kind: bytes, body: bytes) -> str | None:
    """The text of a PNG text chunk whose keyword is SETTINGS_KEY, else None."""
    keyword, _, rest = body.partition(b"\0")
    if keyword != SETTINGS_KEY.encode():
        return None
    try:
        if kind == b"tEXt":
            return rest.decode("latin-1")
        if kind == b"zTXt":
            return zlib.decompressobj().decompress(rest[1:], 1 << 20).decode("latin-1")
        compressed, rest = rest[0], rest[2:]
        rest = rest.split(b"\0", 2)[-1]  # skip language tag and translated keyword
        return (zlib.decompressobj().decompress(rest, 1 << 20) if compressed else rest).decode("utf-8")
    except (zlib.error, UnicodeDecodeError, IndexError):
        raise UnnoiseError("the PNG's unnoise settings chunk is damaged") from None


def _settings_json(text: str) -> dict:
    try:
        settings = json.loads(text)
    except json.JSONDecodeError:
        raise UnnoiseError("the PNG's unnoise settings are not valid JSON") from None
    if not isinstance(settings, dict):
        raise UnnoiseError("the PNG's unnoise settings are not a JSON object")
    return settings


def decode_data_url(url: str, max_bytes: int, what: str) -> tuple[bytes, str]:
    """(bytes, Pillow format) of a base64 data: URL of a PNG or JPEG of at most `max_bytes` bytes."""
    head, comma, payload = url.partition(",")
    media = head[len("data:"):].split(";")[0] if head.startswith("data:") else ""
    if not comma or media not in UPLOAD_FORMATS or not head.endswith(";base64"):
        raise UnnoiseError(f"{what}: expected a base64 data: URL of a PNG or JPEG image, got {head[:40]!r}")
    if len(payload) * 3 // 4 > max_bytes:
        raise UnnoiseError(f"{what}: upload of about {len(payload) * 3 // 4} bytes is over the limit of {max_bytes}")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise UnnoiseError(f"{what}: the data: URL is not valid base64") from None
    return data, UPLOAD_FORMATS[media]


def open_image(data: bytes, max_pixels: int, what: str, expected_format: str | None = None):
    """A decoded Pillow image from upload bytes: PNG or JPEG only, at most `max_pixels` pixels (checked
    from the header before decoding), and no decompression bomb."""
    Image = _pillow()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])
            width, height = image.size
            if width * height > max_pixels:
                raise UnnoiseError(f"{what}: {width}x{height} is {width * height} pixels, over the limit of "
                                   f"{max_pixels}")
            image.load()
    except UnnoiseError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UnnoiseError(f"{what}: refused as a decompression bomb") from None
    except Exception as exc:  # Pillow raises many types for damaged or foreign files
        raise UnnoiseError(f"{what}: not a readable PNG or JPEG image ({type(exc).__name__})") from None
    if expected_format is not None and image.format != expected_format:
        raise UnnoiseError(f"{what}: the data: URL says {expected_format} but the file is {image.format}")
    return image


def image_tensor(image, channels: int, size: tuple[int, int], what: str) -> torch.Tensor:
    """The picture as (1, channels, H, W) in [-1, 1], checked to be H x W."""
    if image.size != (size[1], size[0]):
        raise UnnoiseError(f"{what}: size {image.size[0]}x{image.size[1]}, expected {size[1]}x{size[0]}")
    pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32)
    x = torch.from_numpy(pixels / 127.5 - 1.0)
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)  # (H, W, C) -> (C, H, W)
    return x[None].contiguous()


def mask_tensor(image, size: tuple[int, int], what: str) -> torch.Tensor:
    """The known-pixel mask (1, 1, H, W) of a painted mask picture: dark (< 128) = keep, light = fill in."""
    if image.size != (size[1], size[0]):
        raise UnnoiseError(f"{what}: mask size {image.size[0]}x{image.size[1]}, expected {size[1]}x{size[0]} "
                           "(the image's size)")
    values = np.asarray(image.convert("L"), dtype=np.uint8)
    return torch.from_numpy(values < 128)[None, None].float()
