"""Dataset fingerprint: what the planner needs to know about a dataset, measured once.

For every case: its shape and spacing (in RAS axis order for 3D, since preprocessing reorients to RAS),
the voxel count of each label, and a random sample of foreground intensities per channel. Summed up:
median/min/max spacing and shape, intensity statistics per channel over the pooled foreground samples
(mean, std, median, min, max, 0.5 and 99.5 percentiles), and per class the share of foreground voxels and
the number of cases that contain it. Foreground means label > 0, as in nnU-Net.
"""

from __future__ import annotations

from collections import Counter

import nibabel.orientations as nio
import numpy as np
from tqdm import tqdm

from medseg.data.datasets import Dataset
from medseg.data.loading import load_case_channels
from medseg.errors import InputError
from medseg.io.image import Image

#: Foreground intensities sampled per case and channel (nnU-Net samples 10,000 too).
FOREGROUND_SAMPLES_PER_CASE = 10_000
#: Percentiles recorded for clipping, e.g. CT normalisation clips to these.
CLIP_PERCENTILES = (0.5, 99.5)
#: Seed of the voxel sampling, so a fingerprint can be reproduced exactly.
SAMPLING_SEED = 1234


def ras_axis_order(image: Image) -> list[int]:
    """Array axes listed in R-A-S order (3D); the identity for 2D images, which are not reoriented."""
    if image.ndim == 2:
        return [0, 1]
    ornt = nio.io_orientation(image.affine)
    return [int(np.flatnonzero(ornt[:, 0] == world_axis)[0]) for world_axis in range(3)]


#: Undeclared label values beyond this many look like an intensity picture read as labels.
MANY_VALUES = 50
#: Case ids a warning lists.
LISTED_CASES = 5


def _case_fingerprint(record: dict, rng: np.random.Generator, label_names: dict[int, str]) -> dict:
    images, label = load_case_channels(record)
    _check_label_values(label.array, record["label"], label_names)
    order = ras_axis_order(label)
    foreground = label.array > 0
    samples = []
    for image in images:
        values = image.array[foreground]
        if values.size > FOREGROUND_SAMPLES_PER_CASE:
            values = rng.choice(values, FOREGROUND_SAMPLES_PER_CASE, replace=False)
        samples.append(values.astype(np.float64))
    labels, counts = np.unique(label.array, return_counts=True)
    return {
        "shape": [int(label.shape[axis]) for axis in order],
        "spacing": [float(label.spacing[axis]) for axis in order],
        "class_voxels": {int(value): int(count) for value, count in zip(labels, counts, strict=True)},
        "interpretation": label.meta.get("interpretation"),
        "samples": samples,
        "ndim": label.ndim,
    }


def _check_label_values(labels: np.ndarray, path: str, label_names: dict[int, str]) -> None:
    """InputError naming the label file when it holds values the dataset does not declare (or < 0)."""
    values = np.unique(labels)
    declared = sorted({0, *label_names})
    unexpected = values[values < 0] if not label_names else np.setdiff1d(values, declared)
    if unexpected.size:
        shown = ", ".join(str(v) for v in unexpected[:10].tolist())
        expected = f"the dataset declares {declared}" if label_names else "labels must be >= 0"
        raise InputError(path, f"unexpected label value(s) {shown}; {expected}")


def _intensity_statistics(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    low, high = np.percentile(values, CLIP_PERCENTILES)
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "median": float(np.median(values)),
        "min": float(values.min()),
        "max": float(values.max()),
        "percentile_00_5": float(low),
        "percentile_99_5": float(high),
    }


