"""The kinds of run the project has, registered with the studio: image runs (generate, and restore: inpaint
with a painted mask, super-resolve, deblur, colorize), super-resolution runs (restore only), audio runs (a
player and a spectrogram per clip), 2-D point runs (a scatter) and text runs (ControlNet, molecule, autoencoder and maze runs:
control_kind.py, molecule_kind.py, autoencoder_kind.py, planning_kind.py). Every image-like output is
sampled alone from its own seed (`seed + i`), so it does not depend on N, on batching or on queue order.
"""
from __future__ import annotations

import dataclasses

from ..errors import UnnoiseError
from .fields import Field
from .kinds import Form, Kind, register_kind
from .media import image_tensor, mask_tensor

MAX_SEED = 2**31 - 1
TASKS = ("inpaint", "sr", "deblur", "colorize")


def _seed_and_n(n_default: int, n_max: int) -> list[Field]:
    return [Field("seed", "int", "Seed", 0, 0, MAX_SEED, help="output i uses seed + i"),
            Field("n", "int", "Number of outputs", n_default, 1, n_max)]


def _condition_fields(config) -> list[Field]:
    from ..conditions import conditions_for

    conditions, fields = conditions_for(config), []
    if "label" in conditions:
        names = list(config.class_names) or [str(k) for k in range(config.num_classes)]
        fields.append(Field("label", "choice", "Class", None, choices=names, optional=True,
                            help="empty: unconditional"))
    if "caption" in conditions:
        fields.append(Field("prompt", "text", "Prompt", "", help="empty: unconditional"))
    if conditions.guidable:
        fields += [Field("guidance", "float", "Guidance scale", config.sample.guidance, 0, 100),
                   Field("guidance_low", "float", "Guidance from sigma", None, 0, 1e4, optional=True),
                   Field("guidance_high", "float", "Guidance up to sigma", None, 0, 1e4, optional=True),
                   Field("guidance_rescale", "float", "Guidance rescale", config.sample.guidance_rescale, 0, 1)]
    return fields


def sampler_fields(config) -> list[Field]:
    from ..sample import SAMPLERS

    return [Field("sampler", "choice", "Sampler", None, choices=list(SAMPLERS), optional=True,
                  help=f"empty: the run's ({config.sample.sampler})"),
            Field("nfe", "int", "Model calls (NFE)", None, 1, 2000, optional=True, help="empty: the run's budget")]


def generate_fields(config) -> list[Field]:
    n_max = 64 if config.spec.modality == "image" else 16
    return [*_condition_fields(config), *sampler_fields(config), *_seed_and_n(4, n_max)]


def sample_request(params: dict, seed: int, n: int = 1, callback=None):
    """The pipeline request of generation params for n outputs from `seed`."""
    from ..pipeline import SampleRequest

    low, high = params.get("guidance_low"), params.get("guidance_high")
    if (low is None) != (high is None):
        raise UnnoiseError("fields 'guidance_low' and 'guidance_high': give both or neither")
    if low is not None and not low < high:
        raise UnnoiseError(f"fields 'guidance_low' {low:g} must be below 'guidance_high' {high:g}")
    label, prompt = params.get("label"), params.get("prompt") or None
    named = label is not None or prompt is not None
    return SampleRequest(n=n, seed=seed, sampler=params.get("sampler"), nfe=params.get("nfe"), label=label,
                         prompt=prompt, guidance=params.get("guidance") if named else None,
                         guidance_interval=None if low is None or not named else (low, high),
                         guidance_rescale=params.get("guidance_rescale") if named else None, callback=callback,
                         batch_size=n)


def check_generate(config, params, images) -> None:
    """Submission-time checks of the settings that depend on each other (the guidance interval)."""
    sample_request(params, params["seed"])


def _planned_steps(ctx, request) -> int:
    return ctx.pipe.plan(request, ctx.pipe.guided(request)).steps


