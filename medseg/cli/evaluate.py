"""`medseg evaluate PRED REF --out DIR`: segmentation metrics per case and class, and their summary."""

from __future__ import annotations

import argparse
from pathlib import Path

from medseg.cli.json_values import json_object
from medseg.errors import InputError
from medseg.metrics.aggregate import BOOTSTRAP_SAMPLES
from medseg.metrics.cohort import evaluate_cohort, read_class_names
from medseg.metrics.evaluate import DEFAULT_NSD_TOLERANCE_MM
from medseg.metrics.outputs import format_table, write_outputs
from medseg.metrics.pairing import pair_paths, read_manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prediction", nargs="?", help="predicted mask file, or folder of masks")
    parser.add_argument("reference", nargs="?", help="reference mask file, or folder (paired by case name)")
    parser.add_argument("--manifest", help="CSV/JSON listing case,prediction,reference (instead of PRED REF)")
    parser.add_argument("--out", required=True, help="folder for metrics.json and the CSV files")
    parser.add_argument("--labels", help='JSON class names, e.g. dataset.json or {"1": "liver"}')
    parser.add_argument(
        "--tolerance-mm",
        type=float,
        default=DEFAULT_NSD_TOLERANCE_MM,
        help="NSD tolerance (default %(default)s)",
    )
    parser.add_argument(
        "--resample",
        action="store_true",
        help="put predictions on the reference grid (nearest) if they differ",
    )
    reference_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default %(default)s)")
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP_SAMPLES, help="bootstrap resamples")


def reference_arguments(parser: argparse.ArgumentParser) -> None:
    """How to read the clinician's masks (shared with ``medseg report``)."""
    parser.add_argument(
        "--threshold",
        "--reference-threshold",
        type=float,
        help="binarise the reference (never the AI mask): label 1 where value > THRESHOLD (default: 0/255 "
        "and anti-aliased 8-bit masks are recognised and binarised, with a note)",
    )
    parser.add_argument(
        "--map",
        type=reference_map,
        metavar="JSON",
        help="translate reference values or SEG segment labels onto the model's classes, e.g. "
        '\'{"Lung-Left": 1, "Lung-Right": 1, "4": 2}\'; values not named become background',
    )


def reference_map(text: str) -> dict[str, int]:
    """``--map`` JSON: reference value or segment label -> model class value."""
    mapping = json_object(text)
    if not all(type(v) is int and v >= 0 for v in mapping.values()):
        raise argparse.ArgumentTypeError('expected an object of class values, e.g. {"Liver": 1}')
    return {str(key): value for key, value in mapping.items()}


def run(args: argparse.Namespace) -> int:
    if args.manifest:
        if args.prediction or args.reference:
            raise InputError(args.manifest, "give either a manifest or PRED and REF, not both")
        pairs = read_manifest(args.manifest)
    elif args.prediction and args.reference:
        pairs = pair_paths(args.prediction, args.reference)
    else:
        raise InputError(None, "give PRED and REF (files or folders) or --manifest")
    names = read_class_names(args.labels) if args.labels else None
    result = evaluate_cohort(
        pairs, names, args.tolerance_mm, args.resample, args.threshold, args.seed, args.bootstrap, args.map
    )
    paths = write_outputs(result, Path(args.out))
    print(format_table(result))
    print("wrote " + ", ".join(str(path) for path in paths))
    return 0
