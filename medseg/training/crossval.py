"""Gather the validation results of a cross-validation's folds into one table.

The folds of one experiment are run folders ``<root>/fold_<k>/`` (as ``--fold k`` with ``output:
<root>/fold_<k>`` writes them), each with the ``validation.json`` of its best epoch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import InputError

FOLD_PATTERN = "fold_*"


def gather_folds(root: str | os.PathLike) -> list[dict[str, Any]]:
    """One row per fold found under `root`: fold, best epoch, Dice per class and their mean."""
    root = Path(root)
    files = sorted(root.glob(f"{FOLD_PATTERN}/validation.json"))
    if not files:
        raise InputError(root, f"no {FOLD_PATTERN}/validation.json here (has a fold finished validating?)")
    rows = []
    for path in files:
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(path, f"cannot read validation results ({error})") from None
        rows.append(
            {
                "fold": result["fold"],
                "epoch": result["epoch"],
                "cases": len(result["cases"]),
                **{f"dice_{name}": value for name, value in result["dice"].items()},
                "mean_dice": result["mean_dice"],
            }
        )
    return sorted(rows, key=lambda row: row["fold"])


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fold rows followed by the mean and standard deviation of every Dice column over the folds."""
    columns = [key for key in rows[0] if key.startswith("dice_") or key == "mean_dice"]
    mean = {"fold": "mean", **{c: float(np.mean([r[c] for r in rows])) for c in columns}}
    std = {"fold": "std", **{c: float(np.std([r[c] for r in rows])) for c in columns}}
    return [*rows, mean, std]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows as a Markdown table (floats with 4 decimals, missing cells empty)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