def sample_each_seed(ctx, write, request=None) -> None:
    """N samples, sample i drawn alone from seed + i (the same bytes whatever N or the queue order);
    `write(i, seed, x)` stores each one. `request`: the form's own (default: from the generate fields)."""
    params = ctx.params
    request = request or sample_request(params, params["seed"])
    ctx.start(params["n"] * _planned_steps(ctx, request))
    for i in range(params["n"]):
        seed = params["seed"] + i
        write(i, seed, ctx.pipe.sample(dataclasses.replace(request, seed=seed, callback=ctx.callback)))


def generate_images(ctx) -> None:
    """N images; each PNG carries its own settings (seed + i, n 1)."""
    sample_each_seed(ctx, lambda i, seed, x: ctx.write_png(f"{i:03d}.png", x[0], seed=seed))


def generate_audio(ctx) -> None:
    """N clips: a WAV and its spectrogram each."""
    from ..io import write_samples

    def write(i, seed, x):
        wav, picture = ctx.path(f"{i:03d}.wav"), ctx.path(f"{i:03d}.png")
        write_samples(x, ctx.config.spec, wav)
        write_samples(x, ctx.config.spec, picture)
        ctx.add_output(wav.name, "audio", seed, spectrogram=picture.name)

    sample_each_seed(ctx, write)


def generate_points(ctx) -> None:
    """N points (point i from seed + i) drawn as one scatter picture."""
    from ..io import write_samples

    params = ctx.params
    request = sample_request(params, params["seed"], n=params["n"])
    ctx.start(_planned_steps(ctx, request))
    x = ctx.pipe.sample(dataclasses.replace(request, callback=ctx.callback, batch_size=params["n"]))
    picture = ctx.path("scatter.png")
    write_samples(x, ctx.config.spec, picture)
    ctx.add_output(picture.name, "image", params["seed"])


def points_fields(config) -> list[Field]:
    return [*_condition_fields(config), *sampler_fields(config),
            Field("seed", "int", "Seed", 0, 0, MAX_SEED), Field("n", "int", "Number of points", 1000, 1, 20000)]


def text_fields(config) -> list[Field]:
    from ..run.text import TEXT_SAMPLERS

    return [Field("prompt", "text", "Start of the text", ""),
            Field("infill", "text", "Text to fill in ([MASK:k] spans)", "", help="diffusion text runs"),
            Field("length", "int", "Tokens per sample", None, 1, 4096, optional=True),
            Field("sampler", "choice", "Sampler", None, choices=list(TEXT_SAMPLERS), optional=True),
            Field("nfe", "int", "Model calls (NFE)", None, 1, 4096, optional=True), *_seed_and_n(4, 32)]


def generate_text(ctx) -> None:
    """N texts, text i from seed + i, written as one .txt each."""
    from ..pipeline import SampleRequest

    params = ctx.params
    ctx.start(params["n"])
    for i in range(params["n"]):
        seed = params["seed"] + i
        request = SampleRequest(n=1, seed=seed, sampler=params["sampler"], nfe=params["nfe"],
                                prompt=params["prompt"] or None, infill=params["infill"] or None,
                                length=params["length"])
        text = ctx.pipe.text.decode(ctx.pipe.sample(request))[0]
        ctx.check_cancelled()
        path = ctx.path(f"{i:03d}.txt")
        path.write_text(text, encoding="utf-8")
        ctx.add_output(path.name, "text", seed, text=text)
        ctx.advance()


def restore_fields(config) -> list[Field]:
    from ..restore.sampling import METHODS

    sr_scale = _sr_scale(config)
    tasks = ["sr"] if sr_scale else [t for t in TASKS if t != "colorize" or config.data_shape[0] == 3]
    return [Field("task", "choice", "Task", tasks[0], choices=tasks),
            Field("image", "image", "Image"),
            Field("mask", "mask", "Mask (white = fill in)", show_if={"task": ["inpaint"]}),
            Field("scale", "choice", "Scale", str(sr_scale or 4), choices=[str(sr_scale)] if sr_scale else ["2", "4"],
                  show_if={"task": ["sr"]}),
            Field("blur_sigma", "float", "Blur sigma (pixels)", 1.0, 0.05, 20, show_if={"task": ["deblur"]}),
            Field("noise_std", "float", "Measurement noise std", 0.0, 0, 1),
            Field("method", "choice", "Method", None, choices=list(METHODS), optional=True,
                  help="empty: sr3 for a super-resolution run, dps for noisy, else ddnm"),
            Field("steps", "int", "Steps", None, 1, 2000, optional=True, help="empty: 100 (sr3: the run's)"),
            *_seed_and_n(4, 64)]


