"""Evaluate a set of prediction/reference pairs: read, check grids, compute per case, summarise."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medseg.errors import InputError
from medseg.io.annotations import annotation_kind
from medseg.io.image import Image, LabelMap
from medseg.io.masks import MaskReading, interpret_mask
from medseg.io.reader import read_image
from medseg.io.resample import reorient, resample_to
from medseg.io.rtstruct import rtstruct_labels
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


def read_labels(path: Path, grid: Image | None = None) -> LabelMap:
    """A label map from any supported file, values as stored; negative labels are an InputError. An
    RTSTRUCT is rasterised onto `grid` (its ROI numbers as values, `medseg.io.rtstruct.rtstruct_labels`)."""
    kind = annotation_kind(path)
    if kind == "rtstruct":
        if grid is None:
            raise InputError(
                path, "an RTSTRUCT holds contours, not voxels: it needs the image grid it outlines"
            )
        return rtstruct_labels(path, grid)
    if kind == "seg" and grid is not None:  # onto the series it references, frame by frame
        from medseg.io.seg import read_seg  # highdicom: imported when a SEG is read

        return read_seg(path, grid)
    mask = read_image(path, LabelMap)
    mask.meta["source"] = path.name
    if mask.array.dtype.kind == "i" and mask.array.min(initial=0) < 0:
        negative = ", ".join(str(v) for v in np.unique(mask.array[mask.array < 0])[:10].tolist())
        raise InputError(path, f"unexpected label value(s) {negative}; labels must be >= 0")
    return mask


def read_prediction(path: Path) -> MaskReading:
    """The AI's mask as labels: never thresholded (a 0/1 mask stays 0/1); an 8-bit picture of a mask
    (0/255, anti-aliased), as other tools write them, is recognised and binarised with a note."""
    return _noted(path, interpret_mask(read_labels(path)))


def read_reference(
    path: Path,
    threshold: float | None = None,
    mapping: Mapping[str, int] | None = None,
    grid: Image | None = None,
) -> MaskReading:
    """The clinician's mask as labels: binarised at `threshold` if given; a 0/255 or anti-aliased 8-bit
    picture of a mask is recognised and binarised (`medseg.io.masks`), with a note saying so. With
    `mapping` its stored values (thresholded first if asked), or a SEG's segment labels, are translated
    onto the model's classes instead (`map_labels`)."""
    if mapping:  # the user says what each stored value is: no picture rules on top of that
        reading = MaskReading(read_labels(path, grid))
        if threshold is not None:
            reading = interpret_mask(reading.labels, threshold)
        return _noted(path, map_labels(reading, mapping, path))
    return _noted(path, interpret_mask(read_labels(path, grid), threshold))


def map_labels(reading: MaskReading, mapping: Mapping[str, int], path: Path) -> MaskReading:
    """The reference's labels translated by `mapping` (``{"3": 1, "Lung-Left": 2}``: a value or a SEG
    segment label, any case, to a model class); values it does not name become background, and the note
    says which."""
    labels = reading.labels
    by_label = {str(text).lower(): number for number, text in labels.meta.get("segment_labels", {}).items()}
    lookup = np.zeros(int(labels.array.max(initial=0)) + 1, dtype=np.int64)
    named = set()
    for key, target in mapping.items():
        text = str(key).strip()
        value = int(text) if text.isdigit() else by_label.get(text.lower())
        if value is None:
            raise InputError(
                path, f"--map names {key!r}, which is neither a label value nor one of its segments"
            )
        if value < lookup.size:
            lookup[value] = int(target)
            named.add(value)
    present = {int(v) for v in np.unique(labels.array) if v}
    dropped = sorted(present - named)
    mapped = LabelMap(lookup[labels.array].astype(np.uint16), labels.affine.copy(), dict(labels.meta))
    notes = [
        note for note in (reading.note, f"labels mapped onto the model's classes ({dict(mapping)})") if note
    ]
    if dropped:
        notes.append(f"values {dropped} not in the map became background")
    return MaskReading(mapped, "; ".join(notes), reading.kind or "mapped")


