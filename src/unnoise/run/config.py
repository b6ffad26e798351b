"""Run configuration: frozen dataclasses, filled from presets and `--set section.key=value` overrides.

The resolved config (data shape, network inputs and classes filled in from the data) is saved with every
run and checkpoint, so loading a run never guesses.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from .fields import build_dataclass
from ..errors import UnnoiseError


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    network: str = "unet"
    network_options: dict = field(default_factory=dict)
    process: str = "ddpm"
    process_options: dict = field(default_factory=dict)
    prediction: str = "eps"
    sigma_data: float = 0.5
    # the run's conditions, any combination of: label (class labels), caption (captions through the frozen
    # text encoder, U-Net cross-attention), lowres (SR3: the lowres_factor-fold average-pooled image,
    # upsampled bicubically, as extra input channels; Saharia et al. 2021)
    conditions: tuple = ()
    text_max_tokens: int = 24  # caption tokens kept (incl. [CLS] and [SEP]); longer captions are truncated
    # text encoder hidden states concatenated as cross-attention tokens: 0 = input word embeddings (keeps
    # words apart that the sentence encoder's last layer nearly merges, e.g. "left"/"right"), 6 = last
    text_layers: tuple = (0, 6)
    lowres_factor: int = 4  # lowres: the super-resolution factor, 2 or 4
    # {"run": PATH, "mode": "copy" | "frozen"}: start from another run's EMA weights (every parameter whose
    # name and shape match); frozen keeps the copied parameters fixed, training only the others
    init_from: dict = field(default_factory=dict)
    learned_variance: bool = False  # the network also emits the reverse variance (discrete DDPM only)
    control_kind: str = "edges"  # control (ControlNet, run/control.py): edges, segmentation or sketch
    # a few-step student: {method: progressive | consistency | consistency-training, teacher: PATH, ...}, its
    # recipe and step schedule (run/distill.py fills in and checks the rest); empty for an ordinary run
    distill: dict = field(default_factory=dict)
    # latent runs (run/latent.py): the frozen codec the denoiser works through: "identity", a trained autoencoder
    # run's directory, or {run: PATH}; the resolved config records {kind, run, sha256, scale, shift, latent_shape}
    codec: dict | str = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000
    batch_size: int = 128
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    lr_schedule: str = "constant"  # or "cosine"
    grad_clip: float = 1.0
    grad_accum: int = 1  # micro-batches per step (per rank); batch_size stays the global batch
    device: str = "auto"  # auto (CUDA if available, else CPU), cpu, cuda, cuda:N; the CLI's --device overrides it
    precision: str = "fp32"  # bf16 or fp16 (CUDA only): autocast of the network, fp32 master weights
    channels_last: bool = False  # NHWC memory layout for 2-D convolutional networks
    compile: bool = False  # torch.compile the network for training
    ema_decay: float = 0.999
    weighting: str = "none"
    min_snr_gamma: float = 5.0
    density: str = "uniform"  # or "lognormal", or "importance" (loss-aware t, discrete DDPM only)
    cond_dropout: float = 0.1  # conditional runs: probability of training on the null condition (for guidance)
    vlb_weight: float = 0.0  # lambda of the hybrid loss L_simple + lambda L_vlb (0.001 in Nichol & Dhariwal)
    p_mean: float = -1.2
    p_std: float = 1.2
    seed: int = 0
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500  # capped at a quarter of the run, so a run killed half way has a checkpoint
    checkpoint_minutes: float = 5.0  # also checkpoint after this much wall clock (0: off; single process)
    keep_checkpoints: int = 3  # history/ keeps the last K checkpoints (best/ is kept apart)
    tensorboard: bool = False  # also log to run_dir/tensorboard (needs the tensorboard package)
    threads: int = 0  # CPU threads; 0: auto, the usable cores other processes leave free (run/threads.py)
    # the loss options of a run kind with its own objective (an autoencoder run, run/latent.py: l1_weight,
    # ssim_weight, kl_weight, gan_start, gan_weight, discriminator_lr)
    loss_options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SampleConfig:
    sampler: str = "heun"
    steps: int = 18
    grid: str = "karras"
    n: int = 64
    guidance: float = 1.0  # classifier-free guidance scale for conditional sampling (1: none)
    guidance_interval: tuple = ()  # (sigma_lo, sigma_hi): guide only there; empty: everywhere
    guidance_rescale: float = 0.0  # phi of guidance rescale (Lin et al. 2024); 0: off


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    sample: SampleConfig = SampleConfig()
    data_shape: tuple = ()
    num_classes: int = 0
    data_levels: int = 0  # quantization levels of the data on [-1, 1] (0: continuous)
    class_names: tuple = ()  # the dataset's class names (labels 0..K-1), for `--class NAME`
    sample_rate: int = 0  # audio: samples per second of the data (0: not audio)
    modality: str = ""  # image | audio | points | tokens | video | molecule ("" in older configs: see spec_of)
    data_dtype: str = "float32"  # int64 for token ids
    vocab_size: int = 0  # tokens: ids 0..vocab_size-1 (0: not tokens)
    tokenizer: dict = field(default_factory=dict)  # tokens: the dataset's tokenizer (Tokenizer.to_dict())
    molecule: dict = field(default_factory=dict)  # molecules: atom types, feature scales, atom-count histogram

    @property
    def spec(self):
        """The data's DataSpec (shape, dtype, modality, levels, sample rate, classes): see spec_of."""
        return spec_of(self)


