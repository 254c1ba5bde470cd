"""Per-case metrics of a multi-organ label map: medseg's evaluate_case vs MONAI's metric functions.

Case: TotalSegmentator's 512 x 512 x 20 CT label map (31 organs) against a copy eroded in-plane. The
baseline computes the same numbers the usual way with MONAI: one-hot tensors of the whole volume and
``compute_dice``, ``compute_iou``, ``compute_hausdorff_distance(percentile=95)``,
``compute_average_surface_distance`` and ``compute_surface_dice``, each on its own. medseg crops every
class to its bounding box, computes the surface distances once per class and adds lesion-wise counts
and volumes, which the baseline does not.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import best_time, emit
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
    compute_surface_dice,
)
from scipy import ndimage

from medseg.io.image import LabelMap
from medseg.io.reader import read_image
from medseg.metrics.evaluate import evaluate_case

#: Default label map, relative to the repository root.
DEFAULT_LABELS = (
    Path(__file__).resolve().parents[1].parent
    / "shared/datasets/totalseg_ct_mr_examples/example_seg_dicom.nii.gz"
)
#: NSD tolerance in mm for both.
TOLERANCE_MM = 2.0


def monai_metrics(prediction: LabelMap, reference: LabelMap, labels: list[int]) -> dict[str, np.ndarray]:
    """The same overlap and surface metrics with MONAI's functions on whole-volume one-hot tensors."""
    pred = torch.stack([torch.from_numpy(prediction.array == v) for v in labels])[None].float()
    ref = torch.stack([torch.from_numpy(reference.array == v) for v in labels])[None].float()
    spacing = [float(s) for s in reference.spacing]
    return {
        "dice": compute_dice(pred, ref, include_background=True).numpy(),
        "iou": compute_iou(pred, ref, include_background=True).numpy(),
        "hd95": compute_hausdorff_distance(pred, ref, True, percentile=95, spacing=spacing).numpy(),
        "assd": compute_average_surface_distance(pred, ref, True, symmetric=True, spacing=spacing).numpy(),
        "nsd": compute_surface_dice(pred, ref, [TOLERANCE_MM] * len(labels), True, spacing=spacing).numpy(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medseg bench metrics", description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS, help="label map to evaluate")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each (best is kept)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    reference = read_image(args.labels, LabelMap)
    prediction = reference.with_array(ndimage.grey_erosion(reference.array, size=(3, 3, 1)))
    labels = [int(v) for v in np.unique(reference.array) if v != 0]
    names = {v: f"label_{v}" for v in labels}

    medseg_s = best_time(lambda: evaluate_case(prediction, reference, names, TOLERANCE_MM), args.repeats)
    start = time.perf_counter()  # the baseline takes minutes: timed once, and its results checked
    theirs = monai_metrics(prediction, reference, labels)
    baseline_s = time.perf_counter() - start
    ours = evaluate_case(prediction, reference, names, TOLERANCE_MM)
    for key, ours_key in (("dice", "dice"), ("hd95", "hd95_mm"), ("assd", "assd_mm"), ("nsd", "nsd")):
        mine = np.array([ours[names[v]][ours_key] for v in labels])
        if not np.allclose(mine, theirs[key][0], rtol=1e-4, atol=1e-4):
            print(f"MISMATCH in {key}: medseg and MONAI disagree", file=sys.stderr)
            return 1
    rows = [
        {"method": "medseg evaluate_case", "seconds": medseg_s, "classes": len(labels),
         "vs_baseline": medseg_s / baseline_s},
        {"method": "MONAI compute_* functions (baseline)", "seconds": baseline_s, "classes": len(labels),
         "vs_baseline": 1.0},
    ]  # fmt: skip
    emit("metrics", rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
