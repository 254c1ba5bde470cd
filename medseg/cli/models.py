"""`medseg models`: the trained models that ship with medseg (bundles), then every architecture of the zoo."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")


def describe(name: str) -> dict[str, object]:
    """Everything `medseg models` shows about one architecture (parameters for 1 input channel, 2 classes)."""
    from medseg.models import default_parameter_count, get_spec

    spec = get_spec(name)
    return {
        "name": name,
        "family": spec.family,
        "description": spec.description,
        "dims": list(spec.dims),
        "defaults": spec.defaults,
        "parameters": {f"{d}d": default_parameter_count(name, d) for d in spec.dims},
    }


def _print_bundles(bundles: list[dict[str, Any]]) -> None:
    print("Trained models (use the name with 'medseg infer -m NAME' or Segmenter.load(NAME)):\n")
    for card in bundles:
        figures = ", ".join(f"{key} {value}" for key, value in card["validation"].items())
        print(f"{card['name']:24s} {card['version']:7s} {card['task']}")
        print(f"{'':24s} classes: {card['classes']}")
        print(f"{'':24s} validation: {figures}")
        print(f"{'':24s} intended use: {card['intended_use']}\n")


def run(args: argparse.Namespace) -> int:
    from medseg.bundles import list_bundles
    from medseg.models import list_models

    bundles = list_bundles()
    architectures = [describe(name) for name in list_models()]
    if args.json:
        print(json.dumps({"bundles": bundles, "architectures": architectures}, indent=2, default=repr))
        return 0
    _print_bundles(bundles)
    print("Architectures (for 'medseg train'; parameters for 1 input channel and 2 classes):\n")
    for model in architectures:
        dims = "/".join(f"{d}D" for d in model["dims"])
        counts = ", ".join(f"{k.upper()} {v / 1e6:.2f}M" for k, v in model["parameters"].items())
        print(f"{model['name']:15s} {dims:6s} {model['family']:18s} {model['description']}")
        print(f"{'':15s} parameters: {counts}")
        options = ", ".join(f"{k}={v!r}" for k, v in model["defaults"].items())
        print(f"{'':15s} options: {options}\n")
    return 0
