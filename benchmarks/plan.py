"""Fingerprinting a dataset for `medseg plan`: medseg vs a bare SimpleITK loop doing the same reading.

The baseline reads every image and label with SimpleITK and collects the foreground intensities and
label counts, with no checks: the floor for any fingerprint. medseg adds dataset parsing, grid and
label checks, float32 casting and sampling. Both are timed as best of `--repeats` after a warm-up,
so both see the files in the page cache.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from _common import best_time, emit

from medseg.data.datasets import open_dataset
from medseg.data.fingerprint import compute_fingerprint

#: Default dataset, relative to the repository root.
DEFAULT_DATASET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "msd_hippocampus"


def sitk_loop(records: list[dict]) -> float:
    """Read each case with SimpleITK and pool the foreground intensities; returns their mean."""
    pooled, counts = [], np.zeros(256, dtype=np.int64)
    for record in records:
        image = sitk.GetArrayFromImage(sitk.ReadImage(record["image"]))
        label = sitk.GetArrayFromImage(sitk.ReadImage(record["label"])).astype(np.int64)
        pooled.append(image[label > 0])
        counts += np.bincount(label.ravel(), minlength=256)[:256]
    return float(np.concatenate(pooled).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medseg bench plan", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="dataset folder or manifest")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (best is kept)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    dataset = open_dataset(args.dataset)
    n = len(dataset.cases)
    medseg_s = best_time(lambda: compute_fingerprint(dataset, progress=False), args.repeats)
    baseline_s = best_time(lambda: sitk_loop(dataset.cases), args.repeats)
    rows = [
        {
            "method": "medseg compute_fingerprint",
            "seconds": medseg_s,
            "cases_per_s": n / medseg_s,
            "vs_baseline": medseg_s / baseline_s,
        },
        {
            "method": "SimpleITK loop (baseline)",
            "seconds": baseline_s,
            "cases_per_s": n / baseline_s,
            "vs_baseline": 1.0,
        },
    ]
    print(f"{dataset.name}: {n} cases")
    emit("plan", rows, args.json)
    return 0