def _sr_scale(config) -> int:
    return config.model.lowres_factor if "lowres" in config.model.conditions else 0


def _input_size(config, params) -> tuple[int, int]:
    _, height, width = config.data_shape
    if params["task"] != "sr":
        return height, width
    scale = int(params["scale"])
    if height % scale or width % scale:
        raise UnnoiseError(f"field 'scale': {scale} does not divide the run's {height}x{width} images")
    return height // scale, width // scale


def check_restore(config, params, images) -> None:
    """Submission-time checks: an image run, the image at the task's input size, the mask at the run's, and a
    method that serves the task (restore.sampling.check_method)."""
    from ..restore.sampling import check_method

    if config.spec.modality != "image":
        raise UnnoiseError(f"restoration needs an image run; this run models {config.spec.modality} data")
    operator, _ = measurement(config, params, images)
    if params["method"] is not None:
        try:
            check_method(params["method"], operator, _sr_scale(config))
        except UnnoiseError as exc:
            raise UnnoiseError(f"field 'method': {exc}") from None


def measurement(config, params, images):
    """(operator or None, measurement y (1, C, H, W), or the low-resolution image for an SR run) of a
    restoration request's checked params and decoded uploads."""
    from ..restore import AddNoise, Downsample, GaussianBlur, Grayscale, Mask

    channels, height, width = config.data_shape
    image = image_tensor(images["image"], channels, _input_size(config, params), "field 'image'")
    task = params["task"]
    if task == "sr":
        operator = None if _sr_scale(config) else Downsample(int(params["scale"]))
    elif task == "colorize":
        operator = Grayscale()
        image = operator(image)
    elif task == "deblur":
        operator = GaussianBlur(params["blur_sigma"])
    else:
        operator = Mask(mask_tensor(images["mask"], (height, width), "field 'mask'"))
        image = operator(image)
    if params["noise_std"] and operator is not None:
        operator = AddNoise(operator, params["noise_std"])
    return operator, image


def restore_images(ctx) -> None:
    """N restorations, restoration i alone from seed + i; each PNG carries its settings."""
    from ..pipeline import RestoreRequest

    params = ctx.params
    operator, y = measurement(ctx.config, params, ctx.images)
    method = params["method"]
    steps = params["steps"] or (ctx.config.sample.steps if (method or ("sr3" if _sr_scale(ctx.config) else ""))
                                == "sr3" else 100)
    ctx.start(params["n"] * steps)
    for i in range(params["n"]):
        seed = params["seed"] + i
        result = ctx.pipe.restore(RestoreRequest(y=y, operator=operator, method=method, n=1, seed=seed,
                                                 steps=steps, callback=ctx.callback))
        ctx.write_png(f"{i:03d}.png", result.samples[0], seed=seed)


def _modality(name: str):
    return lambda config: config.spec.modality == name


GENERATE_IMAGES = Form("generate", "Generate", generate_fields, generate_images, check=check_generate)
RESTORE = Form("restore", "Restore", restore_fields, restore_images, check=check_restore)

register_kind(Kind("text", _modality("tokens"), (Form("generate", "Generate", text_fields, generate_text, "text"),),
                   "text run: prompt, infill"))
register_kind(Kind("points", _modality("points"), (Form("generate", "Generate", points_fields, generate_points,
                                                            check=check_generate),),
                   "2-D points: a scatter"))
register_kind(Kind("audio", _modality("audio"), (Form("generate", "Generate", generate_fields, generate_audio,
                                                      "audio", check=check_generate),),
                   "audio: player and spectrogram"))
register_kind(Kind("image", _modality("image"), (GENERATE_IMAGES, RESTORE), "images: generate and restore"))
register_kind(Kind("super-resolution", lambda config: config.spec.modality == "image" and bool(_sr_scale(config)),
                   (RESTORE,), "super-resolution: restore (upscale) only"))
