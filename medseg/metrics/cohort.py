"""Evaluate a set of prediction/reference pairs: read, check grids, compute per case, summarise."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medseg.errors import InputError
from medseg.io.image import LabelMap
from medseg.io.png import binarize_mask
from medseg.io.reader import read_image
from medseg.io.resample import resample_to
from medseg.metrics.aggregate import BOOTSTRAP_SAMPLES, aggregate
from medseg.metrics.evaluate import DEFAULT_NSD_TOLERANCE_MM, check_same_grid, evaluate_case
from medseg.metrics.pairing import CasePair

log = logging.getLogger(__name__)

#: The empty-mask policy in words, written into every JSON output.
EMPTY_MASK_POLICY = (
    "both masks empty: Dice, IoU, precision, sensitivity, NSD, lesion Dice and F1 = 1, HD95 = ASSD = 0 mm; "
    "only one empty: those scores = 0 and HD95 = ASSD = the diagonal of the image in mm; "
    "every case is kept in every average, and the 'empty' field says which rule applied"
)


def read_class_names(path: str | os.PathLike) -> dict[int, str]:
    """Class names from JSON: ``{"1": "liver"}``, nnU-Net's ``{"liver": 1}``, or either under ``"labels"``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(path, f"unreadable class names ({error})") from None
    labels = data.get("labels", data) if isinstance(data, dict) else None
    if not isinstance(labels, dict) or not labels:
        raise InputError(path, 'expected a JSON object of class names, e.g. {"1": "liver"}')
    try:
        if all(isinstance(value, int) for value in labels.values()):
            names = {int(value): str(name) for name, value in labels.items()}
        else:
            names = {int(value): str(name) for value, name in labels.items()}
    except ValueError:
        raise InputError(path, "class labels must be integers") from None
    return {value: name for value, name in sorted(names.items()) if value != 0}


def read_mask(path: Path, threshold: float | None = None) -> LabelMap:
    """A label map from any supported file; with `threshold`, label 1 where value > threshold.

    Negative labels are an InputError naming the file."""
    mask = read_image(path, LabelMap)
    mask.meta["source"] = path.name
    if threshold is not None:
        return binarize_mask(mask, threshold)
    if mask.array.dtype.kind == "i" and mask.array.min(initial=0) < 0:
        negative = ", ".join(str(v) for v in np.unique(mask.array[mask.array < 0])[:10].tolist())
        raise InputError(path, f"unexpected label value(s) {negative}; labels must be >= 0")
    return mask


def load_pair(pair: CasePair, resample: bool = False, threshold: float | None = None) -> tuple:
    """(prediction, reference) on the reference grid; GeometryError unless equal or `resample`."""
    prediction, reference = read_mask(pair.prediction, threshold), read_mask(pair.reference, threshold)
    if resample and not prediction.same_grid(reference):
        log.info("%s: prediction resampled onto the reference grid (nearest neighbour)", pair.name)
        prediction = resample_to(prediction, reference)
    check_same_grid(prediction, reference, pair.prediction, pair.reference)
    return prediction, reference


def present_classes(pairs: Sequence[CasePair], threshold: float | None) -> dict[int, str]:
    """``label_<v>`` for every non-zero label found in any prediction or reference."""
    found: set[int] = set()
    for pair in pairs:
        for path in (pair.prediction, pair.reference):
            found.update(int(v) for v in np.unique(read_mask(path, threshold).array) if v != 0)
    return {value: f"label_{value}" for value in sorted(found)}


def evaluate_cohort(
    pairs: Sequence[CasePair],
    class_names: Mapping[int, str] | None = None,
    tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
    resample: bool = False,
    threshold: float | None = None,
    seed: int = 0,
    samples: int = BOOTSTRAP_SAMPLES,
) -> dict:
    """Per-case metrics and their summary for `pairs`, with the settings and the empty-mask policy.

    Without `class_names`, every label present in any case is evaluated (named ``label_<v>``).
    """
    if not pairs:
        raise InputError(None, "nothing to evaluate: no prediction/reference pairs")
    names = dict(class_names) if class_names else present_classes(pairs, threshold)
    cases = {}
    for pair in pairs:
        prediction, reference = load_pair(pair, resample, threshold)
        cases[pair.name] = evaluate_case(prediction, reference, names, tolerance_mm)
    return {
        "settings": {
            "nsd_tolerance_mm": tolerance_mm,
            "resampled": resample,
            "threshold": threshold,
            "bootstrap_samples": samples,
            "seed": seed,
            "classes": {str(value): name for value, name in names.items()},
        },
        "empty_mask_policy": EMPTY_MASK_POLICY,
        "files": {
            pair.name: {"prediction": str(pair.prediction), "reference": str(pair.reference)}
            for pair in pairs
        },
        "cases": cases,
        "summary": aggregate(cases, samples, seed),
    }
