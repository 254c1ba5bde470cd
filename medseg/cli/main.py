"""Entry point of the `medseg` command: builds the parser from the command modules and runs one.

A command module (``medseg/cli/<name>.py``) defines ``add_arguments(parser)`` and ``run(args) -> int``
(the exit status); `COMMANDS` names it with its one-line help. Only the module of the command being run
is imported, and command modules import their heavy dependencies (torch, MONAI, SciPy) inside ``run``, so
``medseg --help`` and ``medseg COMMAND --help`` answer at once. Add new commands to `COMMANDS`.
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

#: Command name -> one-line help, in the order `medseg --help` lists them; each is ``medseg.cli.<name>``.
COMMANDS = {
    "demo": "train on a synthetic CT cohort and produce a second opinion for an unseen DICOM folder",
    "info": "print what a DICOM folder, DICOM file, NIfTI/NRRD/MHA volume or PNG holds (JSON)",
    "convert": "convert a DICOM series (folder) to NIfTI, NRRD or MHA",
    "plan": "measure a dataset and propose preprocessing and patch settings (writes plans.json)",
    "train": "train a segmentation model from a YAML/JSON config (checkpoints, history, validation Dice)",
    "crossval": "gather the folds' best validation Dice (ROOT/fold_*/validation.json) into one table",
    "models": "list the model architectures and the shipped bundles (trained models) with their figures",
    "infer": "segment every series in a DICOM folder (or NIfTI/PNG files) with a trained model",
    "evaluate": "compare predicted masks with reference masks: Dice, HD95, NSD, lesion-wise scores, volumes",
    "report": "write self-contained HTML second-opinion reports (overlays, volumes, lesions, metrics)",
    "pacs": "find studies on a PACS (DICOMweb or DIMSE), segment them and store the DICOM SEG back",
    "bench": "run a benchmark (io, models, train, infer, ...) and print ratios against its baseline",
}


def requested_command(argv: Sequence[str]) -> str | None:
    """The command named in `argv` (the first word that is not an option), if it is one of `COMMANDS`."""
    word = next((item for item in argv if not item.startswith("-")), None)
    return word if word in COMMANDS else None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser for `argv`: every command is listed, the requested one's options are declared."""
    parser = argparse.ArgumentParser(
        prog="medseg",
        description="Medical image segmentation: train models, run them on DICOM folders, "
        "and produce second-opinion masks, overlays and reports.",
        epilog="Run 'medseg COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"medseg {medseg.__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
    chosen = requested_command(argv)
    for name, text in COMMANDS.items():
        sub = commands.add_parser(name, help=text, description=text)
        if name == chosen:
            module = importlib.import_module(f"medseg.cli.{name}")
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
        for noisy in ("monai", "highdicom"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        # pydicom's decoders log a whole traceback for pixel data they cannot decode; medseg reports the
        # same failure in one line naming the file (--debug shows them).
        for decoder in ("pydicom", "pylibjpeg", "libjpeg", "openjpeg"):
            logging.getLogger(decoder).setLevel(logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    argv = [str(item) for item in (sys.argv[1:] if argv is None else argv)]
    parser = build_parser(argv)
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
    except OSError as error:  # a full disk, a read-only folder: what the user must fix, in one line
        if args.debug:
            raise
        print(f"medseg {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
