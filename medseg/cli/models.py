"""`medseg models`: list the model zoo with 2D/3D support, default options and parameter counts."""

from __future__ import annotations

import argparse
import json

from medseg.models import default_parameter_count, get_spec, list_models

NAME = "models"
HELP = "list the available segmentation models, their options and parameter counts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")


def describe(name: str) -> dict[str, object]:
    """Everything `medseg models` shows about one model (parameters for 1 input channel, 2 classes)."""
    spec = get_spec(name)
    return {
        "name": name,
        "family": spec.family,
        "description": spec.description,
        "dims": list(spec.dims),
        "defaults": spec.defaults,
        "parameters": {f"{d}d": default_parameter_count(name, d) for d in spec.dims},
    }


def run(args: argparse.Namespace) -> int:
    models = [describe(name) for name in list_models()]
    if args.json:
        print(json.dumps(models, indent=2, default=repr))
        return 0
    for model in models:
        dims = "/".join(f"{d}D" for d in model["dims"])
        counts = ", ".join(f"{k.upper()} {v / 1e6:.2f}M" for k, v in model["parameters"].items())
        print(f"{model['name']:15s} {dims:6s} {model['family']:18s} {model['description']}")
        print(f"{'':15s} parameters: {counts}")
        options = ", ".join(f"{k}={v!r}" for k, v in model["defaults"].items())
        print(f"{'':15s} options: {options}\n")
    return 0
