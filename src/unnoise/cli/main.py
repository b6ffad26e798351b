"""`unnoise COMMAND ...`: the top-level parser and dispatch. Each command lives in its own module of this
package (parser + handler): train, sample, eval, restore, data, demo. User errors print one line."""
from __future__ import annotations

import importlib
import logging
import sys

from ..errors import UnnoiseError
from .common import OneLineParser

COMMANDS = ("train", "sample", "eval", "restore", "data", "demo", "serve", "distill", "plan", "reconstruct", "export")


def command_module(name: str):
    return importlib.import_module(f".{name}", __package__)


def build_parser() -> OneLineParser:
    modules = [command_module(name) for name in COMMANDS]
    parser = OneLineParser(prog="unnoise", description="Diffusion models: train, sample, evaluate, restore.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for module in modules:
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    from ..run.threads import prepare_thread_environment

    prepare_thread_environment()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        status = args.handler(args)
    except UnnoiseError as exc:
        print(f"unnoise {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unnoise {args.command}: interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
