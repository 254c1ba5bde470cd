"""`medseg demo`: the whole product path on a synthetic CT cohort, offline, in about three minutes."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "demo"
HELP = "train on a synthetic CT cohort and produce a second opinion for an unseen DICOM folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("medseg-demo"), help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--train-cases", type=int, default=8, help="phantom cases to train on (default: %(default)s)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=150.0,
        help="training time budget in seconds (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the cohort and training")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    from medseg.demo import DemoSettings, run_demo

    settings = DemoSettings(
        out_dir=args.out, train_cases=args.train_cases, max_seconds=args.max_seconds, seed=args.seed
    )
    summary = run_demo(settings, progress=not args.no_progress)
    print()
    training = summary["training"]
    steps, seconds = training["steps"], training["seconds"]
    print(f"Done in {summary['seconds']:.0f} s ({steps} training steps in {seconds:.0f} s).")
    print("Mean Dice per class on the unseen case(s):")
    for name, dice in summary["mean_dice"].items():
        print(f"  {name:10s} {dice:.3f}")
    print(f"Model checkpoint: {summary['checkpoint']}")
    for folder in summary["results"]:
        print(f"Results: {folder}  (mask.nii.gz, overlays/, report.md, report.json)")
    print(f"Summary: {Path(args.out).resolve() / 'summary.json'}")
    return 0
