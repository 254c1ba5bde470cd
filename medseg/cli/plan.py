"""`medseg plan DATASET`: fingerprint a dataset and write plans.json (spacing, patch, batch, intensity)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset", type=Path, help="dataset folder (MSD/nnU-Net, 2D image/mask, DICOM) or manifest"
    )
    parser.add_argument("--out", type=Path, default=Path("plans.json"), help="where to write the plan")
    parser.add_argument(
        "--modality", help="modality of every channel (CT, MR, XRAY...) when the dataset lacks it"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from medseg.data.datasets import open_dataset
    from medseg.data.fingerprint import compute_fingerprint
    from medseg.data.planner import Planner, save_plan

    dataset = open_dataset(args.dataset, modality=args.modality)
    fingerprint = compute_fingerprint(dataset, progress=not args.no_progress)
    info = {
        "name": dataset.name,
        "source": str(args.dataset.resolve()),
        "layout": dataset.layout,
        "num_cases": len(dataset.cases),
        "labels": {str(value): name for value, name in dataset.label_names.items()},
        "modalities": dataset.modalities,
    }
    plan = Planner(fingerprint).plan(info)
    save_plan(plan, args.out)
    schemes = ", ".join(f"{n['modality']}: {n['scheme']}" for n in plan.normalization)
    print(f"{dataset.name}: {len(dataset.cases)} cases, {plan.dim}D")
    print(f"  target spacing {plan.target_spacing} mm, patch {plan.patch_size}, batch {plan.batch_size}")
    print(f"  normalisation {schemes}")
    print(f"plan written to {args.out}")
    return 0
