"""Surface-distance metrics in millimetres: HD95, ASSD and normalised surface Dice (NSD), via MONAI.

The surfaces and distances come from MONAI's ``get_edge_surface_distance``, computed once per mask pair;
the three metrics are then MONAI's formulas (``compute_hausdorff_distance`` with percentile 95,
``compute_average_surface_distance`` symmetric, ``compute_surface_dice``), which would each compute the
distances again. The tests check the results against those MONAI functions and against a direct scipy
computation. Definitions:
* the surface of a mask is its foreground voxels with a background face-neighbour (the mask minus its
  erosion); voxels outside the array count as background;
* distances run from every surface voxel of one mask to the nearest surface voxel of the other, between
  voxel centres, in mm with the image spacing (anisotropic spacing is honoured);
* HD95 = the larger of the two directed 95th percentiles (linear interpolation);
* ASSD = the mean of all distances of both directions together;
* NSD at tolerance τ = the fraction of surface voxels of both masks within τ mm of the other surface.

Empty-mask policy, the same as `medseg.metrics.overlap` and visible in the ``empty`` field:
* both empty: HD95 = ASSD = 0 mm and NSD = 1;
* only one empty: NSD = 0 and HD95 = ASSD = the diagonal of the image's field of view in mm
  (`worst_distance_mm`), the largest distance two points of the image can have. It is finite, so
  averages stay defined and nothing is silently dropped, and it is the worst value a case can get.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Percentile of the directed surface distances reported as the robust Hausdorff distance.
HAUSDORFF_PERCENTILE = 95.0


def _edge_distances(
    prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each mask's surface voxels to the other's surface, by MONAI's edge code.

    Torch runs on one thread here: MONAI's edge code is many small reductions, which torch's thread pool
    made 3x slower in total on a shared 2-core CPU (measured on a 32-class TotalSegmentator map). Torch
    and MONAI are imported here, so reading the metrics (and the command line's help) stays quick.
    """
    import torch
    from monai.metrics.utils import get_edge_surface_distance

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # A mask covering the whole array skips MONAI's own cropping (slow, and callers crop already);
        # outside the array still counts as background, as with MONAI's padded crop.
        _, (to_reference, to_prediction), _ = get_edge_surface_distance(
            torch.from_numpy(np.ascontiguousarray(prediction)),
            torch.from_numpy(np.ascontiguousarray(reference)),
            spacing=[float(s) for s in spacing],
            symmetric=True,
            mask=torch.ones(prediction.shape, dtype=torch.bool),
        )
    finally:
        torch.set_num_threads(threads)
    return to_reference.double().numpy(), to_prediction.double().numpy()


def worst_distance_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Diagonal of the field of view in mm: the distance reported when only one mask is empty."""
    return float(np.linalg.norm(np.asarray(shape, dtype=np.float64) * np.asarray(spacing, dtype=np.float64)))


def surface_metrics(
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing: Sequence[float],
    tolerance_mm: float,
    worst_mm: float | None = None,
) -> dict[str, float | str]:
    """HD95, ASSD (mm) and NSD at `tolerance_mm` of two boolean masks, with the empty-mask policy.

    `worst_mm` is the distance reported when only one mask is empty; by default the diagonal of the
    arrays given (pass the whole image's when the masks are cropped).
    """
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from reference {reference.shape}")
    if len(spacing) != prediction.ndim:
        raise ValueError(f"need {prediction.ndim} spacings, got {list(spacing)}")
    prediction, reference = prediction.astype(bool), reference.astype(bool)
    has_prediction, has_reference = bool(prediction.any()), bool(reference.any())
    if not has_prediction and not has_reference:
        return {"hd95_mm": 0.0, "assd_mm": 0.0, "nsd": 1.0, "empty": "both"}
    if not has_prediction or not has_reference:
        worst = worst_distance_mm(prediction.shape, spacing) if worst_mm is None else float(worst_mm)
        empty = "prediction" if not has_prediction else "reference"
        return {"hd95_mm": worst, "assd_mm": worst, "nsd": 0.0, "empty": empty}
    to_reference, to_prediction = _edge_distances(prediction, reference, spacing)
    quantile = HAUSDORFF_PERCENTILE / 100.0
    hd95 = max(float(np.quantile(d, quantile)) for d in (to_reference, to_prediction))
    both = np.concatenate([to_reference, to_prediction])
    return {
        "hd95_mm": hd95,
        "assd_mm": float(both.mean()),
        "nsd": float((both <= tolerance_mm).mean()),
        "empty": "none",
    }
