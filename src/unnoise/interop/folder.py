"""Sample local diffusers model folders with unnoise's samplers, guidance and restoration (extra `diffusers`).

    model = load_diffusers("path/to/stable-diffusion", device)   # DiffusersModel: denoiser, codec, conditions
    pipe = Pipeline.load("path/to/ddpm-folder", "auto")          # a Pipeline: pipe.sample(SampleRequest(...))

A folder is what diffusers' `save_pretrained` writes: `unet/` (UNet2DModel, or UNet2DConditionModel with
`vae/`, `text_encoder/`, `tokenizer/` for Stable Diffusion) and `scheduler/scheduler_config.json`. The U-Net
becomes a network under `param.Denoiser` on the scheduler's process (interop/schedule.py): the Denoiser
feeds it x / sqrt(1 + sigma^2) and the fractional timestep t_of_sigma(sigma), and reads its output as
eps, v or x0 (prediction_type). The AutoencoderKL is the codec, z = (mean - shift_factor) * scaling_factor;
the CLIP text encoder's last hidden states are the caption condition its cross-attention reads, and the
empty prompt is the null condition of classifier-free guidance. Only local files are read (safetensors
weights); nothing is downloaded.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import UnnoiseError
from ..param import Denoiser
from .schedule import learned_variance_of, prediction_of, process_from_scheduler

UNET_CLASSES = ("UNet2DModel", "UNet2DConditionModel")
WEIGHTS = "diffusion_pytorch_model.safetensors"


@dataclass
class DiffusersModel:
    """What a diffusers folder gives a Pipeline: the denoiser, the codec (identity for pixel models), the
    conditions (a CLIP caption for Stable Diffusion), the data shape and the diffusion-space shape."""

    path: Path
    denoiser: Denoiser
    codec: object
    conditions: object
    data_shape: tuple
    latent_shape: tuple
    scheduler: dict


# ---------------------------------------------------------------------------- folder checks


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnnoiseError(f"{path.parent.parent}: not a diffusers model folder (missing "
                           f"{path.parent.name}/{path.name})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnnoiseError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UnnoiseError(f"{path}: expected a JSON object")
    return value


def _require(folder: Path, part: str, *names: str) -> Path:
    """folder/part, which must hold every file in `names` (a one-line error naming the first missing)."""
    for name in names:
        if not (folder / part / name).is_file():
            extra = " (only safetensors weights are read)" if name.endswith(".safetensors") else ""
            raise UnnoiseError(f"{folder}: not a loadable diffusers model folder (missing {part}/{name}{extra})")
    return folder / part


def _loaded(what: Path, load):
    """load(), with a damaged or unreadable file as a one-line error naming `what`."""
    try:
        return load()
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UnnoiseError(f"{what}: cannot be loaded ({first})") from None


def check_folder(folder: Path) -> str:
    """The folder's U-Net class, after checking every file a load will read (one-line errors)."""
    _require(folder, "scheduler", "scheduler_config.json")
    unet_dir = _require(folder, "unet", "config.json", WEIGHTS)
    name = _read_json(unet_dir / "config.json").get("_class_name")
    if name not in UNET_CLASSES:
        raise UnnoiseError(f"{unet_dir / 'config.json'}: _class_name {name!r} is not supported; valid: "
                           f"{', '.join(UNET_CLASSES)}")
    if name == "UNet2DConditionModel":
        _require(folder, "vae", "config.json", WEIGHTS)
        _require(folder, "text_encoder", "config.json", "model.safetensors")
        if not (folder / "tokenizer").is_dir():
            raise UnnoiseError(f"{folder}: not a loadable diffusers model folder (missing tokenizer/)")
    return name


@contextmanager
def _quiet():
    """diffusers' and transformers' warnings and progress bars held back while a folder loads."""
    from diffusers.utils import logging as diffusers_logging

    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:  # a pixel folder needs no transformers
        transformers_logging = None
    loggers = [log for log in (diffusers_logging, transformers_logging) if log is not None]
    levels = [log.get_verbosity() for log in loggers]
    bars = transformers_logging is not None and transformers_logging.is_progress_bar_enabled()
    for log in loggers:
        log.set_verbosity_error()
    if bars:
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.set_verbosity(level)
        if bars:
            transformers_logging.enable_progress_bar()


def _diffusers():
    try:
        import diffusers
    except ImportError:
        raise UnnoiseError("reading a diffusers model folder needs the diffusers extra: "
                           "pip install 'unnoise[diffusers]'") from None
    return diffusers


# ---------------------------------------------------------------------------- the network


