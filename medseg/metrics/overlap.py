"""Overlap metrics per class: Dice, IoU, precision, sensitivity, with one documented empty-mask policy.

Empty-mask policy (applied the same way everywhere, and visible in every result):
- both prediction and reference empty: every score is 1.0 (the model agreed there is nothing),
  ``"empty": "both"``;
- only one of them empty: every score is 0.0 (also the 0/0 ones: precision of an empty prediction,
  sensitivity against an empty reference), ``"empty": "reference"`` or ``"prediction"``;
- neither empty: ``"empty": "none"``.
No case is dropped from an average because a mask was empty.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def overlap(prediction: np.ndarray, reference: np.ndarray) -> dict[str, float | str]:
    """Dice, IoU, precision and sensitivity of two boolean masks, following the empty-mask policy."""
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from reference {reference.shape}")
    predicted, expected = int(prediction.sum()), int(reference.sum())
    if predicted == 0 and expected == 0:
        return {"dice": 1.0, "iou": 1.0, "precision": 1.0, "sensitivity": 1.0, "empty": "both"}
    intersection = int(np.logical_and(prediction, reference).sum())
    union = predicted + expected - intersection
    empty = "reference" if expected == 0 else "prediction" if predicted == 0 else "none"
    return {
        "dice": 2.0 * intersection / (predicted + expected),
        "iou": intersection / union,
        "precision": intersection / predicted if predicted else 0.0,
        "sensitivity": intersection / expected if expected else 0.0,
        "empty": empty,
    }


def overlap_per_class(
    prediction: np.ndarray, reference: np.ndarray, class_names: Mapping[int, str]
) -> dict[str, dict[str, float | str]]:
    """`overlap` for every non-zero class in `class_names`, keyed by class name."""
    return {
        name: overlap(prediction == value, reference == value)
        for value, name in class_names.items()
        if value != 0
    }
