"""`unnoise serve`: the studio, a web page to generate, restore and compare with the runs under a folder.
Binds 127.0.0.1 unless given --token; with a token every request must carry it."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..errors import UnnoiseError
from .common import add_device, check_number

TOKEN_VARIABLE = "UNNOISE_TOKEN"
SUMMARY = "serve the studio: a web page over the runs in a folder (generate, restore, queue, history)"


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help=SUMMARY, description=SUMMARY)
    p.add_argument("--runs", type=Path, default=Path("runs"), help="folder of run directories (default: runs)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; any other address needs --token)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--token", default=os.environ.get(TOKEN_VARIABLE) or None,
                   help="required on every request (?token=T once in the browser, or a Bearer header); 'random' "
                        f"draws one and prints the URL; default: ${TOKEN_VARIABLE} (kept out of the process list)")
    p.add_argument("--workers", type=int, default=1, help="jobs run at the same time on the device (default 1)")
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="largest upload in MiB (default 8)")
    p.add_argument("--max-upload-pixels", type=int, default=4096 * 4096, help="largest upload in pixels")
    p.add_argument("--memory-gb", type=float, default=4.0,
                   help="loaded models are kept, least recently used dropped beyond this many GiB (default 4)")
    add_device(p)
    p.set_defaults(handler=run)


def check_args(args) -> None:
    from ..studio.app import check_bind

    check_number("--port", args.port, low=0, high=65535, integer=True)
    check_number("--workers", args.workers, low=1, high=64, integer=True)
    check_number("--max-upload-mb", args.max_upload_mb, low=0, low_open=True)
    check_number("--max-upload-pixels", args.max_upload_pixels, low=1, integer=True)
    check_number("--memory-gb", args.memory_gb, low=0, low_open=True)
    if args.token is not None and len(args.token) < 8 and args.token != "random":
        raise UnnoiseError("--token: use at least 8 characters (or 'random')")
    check_bind(args.host, args.token)
    if not args.runs.is_dir():
        raise UnnoiseError(f"--runs {args.runs}: not a directory")


def run(args) -> None:
    from ..data.base import import_extra

    check_args(args)
    uvicorn = import_extra("uvicorn", "unnoise serve", "uvicorn (extra serve)")
    import_extra("fastapi", "unnoise serve", "fastapi (extra serve)")
    from ..studio import Limits, Studio, create_app

    token = secrets.token_urlsafe(16) if args.token == "random" else args.token
    limits = Limits(upload_bytes=int(args.max_upload_mb * (1 << 20)), upload_pixels=args.max_upload_pixels,
                    body_bytes=int(args.max_upload_mb * (1 << 20)) * 3 + (1 << 20))
    studio = Studio(args.runs, args.device, workers=args.workers, limits=limits,
                    memory_budget=int(args.memory_gb * (1 << 30)))
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"unnoise studio: http://{host}:{args.port}/" + (f"?token={token}" if token else ""), flush=True)
    uvicorn.run(create_app(studio, token), host=args.host, port=args.port, log_level="warning")
