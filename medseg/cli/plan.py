"""`medseg plan DATASET`: fingerprint a dataset and write plans.json (spacing, patch, batch, intensity)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from medseg.cli.train import dataset_arguments, json_labels

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset", type=Path, help="dataset folder (MSD/nnU-Net, 2D image/mask, DICOM) or manifest"
    )
    parser.add_argument("--out", type=Path, default=Path("plans.json"), help="where to write the plan")
    dataset_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from medseg.data.datasets import open_dataset
    from medseg.data.fingerprint import compute_fingerprint
    from medseg.data.planner import Planner, save_plan

    labels = json_labels(args.labels)
    dataset = open_dataset(args.dataset, args.modality, labels, args.mask_suffix, args.mask_threshold)
    fingerprint = compute_fingerprint(dataset, progress=not args.no_progress)
    plan = Planner(fingerprint).plan(dataset.describe(args.dataset), dims=args.dims)
    save_plan(plan, args.out)
    print(summary(plan, fingerprint))
    print(f"plan written to {args.out}")
    return 0


#: What `medseg.io.masks` did to a label file, in words.
INTERPRETATIONS = {
    "0/255": "0/255 masks read as 0/1",
    "anti-aliased": "anti-aliased 8-bit masks binarised at > 127",
    "thresholded": "binarised at the given --mask-threshold",
    "threshold_not_applied": "values below the --mask-threshold kept as labels (it would have emptied them)",
}


def summary(plan, fingerprint: dict) -> str:
    """The integrity table of a planned dataset: sizes, classes with voxels and cases, what was read how,
    and what looks wrong."""
    schemes = ", ".join(f"{n['modality']}: {n['scheme']}" for n in plan.normalization)
    shapes = fingerprint["median_shape"]
    lines = [
        f"{plan.dataset['name']}: {fingerprint['num_cases']} cases, {plan.dim}D, modality {schemes}",
        f"  median size {[round(s) for s in shapes]} voxels, median spacing "
        f"{[round(s, 3) for s in fingerprint['median_spacing']]} mm",
        f"  target spacing {plan.target_spacing} mm, patch {plan.patch_size}, batch {plan.batch_size}",
        *([f"  {plan.network_dims}D network: {plan.slice_reason}"] if plan.slice_reason else []),
        "  class                     value  cases  share of foreground",
    ]
    for value, entry in fingerprint["classes"].items():
        name = plan.dataset["labels"].get(value, entry["name"])
        share = "" if entry["foreground_fraction"] is None else f"{entry['foreground_fraction']:.3f}"
        lines.append(f"  {name:25s} {value:>5s}  {entry['cases_present']:>5d}  {share}")
    for kind, count in fingerprint.get("label_interpretation", {}).items():
        lines.append(f"  note: {count} label file(s): {INTERPRETATIONS.get(kind, kind)}")
    lines += [f"  warning: {text}" for text in fingerprint.get("warnings", [])]
    return "\n".join(lines)
