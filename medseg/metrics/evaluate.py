"""All metrics of one case: a predicted and a reference label map on the same grid, per class.

Per class: overlap (Dice, IoU, precision, sensitivity), surface distances (HD95, ASSD, NSD), lesion-wise
counts and scores, and the volumes (mL; area in cm² for 2D images) with their difference
(prediction - reference). Each class entry carries ``empty`` ("none", "both", "prediction" or
"reference") so the empty-mask policy of `medseg.metrics.overlap` is visible next to the numbers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from medseg.errors import GeometryError
from medseg.io.image import Image, LabelMap
from medseg.metrics.lesions import lesion_metrics
from medseg.metrics.overlap import overlap
from medseg.metrics.surface import surface_metrics, worst_distance_mm
from medseg.metrics.units import size_key, voxel_size

#: Default tolerance of the normalised surface Dice, in mm.
DEFAULT_NSD_TOLERANCE_MM = 2.0
#: Voxel centres and directions of two grids must agree within this fraction of the smallest voxel size.
GRID_TOLERANCE_VOXELS = 0.01


def check_same_grid(
    prediction: Image, reference: Image, prediction_path: str | os.PathLike, reference_path: str | os.PathLike
) -> None:
    """Raise GeometryError naming both files unless the two images share shape and voxel positions."""
    tolerance = GRID_TOLERANCE_VOXELS * float(min(reference.spacing))
    if prediction.ndim == reference.ndim and prediction.same_grid(reference, atol_mm=tolerance):
        return
    raise GeometryError(
        prediction_path,
        f"grid ({describe_grid(prediction)}) differs from reference {os.fspath(reference_path)} "
        f"({describe_grid(reference)}); use --resample to put the prediction on its grid",
    )


def describe_grid(image: Image) -> str:
    """Shape, spacing, orientation and origin of a grid, for error messages."""
    spacing = np.round(image.spacing, 4).tolist()
    origin = np.round(image.origin, 2).tolist()
    return f"shape {image.shape}, spacing {spacing}, orientation {image.orientation}, origin {origin}"


def _class_boxes(prediction: np.ndarray, reference: np.ndarray, labels: list[int]) -> dict[int, tuple]:
    """Per label, the joint bounding box in both arrays plus one voxel (a single voxel when absent).

    Every metric is the same on the box as on the whole array, and much cheaper to compute.
    """
    found = {}
    for array in (prediction, reference):
        kept = np.where(np.isin(array, labels), array, 0).astype(np.int64)
        found[id(array)] = ndimage.find_objects(kept, max_label=max(labels, default=0))
    boxes = {}
    for value in labels:
        parts = [found[id(a)][value - 1] for a in (prediction, reference) if found[id(a)][value - 1]]
        if not parts:
            boxes[value] = tuple(slice(0, 1) for _ in reference.shape)
            continue
        boxes[value] = tuple(
            slice(max(min(p[axis].start for p in parts) - 1, 0), max(p[axis].stop for p in parts) + 1)
            for axis in range(reference.ndim)
        )
    return boxes


def evaluate_case(
    prediction: LabelMap,
    reference: LabelMap,
    class_names: Mapping[int, str],
    tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
) -> dict[str, dict]:
    """Metrics per class name (non-zero classes of `class_names`) of two label maps on one grid."""
    if not prediction.same_grid(reference, atol_mm=GRID_TOLERANCE_VOXELS * float(min(reference.spacing))):
        raise ValueError("prediction and reference must share one grid; see check_same_grid")
    unit = size_key(reference)
    per_voxel = voxel_size(reference)
    worst = worst_distance_mm(reference.shape, reference.spacing)
    labels = [int(value) for value in class_names if int(value) != 0]
    boxes = _class_boxes(prediction.array, reference.array, labels)
    results = {}
    for value, name in class_names.items():
        if value == 0:
            continue
        box = boxes[int(value)]
        predicted, expected = prediction.array[box] == value, reference.array[box] == value
        entry: dict = {"label": int(value), **overlap(predicted, expected)}
        entry.update(surface_metrics(predicted, expected, reference.spacing, tolerance_mm, worst))
        entry.update(lesion_metrics(predicted, expected))
        pred_size, ref_size = float(predicted.sum()) * per_voxel, float(expected.sum()) * per_voxel
        stem, suffix = unit.split("_")
        entry[f"{stem}_pred_{suffix}"] = pred_size
        entry[f"{stem}_ref_{suffix}"] = ref_size
        entry[f"{stem}_diff_{suffix}"] = pred_size - ref_size
        results[name] = entry
    return results