class DiffusersUNet(nn.Module):
    """A diffusers U-Net as an unnoise network `net(x_in, t, cond)`: x_in in the process's coordinates,
    t the fractional timestep, cond {"text": {"tokens": (B, L, D), ...}} for a cross-attention U-Net.
    Computes in the U-Net's dtype and returns the input's dtype."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet
        self.cross_attention = type(unet).__name__ == "UNet2DConditionModel"

    def forward(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        dtype = next(self.unet.parameters()).dtype
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(x.shape[0]) if t.dim() == 0 else t  # (B,)
        if not self.cross_attention:
            return self.unet(x.to(dtype), t, return_dict=False)[0].to(x.dtype)
        text = cond.get("text") if isinstance(cond, dict) else None
        if text is None:
            raise UnnoiseError("this diffusers U-Net needs a caption condition (cross-attention tokens)")
        states = text["tokens"].to(dtype)  # (B, L, D)
        return self.unet(x.to(dtype), t, encoder_hidden_states=states, return_dict=False)[0].to(x.dtype)


def load_unet(folder: Path, dtype: torch.dtype) -> nn.Module:
    """The folder's unet/ (UNet2DModel or UNet2DConditionModel), in eval mode, from safetensors only."""
    unet_dir = folder / "unet"
    cls = getattr(_diffusers(), check_folder(folder))
    unet = _loaded(unet_dir, lambda: cls.from_pretrained(unet_dir, torch_dtype=dtype, use_safetensors=True,
                                                         local_files_only=True))
    return unet.eval().requires_grad_(False)


# ---------------------------------------------------------------------------- the codec


