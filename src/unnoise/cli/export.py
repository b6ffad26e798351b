"""`unnoise export RUN --format diffusers --out DIR`: write a run as a folder diffusers loads (interop/export.py
lists what exports and why the rest cannot)."""
from __future__ import annotations

from pathlib import Path

SUMMARY = "export a trained run to another library's format (diffusers)"
FORMATS = ("diffusers",)


def add_parser(sub) -> None:
    p = sub.add_parser("export", help=SUMMARY, description=SUMMARY)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--format", default="diffusers", choices=FORMATS,
                   help="diffusers: a DDIMPipeline folder (UNet2DModel + DDIMScheduler)")
    p.add_argument("--out", type=Path, required=True, help="the folder to write (must not exist)")
    p.add_argument("--weights", default="ema", choices=["ema", "model"])
    p.set_defaults(handler=run)


def run(args) -> None:
    from ..interop.export import export_diffusers

    out = export_diffusers(args.run_dir, args.out, weights=args.weights)
    print(f"wrote {out} (diffusers DDIMPipeline folder; `unnoise sample {out}` reads it too)")