def compute_fingerprint(dataset: Dataset, progress: bool = True) -> dict:
    """Measure `dataset` (loads every case once). Returns a JSON-friendly dict; see the module docstring."""
    rng = np.random.default_rng(SAMPLING_SEED)
    cases = [
        _case_fingerprint(record, rng, dataset.label_names)
        for record in tqdm(dataset.cases, desc="fingerprint", unit="case", disable=not progress)
    ]
    dims = {case["ndim"] for case in cases}
    if len(dims) != 1:
        raise InputError(dataset.root, "the dataset mixes 2D and 3D cases")
    spacings = np.array([case["spacing"] for case in cases])
    shapes = np.array([case["shape"] for case in cases])
    class_voxels: dict[int, int] = {}
    class_cases: dict[int, int] = {}
    for case in cases:
        for value, count in case["class_voxels"].items():
            class_voxels[value] = class_voxels.get(value, 0) + count
            class_cases[value] = class_cases.get(value, 0) + 1
    foreground_total = sum(count for value, count in class_voxels.items() if value > 0)
    intensity = []
    for channel in range(len(cases[0]["samples"])):
        modality = dataset.modalities[channel] if channel < len(dataset.modalities) else "unknown"
        pooled = np.concatenate([case["samples"][channel] for case in cases])
        intensity.append({"channel": channel, "modality": modality, **_intensity_statistics(pooled)})
    interpreted = Counter(case["interpretation"] for case in cases if case["interpretation"])
    empty = [
        record["id"]
        for record, case in zip(dataset.cases, cases, strict=True)
        if set(case["class_voxels"]) <= {0}
    ]
    fingerprint = {
        "dataset": dataset.name,
        "num_cases": len(cases),
        #: How many label files were not read as they are, by what was done (see medseg.io.masks).
        "label_interpretation": dict(sorted(interpreted.items())),
        "dim": dims.pop(),
        "spacings": spacings.tolist(),
        "shapes": shapes.tolist(),
        "median_spacing": np.median(spacings, axis=0).tolist(),
        "median_shape": np.median(shapes, axis=0).tolist(),
        "intensity": intensity,
        "classes": {
            str(value): {
                "name": dataset.label_names.get(value, str(value)),
                "foreground_fraction": class_voxels[value] / foreground_total
                if value and foreground_total
                else None,
                "cases_present": class_cases[value],
            }
            for value in sorted(class_voxels)
        },
        "empty_cases": empty,
    }
    fingerprint["warnings"] = integrity_warnings(fingerprint, dataset.label_names)
    return fingerprint


def integrity_warnings(fingerprint: dict, declared: dict[int, str]) -> list[str]:
    """What looks wrong in a dataset's labels, in words a user can act on (shown by ``medseg plan`` and
    logged before training): declared classes never seen, classes in one case only, cases without any
    foreground, and masks with so many values that they look like pictures rather than labels."""
    classes = {int(value): entry for value, entry in fingerprint["classes"].items()}
    cases = fingerprint["num_cases"]
    warnings = [
        f"class {value} ({name}) is declared but appears in no case"
        for value, name in sorted(declared.items())
        if value > 0 and value not in classes
    ]
    if cases > 1:
        warnings += [
            f"class {value} ({entry['name']}) appears in one case only"
            for value, entry in sorted(classes.items())
            if value > 0 and entry["cases_present"] == 1
        ]
    if fingerprint["empty_cases"]:
        shown = ", ".join(fingerprint["empty_cases"][:LISTED_CASES])
        warnings.append(f"{len(fingerprint['empty_cases'])} case(s) have no foreground at all: {shown}")
    unknown = [
        entry["channel"] for entry in fingerprint["intensity"] if entry["modality"].lower() == "unknown"
    ]
    if unknown:
        consequence = (
            "images are mirrored left-right; for radiographs give --modality XRAY"
            if fingerprint["dim"] == 2
            else "inference cannot check the modality; give --modality (CT, MR...)"
        )
        warnings.append(
            f"the modality of channel(s) {unknown} is unknown: z-score normalisation, and {consequence}"
        )
    if not declared and len(classes) > MANY_VALUES:
        warnings.append(
            f"the labels hold {len(classes)} different values: are they pictures rather than label maps? "
            "Give --mask-threshold, or --labels for a real many-class dataset"
        )
    return warnings
