"""`unnoise data check FOLDER`: list the files of an image folder that training would skip, and why."""
from __future__ import annotations

from pathlib import Path

from ..errors import UnnoiseError

SUMMARY = "inspect a dataset folder"


def add_parser(sub) -> None:
    p = sub.add_parser("data", help=SUMMARY, description=SUMMARY)
    p.add_argument("action", choices=["check"], help="check: list the files training would skip, and why")
    p.add_argument("folder", type=Path)
    p.add_argument("--size", type=int, default=32, help="training size; shorter images count as too small")
    p.add_argument("--min-size", type=int, help="smallest acceptable short side (default: --size)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..data.imagefolder import check_folder

    for flag, value in (("--size", args.size), ("--min-size", args.min_size)):
        if value is not None and value < 1:
            raise UnnoiseError(f"{flag} must be >= 1, got {value}")
    if not args.folder.is_dir():
        raise UnnoiseError(f"no such directory: {args.folder}")
    total, problems = check_folder(args.folder, args.size if args.min_size is None else args.min_size)
    for path, problem in problems:
        print(f"{path}: {problem}")
    unusable = sum(1 for path, _ in problems if path.is_file())  # the rest are links not followed
    print(f"checked {total} files: {total - unusable} usable, {len(problems)} with problems")
    return 1 if problems else 0
