"""Overlap metrics per class: Dice and IoU, with one documented empty-mask policy.

Empty-mask policy (applied the same way everywhere, and visible in every result):
- both prediction and reference empty: Dice = IoU = 1.0 (the model agreed there is nothing),
  ``"empty": "both"``;
- only one of them empty: Dice = IoU = 0.0, ``"empty": "reference"`` or ``"prediction"``;
- neither empty: ``"empty": "none"``.
No case is dropped from an average because a mask was empty.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def overlap(prediction: np.ndarray, reference: np.ndarray) -> dict[str, float | str]:
    """Dice and IoU of two boolean masks, following the module's empty-mask policy."""
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from reference {reference.shape}")
    predicted, expected = int(prediction.sum()), int(reference.sum())
    if predicted == 0 and expected == 0:
        return {"dice": 1.0, "iou": 1.0, "empty": "both"}
    intersection = int(np.logical_and(prediction, reference).sum())
    union = predicted + expected - intersection
    empty = "reference" if expected == 0 else "prediction" if predicted == 0 else "none"
    return {"dice": 2.0 * intersection / (predicted + expected), "iou": intersection / union, "empty": empty}


def overlap_per_class(
    prediction: np.ndarray, reference: np.ndarray, class_names: Mapping[int, str]
) -> dict[str, dict[str, float | str]]:
    """`overlap` for every non-zero class in `class_names`, keyed by class name."""
    return {
        name: overlap(prediction == value, reference == value)
        for value, name in class_names.items()
        if value != 0
    }