def _noted(path: Path, reading: MaskReading) -> MaskReading:
    if reading.note:
        log.info("%s: %s", path.name, reading.note)
    return reading


def load_pair(
    pair: CasePair,
    resample: bool = False,
    threshold: float | None = None,
    mapping: Mapping[str, int] | None = None,
) -> tuple:
    """(prediction, reference, notes) on the reference grid. `threshold` applies to the reference only.

    A prediction whose voxels are the reference's in another axis order or direction is reoriented
    exactly; any other grid is a GeometryError unless `resample`."""
    predicted = read_prediction(pair.prediction)
    expected = read_reference(pair.reference, threshold, mapping, grid=predicted.labels)
    prediction, reference = predicted.labels, expected.labels
    notes = [
        f"{role}: {reading.note}"
        for role, reading in (("prediction", predicted), ("reference", expected))
        if reading.note
    ]
    if not prediction.same_grid(reference) and prediction.orientation != reference.orientation:
        turned = reorient(prediction, reference.orientation)
        if turned.same_grid(reference):
            notes.append(
                f"prediction reoriented exactly from {prediction.orientation} to {reference.orientation}"
            )
            prediction = turned
    if resample and not prediction.same_grid(reference):
        log.info("%s: prediction resampled onto the reference grid (nearest neighbour)", pair.name)
        notes.append("prediction resampled onto the reference grid (nearest neighbour)")
        prediction = resample_to(prediction, reference)
    check_same_grid(prediction, reference, pair.prediction, pair.reference)
    return prediction, reference, notes


def present_classes(
    pairs: Sequence[CasePair], threshold: float | None, mapping: Mapping[str, int] | None = None
) -> dict[int, str]:
    """``label_<v>`` for every non-zero label found in any prediction or (interpreted) reference."""
    found: set[int] = set()
    for pair in pairs:
        predicted = read_prediction(pair.prediction).labels
        expected = read_reference(pair.reference, threshold, mapping, grid=predicted).labels
        found.update(int(v) for v in np.unique(predicted.array) if v != 0)
        found.update(int(v) for v in np.unique(expected.array) if v != 0)
    return {value: f"label_{value}" for value in sorted(found)}


def evaluate_cohort(
    pairs: Sequence[CasePair],
    class_names: Mapping[int, str] | None = None,
    tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
    resample: bool = False,
    threshold: float | None = None,
    seed: int = 0,
    samples: int = BOOTSTRAP_SAMPLES,
    mapping: Mapping[str, int] | None = None,
) -> dict:
    """Per-case metrics and their summary for `pairs`, with the settings and the empty-mask policy.

    Without `class_names`, every label present in any case is evaluated (named ``label_<v>``).
    `threshold` binarises the references only; predictions are the model's labels as they are; `mapping`
    translates reference values or segment labels onto the model's classes.
    """
    if not pairs:
        raise InputError(None, "nothing to evaluate: no prediction/reference pairs")
    names = dict(class_names) if class_names else present_classes(pairs, threshold, mapping)
    cases, notes = {}, {}
    for pair in pairs:
        prediction, reference, case_notes = load_pair(pair, resample, threshold, mapping)
        cases[pair.name] = evaluate_case(prediction, reference, names, tolerance_mm)
        if case_notes:
            notes[pair.name] = case_notes
    return {
        "settings": {
            "nsd_tolerance_mm": tolerance_mm,
            "resampled": resample,
            "reference_threshold": threshold,
            "reference_map": dict(mapping) if mapping else None,
            "bootstrap_samples": samples,
            "seed": seed,
            "classes": {str(value): name for value, name in names.items()},
        },
        "empty_mask_policy": EMPTY_MASK_POLICY,
        "notes": notes,  # per case: how the reference's values were read, reorientation, resampling
        "files": {
            pair.name: {"prediction": str(pair.prediction), "reference": str(pair.reference)}
            for pair in pairs
        },
        "cases": cases,
        "summary": aggregate(cases, samples, seed),
    }
