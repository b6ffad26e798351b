"""The one registry of run kinds: each kind says which runs it serves, the forms the page shows for them
(fields + what the job does) and the viewer its results open in. A new kind of run (latent, ControlNet,
molecules, video) adds its forms with one `register_kind(...)` call, in its own module listed in
`KIND_MODULES` (or imported before the app starts); nothing else in the studio changes.

    register_kind(Kind("molecule", lambda config: config.spec.modality == "molecule",
                       (Form("generate", "Generate", my_fields, my_execute, viewer="image"),)))

A form's `fields(config)` lists its `fields.Field`s for one run (e.g. a class field only for a class-conditional
run); `execute(job)` runs on the worker thread with a `jobs.JobContext` and returns the outputs it wrote.
Viewers the page knows: image (PNG pictures), audio (a player per WAV and its spectrogram), text.
"""
from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import UnnoiseError

VIEWERS = ("image", "audio", "text")
KIND_MODULES = ["unnoise.studio.builtin", "unnoise.studio.control_kind", "unnoise.studio.molecule_kind",
                "unnoise.studio.autoencoder_kind", "unnoise.studio.planning_kind"]  # their import registers kinds


@dataclass(frozen=True)
class Form:
    name: str
    title: str
    fields: Callable  # (RunConfig) -> list[Field]
    execute: Callable  # (JobContext) -> None; writes its outputs through the context
    viewer: str = "image"
    check: Callable | None = None  # (RunConfig, params, images {field: PIL image}) -> None, at submission


@dataclass(frozen=True)
class Kind:
    name: str
    matches: Callable  # (RunConfig) -> bool
    forms: Sequence[Form]
    description: str = ""

    def form(self, name: str) -> Form:
        for form in self.forms:
            if form.name == name:
                return form
        raise UnnoiseError(f"form {name!r}: runs of kind {self.name} offer {', '.join(f.name for f in self.forms)}")


_KINDS: list[Kind] = []
_loaded = False
_loading = threading.Lock()


def register_kind(kind: Kind) -> Kind:
    """Add a kind; kinds registered later are tried first (a specific kind before the generic image one).
    Registering a name again replaces the earlier kind."""
    for form in kind.forms:
        if form.viewer not in VIEWERS:
            raise UnnoiseError(f"kind {kind.name}: form {form.name} has viewer {form.viewer!r}; "
                               f"known: {', '.join(VIEWERS)}")
    _KINDS[:] = [k for k in _KINDS if k.name != kind.name]
    _KINDS.insert(0, kind)
    return kind


def unregister_kind(name: str) -> None:
    _KINDS[:] = [k for k in _KINDS if k.name != name]


def kinds() -> list[Kind]:
    """The registered kinds, newest first (the modules of KIND_MODULES imported once, under a lock: the
    request threads ask at the same time)."""
    global _loaded
    with _loading:
        if not _loaded:
            for module in KIND_MODULES:
                importlib.import_module(module)
            _loaded = True
    return list(_KINDS)


def kind_of(config) -> Kind:
    """The registered kind serving a run config (the most recently registered one that matches)."""
    for kind in kinds():
        if kind.matches(config):
            return kind
    raise UnnoiseError(f"no studio form for runs of modality {config.spec.modality!r}")