RESOLVED = ("data_shape", "num_classes", "data_levels", "class_names", "sample_rate", "modality",
            "data_dtype", "vocab_size", "tokenizer", "molecule")  # filled from the data


def spec_of(config: RunConfig):
    """The DataSpec of a resolved config. Configs written before the modality field existed get it inferred
    here, and only here, from the old fields (backward compatibility; new runs record it): a sample rate
    means audio, a one-dimensional sample a 2-D point, anything else an image."""
    from ..data.spec import DataSpec

    modality = config.modality
    if not modality:
        shape = tuple(config.data_shape)
        modality = "audio" if config.sample_rate > 0 else "points" if len(shape) == 1 else "image"
    return DataSpec(shape=tuple(config.data_shape), modality=modality, dtype=config.data_dtype or "float32",
                    levels=config.data_levels, sample_rate=config.sample_rate,
                    class_names=tuple(config.class_names), num_classes=config.num_classes,
                    vocab_size=config.vocab_size, atom_types=tuple(config.molecule.get("types", ())))
SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "sample": SampleConfig}


LEGACY_CONDITIONS = {"class_conditional": "label", "text_conditional": "caption"}


def translate_legacy_conditions(model: dict, where: str) -> dict:
    """Model fields of older configs (class_conditional, text_conditional: bool; super_resolution: 0, 2 or
    4) as entries of model.conditions (and model.lowres_factor)."""
    model = dict(model)
    conditions = model.get("conditions", ())
    conditions = [c.strip() for c in conditions.split(",") if c.strip()] if isinstance(conditions, str) \
        else list(conditions)
    for key, name in LEGACY_CONDITIONS.items():
        value = model.pop(key, False)
        if not isinstance(value, bool):
            raise UnnoiseError(f"{where}.model.{key}: expected bool, got {value!r}")
        if value and name not in conditions:
            conditions.append(name)
    factor = model.pop("super_resolution", 0)
    if factor not in (0, 2, 4) or isinstance(factor, bool):
        raise UnnoiseError(f"{where}.model.super_resolution must be 0 (off), 2 or 4, got {factor!r}")
    if factor:
        model["lowres_factor"] = factor
        conditions += [] if "lowres" in conditions else ["lowres"]
    if conditions or "conditions" in model:
        model["conditions"] = tuple(conditions)
    return model


def config_from_dict(d: dict, where: str = "config") -> RunConfig:
    """Build a RunConfig from nested dicts, naming any unknown section or field (older condition flags are
    translated into model.conditions)."""
    if not isinstance(d, dict):
        raise UnnoiseError(f"{where}: expected a mapping of sections (data, model, train, sample), "
                           f"got {type(d).__name__}")
    d = dict(d)
    if isinstance(d.get("model"), dict):
        d["model"] = translate_legacy_conditions(d["model"], where)
    unknown = [k for k in d if k not in SECTIONS and k not in RESOLVED]
    if unknown:
        raise UnnoiseError(f"{where}: unknown section {unknown[0]!r}; valid: {', '.join(SECTIONS)}")
    for k in SECTIONS:
        if not isinstance(d.get(k, {}), dict):
            raise UnnoiseError(f"{where}: section {k!r} must be a mapping of field: value, got {d[k]!r:.60}")
    parts = {k: build_dataclass(cls, d.get(k, {}), f"{where}.{k}") for k, cls in SECTIONS.items()}
    try:
        config = RunConfig(**parts, data_shape=tuple(d.get("data_shape", ())),
                           num_classes=int(d.get("num_classes", 0)), data_levels=int(d.get("data_levels", 0)),
                           class_names=tuple(d.get("class_names", ())), sample_rate=int(d.get("sample_rate", 0)),
                           modality=str(d.get("modality", "")), data_dtype=str(d.get("data_dtype", "float32")),
                           vocab_size=int(d.get("vocab_size", 0)), tokenizer=dict(d.get("tokenizer") or {}),
                           molecule=dict(d.get("molecule") or {}))
    except (TypeError, ValueError) as exc:
        raise UnnoiseError(f"{where}: bad resolved field ({exc})") from None
    from .validate import validate_config

    validate_config(config, where)  # every field's type and range, before anything is written
    return config


def config_to_dict(config: RunConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def parse_value(text: str):
    """A --set value: JSON when it parses (numbers, true/false, lists, objects), else the bare string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(d: dict, assignments: list[str]) -> dict:
    """Apply `section.key=value` (or `section.key.sub=value` into option dicts) to a nested dict."""
    d = json.loads(json.dumps(d))
    for item in assignments:
        if "=" not in item:
            raise UnnoiseError(f"--set {item!r}: expected section.key=value")
        path, value = item.split("=", 1)
        keys = path.split(".")
        if len(keys) < 2 or keys[0] not in SECTIONS:
            raise UnnoiseError(f"--set {path!r}: expected section.key with section one of {', '.join(SECTIONS)}")
        node = d
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise UnnoiseError(f"--set {path!r}: {key!r} is not a section")
        node[keys[-1]] = parse_value(value)
    return d