class DiffusersVAECodec:
    """An AutoencoderKL as a codec: encode z = (posterior mean - shift_factor) * scaling_factor, decode
    D(z / scaling_factor + shift_factor); both in the autoencoder's dtype, returned in the input's."""

    kind = "diffusers-vae"

    def __init__(self, vae: nn.Module, path: Path):
        self.vae, self.path = vae, Path(path)
        config = vae.config
        self.scale = float(config.scaling_factor)
        self.shift = float(getattr(config, "shift_factor", None) or 0.0)
        self.factor = 2 ** (len(config.block_out_channels) - 1)
        self.channels = int(config.latent_channels)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    @property
    def autoencoder(self):
        """What latent inpainting (run/latent.py) reads of a codec's autoencoder: factor, latent_channels."""
        return _Geometry(self.factor, self.channels)

    def encode(self, x: Tensor) -> Tensor:
        mean = self.vae.encode(x.to(self.dtype)).latent_dist.mean
        return ((mean - self.shift) * self.scale).to(x.dtype)

    def decode(self, z: Tensor) -> Tensor:
        return self.vae.decode(z.to(self.dtype) / self.scale + self.shift).sample.to(z.dtype)

    def latent_shape(self, shape: tuple) -> tuple:
        channels, height, width = shape
        return (self.channels, height // self.factor, width // self.factor)

    def record(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "scale": self.scale, "shift": self.shift}

    def to(self, device):
        self.vae.to(device)
        return self


@dataclass(frozen=True)
class _Geometry:
    factor: int
    latent_channels: int


def load_vae(folder: Path, dtype: torch.dtype) -> DiffusersVAECodec:
    vae_dir, cls = folder / "vae", _diffusers().AutoencoderKL
    vae = _loaded(vae_dir, lambda: cls.from_pretrained(vae_dir, torch_dtype=dtype, use_safetensors=True,
                                                       local_files_only=True))
    return DiffusersVAECodec(vae.eval().requires_grad_(False), vae_dir)


# ---------------------------------------------------------------------------- the caption condition


class ClipCaption:
    """Prompts through the folder's CLIP tokenizer (padded to its model_max_length) and text encoder: the
    part is {"tokens": last hidden states (B, L, D), "mask": (B, L), "pooled": (B, D)}; the null condition
    is the empty prompt (diffusers' unconditional branch without a negative prompt)."""

    name, key, request_key, droppable = "caption", "text", "prompt", True

    def __init__(self, tokenizer, encoder: nn.Module):
        self.tokenizer, self.encoder = tokenizer, encoder
        self._null: dict | None = None

    def network_options(self) -> dict:
        return {}

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> dict[str, Tensor]:
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")
        device = next(self.encoder.parameters()).device
        mask = ids["attention_mask"].to(device)
        use_mask = getattr(self.encoder.config, "use_attention_mask", False)
        out = self.encoder(ids["input_ids"].to(device), attention_mask=mask if use_mask else None)
        return {"tokens": out[0], "mask": mask.bool(), "pooled": out[1]}

    def null(self, n: int, device=None) -> dict[str, Tensor]:
        if self._null is None:
            self._null = self.encode([""])
        return {k: v.expand(n, *v.shape[1:]).to(device) for k, v in self._null.items()}

    def from_request(self, value, n: int, device=None) -> dict[str, Tensor]:
        prompts = [value] * n if isinstance(value, str) else list(value)
        if len(prompts) != n or not all(isinstance(p, str) for p in prompts):
            raise UnnoiseError(f"prompt: expected a string or {n} strings, got {value!r}")
        if len(set(prompts)) == 1:
            one = self.encode(prompts[:1])
            return {k: v.expand(n, *v.shape[1:]).to(device) for k, v in one.items()}
        return {k: v.to(device) for k, v in self.encode(prompts).items()}

    def from_batch(self, batch: dict):
        raise UnnoiseError("a diffusers model folder samples only; training it is not supported")

    dropout = preview = from_batch


def load_caption(folder: Path, dtype: torch.dtype) -> ClipCaption:
    """The folder's CLIP tokenizer and text encoder (transformers, local files only)."""
    encoder_dir, tokenizer_dir = folder / "text_encoder", folder / "tokenizer"
    try:
        import transformers
    except ImportError:
        raise UnnoiseError("a Stable Diffusion folder needs transformers: pip install 'unnoise[diffusers]'") from None
    tokenizer = _loaded(tokenizer_dir, lambda: transformers.AutoTokenizer.from_pretrained(
        tokenizer_dir, local_files_only=True))
    encoder = _loaded(encoder_dir, lambda: transformers.CLIPTextModel.from_pretrained(
        encoder_dir, dtype=dtype, use_safetensors=True, local_files_only=True))
    return ClipCaption(tokenizer, encoder.eval().requires_grad_(False))


# ---------------------------------------------------------------------------- the folder


def load_diffusers(path, device=None, dtype: torch.dtype = torch.float32) -> DiffusersModel:
    """The diffusers model folder at `path` as a DiffusersModel on `device` (default: the host) in `dtype`."""
    folder = Path(path)
    if not folder.is_dir():
        raise UnnoiseError(f"diffusers model folder not found: {folder}")
    check_folder(folder)
    _diffusers()
    with _quiet():
        return _load(folder, device, dtype)


def _load(folder: Path, device, dtype: torch.dtype) -> DiffusersModel:
    from ..codec import IdentityCodec
    from ..conditions import Conditions
    from ..device import cpu, resolve_device

    scheduler_path = folder / "scheduler" / "scheduler_config.json"
    scheduler = _read_json(scheduler_path)
    process = process_from_scheduler(scheduler, str(scheduler_path))
    network = DiffusersUNet(load_unet(folder, dtype))
    unet_config = network.unet.config
    learned = learned_variance_of(scheduler) and unet_config.out_channels == 2 * unet_config.in_channels
    denoiser = Denoiser(network, process, prediction_of(scheduler, str(scheduler_path)), learned_variance=learned)
    size = unet_config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    if network.cross_attention:
        codec, conditions = load_vae(folder, dtype), Conditions([load_caption(folder, dtype)])
        latent = (int(unet_config.in_channels), *size)
        data = (int(codec.vae.config.in_channels), size[0] * codec.factor, size[1] * codec.factor)
    else:
        codec, conditions = IdentityCodec(), Conditions([])
        latent = data = (int(unet_config.in_channels), *size)
    device = cpu() if device is None else resolve_device(device)
    denoiser = denoiser.to(device).eval()
    if network.cross_attention:
        codec.to(device)
        conditions.parts[0].encoder.to(device)
    return DiffusersModel(folder, denoiser, codec, conditions, data, latent, scheduler)


# ---------------------------------------------------------------------------- the pipeline

SAMPLE_DEFAULTS = dict(sampler="dpmpp_2m", steps=20, grid="karras", n=4)  # a multistep solver: one call per step
GUIDANCE = 7.5  # Stable Diffusion pipelines' default guidance scale


def run_config(model: DiffusersModel):
    """A RunConfig describing the folder to the Pipeline: image data of the model's shape, its sampling
    defaults (guidance 7.5 for a caption model), no conditions or codec of a run's own."""
    from ..run.config import DataConfig, ModelConfig, RunConfig, SampleConfig

    process = model.denoiser.process.cfg.__dict__
    guidance = GUIDANCE if not model.conditions.empty else 1.0
    return RunConfig(data=DataConfig(name="diffusers", options={"path": str(model.path)}),
                     model=ModelConfig(network="diffusers", process="ddpm", process_options=dict(process),
                                       prediction=model.denoiser.prediction),
                     sample=SampleConfig(**SAMPLE_DEFAULTS, guidance=guidance),
                     data_shape=tuple(model.data_shape), modality="image")


def diffusers_pipeline(pipeline_cls, path, device="auto", dtype: torch.dtype = torch.float32):
    """A `pipeline_cls` (unnoise.pipeline.Pipeline, which calls this from Pipeline.load) over the diffusers
    folder at `path`: sample / restore / encode / decode as for a run (auto's calibrations are cached in
    the folder, next to model_index.json)."""
    from ..device import resolve_device

    device = resolve_device(device)
    model = load_diffusers(path, device, dtype)
    pipe = pipeline_cls(model.denoiser, run_config(model), device=device, run_dir=model.path)
    pipe.conditions, pipe.codec, pipe.shape = model.conditions, model.codec, tuple(model.latent_shape)
    pipe.diffusers = model
    return pipe
