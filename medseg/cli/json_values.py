"""Command-line values given as JSON (``--map``, ``--reference-map``): parsed as data, never as code."""

from __future__ import annotations

import argparse
import json
from typing import Any


def json_object(text: str) -> dict[str, Any]:
    """An argparse type: `text` as a JSON object, or a usage error saying what is wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f'expected a JSON object like {{"GTV-1": 1}}, got {text!r}')
    return value
