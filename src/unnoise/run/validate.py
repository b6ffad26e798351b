"""Field-by-field validation of a RunConfig: types, ranges and finiteness, before anything is written.

`validate_config(config)` raises a one-line UnnoiseError naming the field, its value and what is allowed,
e.g. `train.batch_size=0: must be an integer >= 1`. Types come from the dataclass hints (and, for
`model.network_options` / `model.process_options`, from the network's / process's config dataclass);
ranges and choices from the tables below. Names that live in registries (networks, processes, datasets,
samplers, ...) are checked against those registries.
"""
from __future__ import annotations

import dataclasses
import math
import typing

from ..errors import UnnoiseError
from .text import TEXT_PROCESSES, TEXT_SAMPLERS  # text runs' process and sampler names


class _Bad(Exception):
    """A rule's complaint: what the value must be (or, with names_value, a whole message naming it)."""

    def __init__(self, message: str, names_value: bool = False):
        super().__init__(message)
        self.names_value = names_value


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(lo: int | None = None, hi: int | None = None):
    """Rule: an integer in [lo, hi] (either end open when None)."""
    words = " and ".join(w for w in (f">= {lo}" if lo is not None else "", f"<= {hi}" if hi is not None else "") if w)

    def rule(v):
        if not _is_int(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
            raise _Bad(f"must be an integer {words}".rstrip())
    return rule


def number(lo: float = -math.inf, hi: float = math.inf, *, lo_open: bool = False, hi_open: bool = False):
    """Rule: a finite number in the interval given by lo, hi (open ends where told)."""
    interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def rule(v):
        ok = _is_number(v) and math.isfinite(v)
        ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            raise _Bad(f"must be a finite number in {interval}")
    return rule


def choice(names, kind: str):
    """Rule: one of `names` (a sequence, or a function returning one, looked up when checked)."""
    def rule(v):
        valid = list(names() if callable(names) else names)
        if valid and v not in valid:
            raise _Bad(f"unknown {kind} {v!r}; valid: {', '.join(sorted(map(str, valid)))}", names_value=True)
    return rule


def _guidance_interval(v):
    if len(v) == 0:
        return
    if len(v) != 2 or not all(_is_number(x) and math.isfinite(x) and x >= 0 for x in v) or not v[0] < v[1]:
        raise _Bad("must be empty or two finite numbers 0 <= SIGMA_LO < SIGMA_HI")


def _device_name(v):
    """A device name by its form only (auto, cpu, cuda, cuda:N); whether CUDA exists is checked where the
    device is resolved, so a run trained on a GPU still loads on a CPU."""
    from ..device import AUTO, CPU, CUDA

    kind, _, index = v.strip().lower().partition(":") if isinstance(v, str) else ("", "", "")
    if not (kind in (AUTO, CPU) and not index or kind == CUDA and (not index or index.isdigit())):
        raise _Bad(f"must be {AUTO}, {CPU}, {CUDA} or {CUDA}:N")


def _conditions(v):
    valid = _registry("..conditions", "ORDER")()
    unknown = [c for c in v if c not in valid] if valid else []
    if unknown:
        raise _Bad(f"unknown condition {unknown[0]!r}; valid: {', '.join(valid)}", names_value=True)


def _int_list(v):
    if not all(_is_int(x) for x in v):
        raise _Bad("must be a list of integers")


def _registry(module: str, attribute: str, extra=()):
    """Names of a registry, imported when first needed (empty, so unchecked, if it moved)."""
    def names():
        import importlib

        try:
            return [*getattr(importlib.import_module(module, __package__), attribute), *extra]
        except (ImportError, AttributeError):
            return []
    return names


RULES = {
    "data": {"name": choice(_registry("..data", "DATASETS"), "dataset")},
    "model": {
        "network": choice(_registry("..nn.registry", "NETWORKS", extra=("autoencoder",)), "network"),  # run/latent.py
        "process": choice(_registry("..process", "PROCESSES", extra=tuple(TEXT_PROCESSES)), "process"),
        "prediction": choice(_registry("..param", "PREDICTIONS"), "prediction"),
        "sigma_data": number(0, lo_open=True),
        "text_max_tokens": integer(3, 512),
        "text_layers": _int_list,
        "lowres_factor": choice((2, 4), "super-resolution factor"),
        "conditions": _conditions,
        "control_kind": choice(_registry("..control", "KINDS"), "control kind"),
    },
    "train": {
        "steps": integer(1), "batch_size": integer(1), "lr": number(0, 10, lo_open=True),
        "weight_decay": number(0), "warmup_steps": integer(0), "lr_schedule": choice(("constant", "cosine"), "learning-rate schedule"),
        "grad_clip": number(0), "grad_accum": integer(1), "precision": choice(_registry("..device", "PRECISIONS"), "precision"),
        "ema_decay": number(0, 1, hi_open=True), "weighting": choice(_registry("..losses", "WEIGHTINGS"), "loss weighting"),
        "min_snr_gamma": number(0, lo_open=True), "density": choice(_registry("..grids", "DENSITIES"), "training density"),
        "cond_dropout": number(0, 1, hi_open=True), "vlb_weight": number(0), "p_mean": number(),
        "p_std": number(0, lo_open=True), "seed": integer(0, 2**63 - 1), "log_every": integer(1),
        "sample_every": integer(0), "checkpoint_every": integer(0), "keep_checkpoints": integer(0),
        "threads": integer(0, 4096), "checkpoint_minutes": number(0), "device": _device_name,
    },
    "sample": {
        "sampler": choice(_registry("..sample", "SAMPLERS", extra=("auto", *TEXT_SAMPLERS)), "sampler"),
        "steps": integer(1),
        "grid": choice(_registry("..grids", "GRIDS"), "grid"), "n": integer(1), "guidance": number(0, 1000),
        "guidance_interval": _guidance_interval, "guidance_rescale": number(0, 1),
    },
}


def _type_problem(value, hint) -> str | None:
    """What is wrong with `value` for type hint `hint` (None when it fits); Optional/union hints accept
    any of their members, tuple hints lists and tuples."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
        members = typing.get_args(hint)
        if any(_type_problem(value, m) is None for m in members):
            return None
        return f"must be {' or '.join(_type_name(m) for m in members)}"
    if hint is type(None):
        return None if value is None else "must be null"
    if hint is bool and not isinstance(value, bool):
        return "must be true or false"
    if hint is int and not _is_int(value):
        return "must be an integer"
    if hint is float and not (_is_number(value) and math.isfinite(value)):
        return "must be a finite number"
    if hint is str and not isinstance(value, str):
        return "must be a string"
    if (hint is dict or origin is dict) and not isinstance(value, dict):
        return "must be a mapping of option: value"
    if hint is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            return "must be a list"
        args = typing.get_args(hint)
        if args and args[0] is int and not all(_is_int(x) for x in value):
            return "must be a list of integers"
    return None


def _type_name(hint) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            type(None): "null"}.get(hint, "a list" if typing.get_origin(hint) is tuple or hint is tuple else "a mapping")


def _fail(where: str, name: str, value, problem: str) -> UnnoiseError:
    text = repr(value) if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:g}" \
        if isinstance(value, float) else str(value)
    return UnnoiseError(f"{where}{name}={text[:80]}: {problem}")


def _check_dataclass(obj, section: str, where: str, rules: dict) -> None:
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        problem = _type_problem(value, hints[f.name]) if f.name in hints else None
        if f.name in rules:  # a rule's message says more (the allowed range) than the type's
            try:
                rules[f.name](value)
            except _Bad as bad:
                if bad.names_value:
                    raise UnnoiseError(f"{where}{section}.{f.name}: {bad}") from None
                problem = str(bad)
        if problem is not None:
            raise _fail(where, f"{section}.{f.name}", value, problem)


def _check_options(options: dict, config_cls, section: str, where: str) -> None:
    """Option dicts (network_options, process_options) typed by their config dataclass; unknown names
    are left to the builder, which lists the valid ones."""
    if config_cls is None:
        return
    hints = typing.get_type_hints(config_cls)
    for name, value in options.items():
        if name in hints:
            problem = _type_problem(value, hints[name])
            if problem is None and _is_int(value) and value < 0:
                problem = "must be >= 0"
            if problem is None and isinstance(value, (list, tuple)) and any(_is_int(x) and x < 1 for x in value):
                problem = "must be a list of positive integers"
            if problem is not None:
                raise _fail(where, f"{section}.{name}", value, problem)


def _config_class(registry, name: str):
    try:
        import importlib

        module, attribute = registry
        table = getattr(importlib.import_module(module, __package__), attribute)
        entry = table.get(name)
    except (ImportError, AttributeError):
        return None
    return entry[0] if isinstance(entry, tuple) else None


def validate_config(config, where: str = "") -> None:
    """Check every field of a RunConfig; raise a one-line UnnoiseError naming field, value and the allowed
    range for the first bad one. `where` (a file name) prefixes the message when given."""
    prefix = f"{where}: " if where and where != "config" else ""
    for section, rules in RULES.items():
        part = getattr(config, section, None)
        if part is not None:
            _check_dataclass(part, section, prefix, rules)
    m = config.model
    _check_options(m.network_options, _config_class(("..nn.registry", "NETWORKS"), m.network),
                   "model.network_options", prefix)
    _check_options(m.process_options, _config_class(("..process", "PROCESSES"), m.process),
                   "model.process_options", prefix)
