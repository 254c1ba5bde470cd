"""Overlap scores against MONAI, lesion-wise matching on real and constructed lesions, and summaries."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from mask_perturbations import eroded, shifted
from monai.metrics import compute_dice, compute_iou, get_confusion_matrix

from medseg.metrics.aggregate import CLASS_MEAN, aggregate, summarise
from medseg.metrics.components import label_components
from medseg.metrics.lesions import lesion_metrics
from medseg.metrics.overlap import overlap


def _monai_scores(prediction: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    pred, ref = (torch.from_numpy(m)[None, None].float() for m in (prediction, reference))
    tp, fp, _, fn = get_confusion_matrix(pred, ref, include_background=True)[0, 0].tolist()
    return {
        "dice": float(compute_dice(pred, ref, include_background=True)),
        "iou": float(compute_iou(pred, ref, include_background=True)),
        "precision": tp / (tp + fp),
        "sensitivity": tp / (tp + fn),
    }


def test_overlap_matches_monai_on_real_masks(hippocampus_labels, chest_mask, totalseg):
    pairs = [(eroded(m, (2, 2, 2)), m, 1) for m in hippocampus_labels.values()]
    pairs += [
        (shifted(chest_mask, 9, axis=0), chest_mask, 1),
        (eroded(totalseg[0], (3, 3, 1)), totalseg[0], 5),
    ]
    for prediction, reference, label in pairs:
        ours = overlap(prediction.array == label, reference.array == label)
        expected = _monai_scores(prediction.array == label, reference.array == label)
        assert ours["empty"] == "none"
        for key, value in expected.items():
            assert ours[key] == pytest.approx(value, rel=1e-6), key
        for key, value in _numpy_scores(prediction.array == label, reference.array == label).items():
            assert ours[key] == pytest.approx(value, rel=1e-9), key


def _numpy_scores(prediction: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """The four overlap scores from voxel counts, written out."""
    tp = np.count_nonzero(prediction & reference)
    fp, fn = np.count_nonzero(prediction & ~reference), np.count_nonzero(~prediction & reference)
    return {
        "dice": 2 * tp / (2 * tp + fp + fn),
        "iou": tp / (tp + fp + fn),
        "precision": tp / (tp + fp),
        "sensitivity": tp / (tp + fn),
    }


def _sitk_lesions(prediction: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """The documented lesion rule, written lesion by lesion on SimpleITK's fully connected components."""

    def components(mask: np.ndarray) -> list[set[int]]:
        labels = sitk.GetArrayFromImage(
            sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), True)
        )
        flat = labels.ravel()
        return [set(np.flatnonzero(flat == n).tolist()) for n in range(1, int(flat.max()) + 1)]

    refs, preds = components(reference), components(prediction)
    dices, used = [], set()
    for ref in refs:
        matched = [n for n, pred in enumerate(preds) if ref & pred]
        used.update(matched)
        union = set().union(*(preds[n] for n in matched))
        dices.append(2 * len(ref & union) / (len(ref) + len(union)))
    detected = sum(d > 0 for d in dices)
    false = len(preds) - len(used)
    return {
        "lesions_ref": len(refs),
        "lesions_pred": len(preds),
        "detected": detected,
        "missed": len(refs) - detected,
        "false": false,
        "lesion_dice": sum(dices) / (len(refs) + false),
        "lesion_f1": 2 * detected / (2 * detected + len(refs) - detected + false),
    }


