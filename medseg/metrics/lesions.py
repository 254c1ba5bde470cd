"""Lesion-wise detection and Dice, in the manner of the BraTS 2023 lesion-wise metrics.

Lesions are the connected components of each mask (full connectivity: 26 in 3D, 8 in 2D).

Matching rule: a reference lesion is *detected* when at least `MIN_OVERLAP_VOXELS` of its voxels are
labelled by one predicted lesion; it is *missed* otherwise. A predicted lesion that matches no reference
lesion is a *false* lesion. A predicted lesion touching two reference lesions matches both (as in BraTS).

* lesion Dice of a reference lesion: Dice between it and the union of the predicted lesions matched to
  it (0 when missed);
* lesion-wise Dice: the sum of those Dice values divided by (reference lesions + false lesions), so
  every false lesion counts as a lesion with Dice 0;
* lesion F1: 2·detected / (2·detected + missed + false).

BraTS also removes lesions below a size threshold and dilates reference lesions before matching; medseg
does neither (every component counts, overlap is voxel overlap). Empty-mask policy as in
`medseg.metrics.overlap`: no lesion in either mask gives lesion Dice = F1 = 1; lesions in only one of
them give 0.
"""

from __future__ import annotations

import numpy as np

from medseg.metrics.components import label_components

#: Voxels a predicted lesion must share with a reference lesion to detect it.
MIN_OVERLAP_VOXELS = 1


def lesion_metrics(prediction: np.ndarray, reference: np.ndarray) -> dict[str, float | int | str]:
    """Lesion counts (reference, predicted, detected, missed, false), lesion-wise Dice and F1."""
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from reference {reference.shape}")
    ref_labels, n_ref = label_components(reference)
    pred_labels, n_pred = label_components(prediction)
    counts: dict[str, float | int | str] = {"lesions_ref": n_ref, "lesions_pred": n_pred}
    if n_ref == 0 and n_pred == 0:
        return {**counts, "detected": 0, "missed": 0, "false": 0, "lesion_dice": 1.0, "lesion_f1": 1.0}
    both = (ref_labels > 0) & (pred_labels > 0)
    keys = ref_labels[both].astype(np.int64) * (n_pred + 1) + pred_labels[both]
    keys, shared = np.unique(keys, return_counts=True)
    matched = shared >= MIN_OVERLAP_VOXELS
    pairs = np.stack(np.divmod(keys[matched], n_pred + 1))  # (reference lesion, predicted lesion)
    shared = shared[matched]
    ref_sizes = np.bincount(ref_labels.ravel(), minlength=n_ref + 1)[1:]
    pred_sizes = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)
    intersection, matched_size = np.zeros(n_ref), np.zeros(n_ref)
    np.add.at(intersection, pairs[0] - 1, shared)
    np.add.at(matched_size, pairs[0] - 1, pred_sizes[pairs[1]])
    detected = int(np.count_nonzero(matched_size))
    false = n_pred - len(np.unique(pairs[1]))
    missed = n_ref - detected
    dice_sum = float(np.sum(2.0 * intersection / (ref_sizes + matched_size)))
    return {
        **counts,
        "detected": detected,
        "missed": missed,
        "false": false,
        "lesion_dice": dice_sum / (n_ref + false),
        "lesion_f1": 2.0 * detected / (2.0 * detected + missed + false),
    }
