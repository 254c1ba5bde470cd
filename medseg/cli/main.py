"""Entry point of the `medseg` command: builds the parser from the command modules and runs one.

A command module defines ``NAME``, ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status). Add new commands to `COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from collections.abc import Sequence

import medseg
from medseg.errors import MedsegError

#: Modules that implement one sub-command each, in the order `medseg --help` lists them.
COMMAND_MODULES = [
    "medseg.cli.demo",
    "medseg.cli.info",
    "medseg.cli.convert",
    "medseg.cli.plan",
    "medseg.cli.train",
    "medseg.cli.crossval",
    "medseg.cli.models",
    "medseg.cli.infer",
    "medseg.cli.evaluate",
    "medseg.cli.report",
    "medseg.cli.pacs",
    "medseg.cli.bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medseg",
        description="Medical image segmentation: train models, run them on DICOM folders, "
        "and produce second-opinion masks, overlays and reports.",
        epilog="Run 'medseg COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"medseg {medseg.__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        sub = commands.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def configure_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if debug else "%(message)s",
    )
    if not debug:
        warnings.filterwarnings("ignore")
        for noisy in ("monai", "highdicom", "pydicom"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    configure_logging(args.debug)
    try:
        return int(args.handler(args) or 0)
    except MedsegError as error:
        if args.debug:
            raise
        print(f"medseg {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
