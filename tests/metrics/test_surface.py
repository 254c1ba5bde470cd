"""HD95, ASSD and NSD against a direct scipy computation and MONAI's own metric functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mask_perturbations import eroded, shifted
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice
from scipy import ndimage

from medseg.metrics.surface import surface_metrics, worst_distance_mm

TOLERANCE_MM = 2.0


def scipy_surface_metrics(prediction, reference, spacing, tolerance):
    """Independent: surfaces by erosion, distances by a Euclidean distance transform in mm."""

    def surface(mask):
        padded = np.pad(mask, 1)  # outside the array is background
        inner = ndimage.binary_erosion(padded)[(slice(1, -1),) * mask.ndim]
        return mask & ~inner

    edges_pred, edges_ref = surface(prediction), surface(reference)
    to_ref = ndimage.distance_transform_edt(~edges_ref, sampling=spacing)[edges_pred]
    to_pred = ndimage.distance_transform_edt(~edges_pred, sampling=spacing)[edges_ref]
    both = np.concatenate([to_ref, to_pred])
    hd95 = max(np.percentile(to_ref, 95), np.percentile(to_pred, 95))
    return {"hd95_mm": hd95, "assd_mm": both.mean(), "nsd": np.mean(both <= tolerance)}


def assert_matches_scipy(prediction, reference, spacing):
    ours = surface_metrics(prediction, reference, spacing, TOLERANCE_MM)
    expected = scipy_surface_metrics(prediction, reference, spacing, TOLERANCE_MM)
    assert ours["empty"] == "none"
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, rel=1e-5, abs=1e-5), key
    return ours


def test_hippocampus_eroded_and_shifted(hippocampus_labels):
    for mask in hippocampus_labels.values():
        for perturbed in (eroded(mask, (2, 2, 2)), shifted(mask, 2, axis=1)):
            for label in (1, 2):
                result = assert_matches_scipy(perturbed.array == label, mask.array == label, mask.spacing)
                assert result["hd95_mm"] > 0


def test_anisotropic_tumour_shift_along_the_thick_axis_counts_in_mm(tumour_mask):
    reference = tumour_mask.array == 1
    spacing = tumour_mask.spacing
    assert spacing[2] > 6 * spacing[0]
    through = assert_matches_scipy(shifted(tumour_mask, 1, axis=2).array == 1, reference, spacing)
    in_plane = assert_matches_scipy(shifted(tumour_mask, 1, axis=0).array == 1, reference, spacing)
    assert through["hd95_mm"] >= spacing[2] - 1e-3  # a one-slice shift is 6.5 mm, not 0.78 mm
    assert in_plane["hd95_mm"] < 2 * spacing[0]


def test_chest_xray_2d_with_anisotropic_pixels(chest_mask):
    reference = chest_mask.array == 1
    for perturbed in (eroded(chest_mask, (5, 5)), shifted(chest_mask, 7, axis=1)):
        assert_matches_scipy(perturbed.array == 1, reference, chest_mask.spacing)


def test_totalsegmentator_organs(totalseg):
    labels, _ = totalseg
    prediction = eroded(labels, (2, 1, 1))
    for label in (1, 5, 52):  # spleen, liver, aorta
        assert_matches_scipy(prediction.array == label, labels.array == label, labels.spacing)


def test_same_values_as_monai_metric_functions(hippocampus_labels):
    mask = hippocampus_labels["015"]
    prediction, reference = shifted(mask, 1, axis=0).array == 2, mask.array == 2
    spacing = [1.0, 1.5, 2.0]  # pretend anisotropic voxels
    ours = surface_metrics(prediction, reference, spacing, TOLERANCE_MM)
    pred, ref = (torch.from_numpy(m)[None, None].float() for m in (prediction, reference))
    hd95 = compute_hausdorff_distance(pred, ref, include_background=True, percentile=95, spacing=spacing)
    assd = compute_average_surface_distance(
        pred, ref, include_background=True, symmetric=True, spacing=spacing
    )
    nsd = compute_surface_dice(pred, ref, [TOLERANCE_MM], include_background=True, spacing=spacing)
    assert ours["hd95_mm"] == pytest.approx(float(hd95), rel=1e-5)
    assert ours["assd_mm"] == pytest.approx(float(assd), rel=1e-5)
    assert ours["nsd"] == pytest.approx(float(nsd), rel=1e-5)


def test_empty_mask_policy_gives_finite_documented_values(hippocampus_labels):
    mask = hippocampus_labels["025"]
    full, empty = mask.array == 1, np.zeros(mask.shape, dtype=bool)
    diagonal = float(np.sqrt(np.sum((np.array(mask.shape) * mask.spacing) ** 2)))
    assert worst_distance_mm(mask.shape, mask.spacing) == pytest.approx(diagonal)
    assert surface_metrics(empty, empty, mask.spacing, 1.0) == {
        "hd95_mm": 0.0, "assd_mm": 0.0, "nsd": 1.0, "empty": "both"
    }  # fmt: skip
    for prediction, reference, side in ((empty, full, "prediction"), (full, empty, "reference")):
        result = surface_metrics(prediction, reference, mask.spacing, 1.0)
        assert result == {"hd95_mm": diagonal, "assd_mm": diagonal, "nsd": 0.0, "empty": side}
    # MONAI alone returns no finite value here (inf or nan), which an average would drop or spoil.
    raw = compute_hausdorff_distance(
        torch.from_numpy(empty)[None, None].float(), torch.from_numpy(full)[None, None].float(), True
    )
    assert not np.isfinite(float(raw))
