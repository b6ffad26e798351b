"""unnoise studio: a web page over the runs of a folder, built on `Pipeline` (`unnoise serve`).

    studio = Studio("runs", device="auto")          # runs, forms, job queue, history (service.py)
    app = create_app(studio, token=None)             # the FastAPI app (app.py); needs the `serve` extra

Modules: fields (form fields and their checks), kinds (the registry of run kinds and their forms), builtin
(the project's kinds), jobs (queue, cancel, reorder), history (SQLite), media (PNG settings, safe uploads),
runs (run folder, pipeline cache), service (the studio without HTTP), app (HTTP), static/ (the page).
"""
from .kinds import Form, Kind, kind_of, register_kind
from .service import Limits, Studio

__all__ = ["Form", "Kind", "Limits", "Studio", "create_app", "kind_of", "register_kind"]


def create_app(studio, token=None):
    """The FastAPI app serving `studio` (see app.create_app)."""
    from .app import create_app as build

    return build(studio, token)
