"""`medseg crossval ROOT`: the folds' best validation Dice in one table (and crossval.json beside them)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medseg.training.crossval import gather_folds, markdown_table, summary_rows
from medseg.utils.atomic import write_text_atomic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, help="experiment folder holding fold_0/, fold_1/, ...")
    parser.add_argument("--json", type=Path, help="where to write the table (default ROOT/crossval.json)")


def run(args: argparse.Namespace) -> int:
    rows = summary_rows(gather_folds(args.root))
    print(markdown_table(rows))
    out = args.json or args.root / "crossval.json"
    write_text_atomic(out, json.dumps(rows, indent=1) + "\n")
    print(f"written to {out}")
    return 0
