"""`medseg demo`: the whole product path on a synthetic CT cohort, offline, in a few minutes."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("medseg-demo"), help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--train-cases", type=int, default=8, help="phantom cases to train on (default: %(default)s)"
    )
    parser.add_argument(
        "--steps", type=int, default=500, help="training steps, the demo's budget (default: %(default)s)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=900.0,
        help="safety cap on training time in seconds; reaching it is reported (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the cohort and training")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    from medseg.demo import DemoSettings, run_demo

    settings = DemoSettings(
        out_dir=args.out,
        train_cases=args.train_cases,
        max_steps=args.steps,
        max_seconds=args.max_seconds,
        seed=args.seed,
    )
    summary = run_demo(settings, progress=not args.no_progress)
    print()
    training = summary["training"]
    steps, seconds = training["steps"], training["seconds"]
    print(f"Done in {summary['seconds']:.0f} s ({steps} training steps in {seconds:.0f} s).")
    if training["cut_short_by_time_cap"]:
        print(f"Training was cut short by the time cap: {steps} of {training['planned_steps']} steps.")
    print("Dice and IoU per class on the unseen case(s):")
    for name, dice in summary["mean_dice"].items():
        print(f"  {name:10s} Dice {dice:.3f}  IoU {summary['mean_iou'][name]:.3f}")
    run_folder = Path(summary["checkpoint"]).parent
    print(f"Model: {summary['checkpoint']}  (medseg infer STUDY --model {run_folder})")
    for folder in summary["results"]:
        print(f"Results: {folder}  (mask.nii.gz, seg.dcm, overlays/, report.html, result.json)")
    print(f"Summary: {Path(args.out).resolve() / 'summary.json'}")
    return 0