def test_lesion_metrics_match_an_independent_count_on_perturbed_real_masks(totalseg, tumour_mask):
    """TotalSegmentator organs (eroded until some split, shifted, with a planted blob) and a real tumour."""
    organs = totalseg[0]
    planted = np.zeros(organs.shape, bool)
    planted[5:9, 5:9, 2:4] = True  # a false lesion away from the organs
    present = [v for v in np.unique(organs.array) if v > 0]
    cases = []
    for value in present[:: max(1, len(present) // 8)]:
        reference = organs.array == value
        cases.append((eroded(organs, (9, 9, 3)).array == value, reference))
        cases.append(((shifted(organs, 6, axis=1).array == value) | planted, reference))
    tumour = tumour_mask.array == 1
    cases.append((eroded(tumour_mask, (5, 5, 1)).array == 1, tumour))
    assert any(_sitk_lesions(p, r)["lesions_pred"] > _sitk_lesions(p, r)["lesions_ref"] for p, r in cases)
    for prediction, reference in cases:
        ours, expected = lesion_metrics(prediction, reference), _sitk_lesions(prediction, reference)
        for key, value in expected.items():
            assert ours[key] == pytest.approx(value, rel=1e-9), key


def test_overlap_empty_policy():
    empty, full = np.zeros((4, 4), bool), np.ones((4, 4), bool)
    assert overlap(empty, empty) == {
        "dice": 1.0,
        "iou": 1.0,
        "precision": 1.0,
        "sensitivity": 1.0,
        "empty": "both",
    }
    for prediction, reference, side in ((empty, full, "prediction"), (full, empty, "reference")):
        scores = overlap(prediction, reference)
        assert scores["empty"] == side
        assert [scores[k] for k in ("dice", "iou", "precision", "sensitivity")] == [0.0] * 4


def test_real_tumour_with_its_small_component_missed(tumour_mask):
    reference = tumour_mask.array == 1
    components, count = label_components(reference)
    sizes = np.bincount(components.ravel())[1:]
    assert count == 2
    prediction = components == (np.argmax(sizes) + 1)  # only the larger component found
    result = lesion_metrics(prediction, reference)
    assert (result["lesions_ref"], result["detected"], result["missed"], result["false"]) == (2, 1, 1, 0)
    assert result["lesion_f1"] == pytest.approx(2 / 3)
    assert result["lesion_dice"] == pytest.approx(0.5)  # (1 + 0) / 2


def test_constructed_lesions_count_partial_match_and_false_lesion():
    reference = np.zeros((30, 30, 30), bool)
    reference[2:6, 2:6, 2:6] = True  # A, 64 voxels: found exactly
    reference[10:14, 10:14, 10:14] = True  # B, 64 voxels: found half
    reference[20:22, 20:22, 20:22] = True  # C, 8 voxels: missed
    prediction = np.zeros_like(reference)
    prediction[2:6, 2:6, 2:6] = True
    prediction[10:12, 10:14, 10:14] = True  # 32 voxels inside B
    prediction[25:28, 2:4, 2:4] = True  # false lesion
    prediction[16, 16, 16] = prediction[17, 17, 17] = True  # corner contact: one more false lesion
    result = lesion_metrics(prediction, reference)
    assert (result["lesions_ref"], result["lesions_pred"]) == (3, 4)
    assert (result["detected"], result["missed"], result["false"]) == (2, 1, 2)
    dice_b = 2 * 32 / (64 + 32)
    assert result["lesion_dice"] == pytest.approx((1.0 + dice_b + 0.0) / (3 + 2))
    assert result["lesion_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))


def test_lesion_empty_policy():
    empty, lesion = np.zeros((5, 5), bool), np.eye(5, dtype=bool)  # diagonal: one 8-connected lesion
    assert lesion_metrics(empty, empty)["lesion_dice"] == 1.0
    assert lesion_metrics(lesion, lesion)["lesions_ref"] == 1
    assert lesion_metrics(lesion, empty)["false"] == 1 and lesion_metrics(lesion, empty)["lesion_f1"] == 0.0
    assert (
        lesion_metrics(empty, lesion)["missed"] == 1 and lesion_metrics(empty, lesion)["lesion_dice"] == 0.0
    )


def test_summary_statistics_and_seeded_bootstrap():
    values = np.random.default_rng(3).uniform(0.5, 1.0, size=25)
    stats = summarise(values, samples=500, seed=7)
    assert stats["mean"] == pytest.approx(values.mean()) and stats["median"] == pytest.approx(
        np.median(values)
    )
    assert stats["std"] == pytest.approx(values.std(ddof=1)) and stats["n"] == 25
    standard_error = values.std(ddof=1) / np.sqrt(25)
    assert stats["ci95_low"] < values.mean() < stats["ci95_high"]
    assert stats["ci95_high"] - stats["ci95_low"] == pytest.approx(2 * 1.96 * standard_error, rel=0.25)
    assert summarise(values, samples=500, seed=7) == stats
    assert summarise(values, samples=500, seed=8)["ci95_low"] != stats["ci95_low"]
    with pytest.raises(ValueError, match="finite"):
        summarise([0.5, float("nan")])


def test_aggregate_counts_empty_cases_and_keeps_them_in_the_mean():
    cases = {
        "a": {
            "x": {"label": 1, "dice": 0.8, "empty": "none"},
            "y": {"label": 2, "dice": 1.0, "empty": "both"},
        },
        "b": {
            "x": {"label": 1, "dice": 0.0, "empty": "prediction"},
            "y": {"label": 2, "dice": 0.6, "empty": "none"},
        },
    }
    summary = aggregate(cases, samples=100)
    assert summary["x"]["dice"]["mean"] == pytest.approx(0.4) and summary["x"]["dice"]["n"] == 2
    assert summary["x"]["empty"] == {"both": 0, "prediction": 1, "reference": 0}
    assert summary["y"]["empty"]["both"] == 1
    assert summary[CLASS_MEAN]["dice"]["mean"] == pytest.approx((0.4 + 0.8) / 2)
