"""The second opinion against the clinician's own labels: the AI's mask beside the study's RTSTRUCT or SEG.

`medseg infer` finds a clinician SEG or RTSTRUCT drawn on a segmented series in the input (or takes
``--reference``), reads it onto the series' grid and translates its structures onto the model's classes:
by ``--reference-map`` (``{"Lung-Left": "lung_left", "GTV-1": 2}``), else by name, ignoring case and
punctuation (`name_mapping`). Each matched class gets Dice, IoU, HD95, NSD, volume difference and
lesion-wise detection (`medseg.metrics.evaluate.evaluate_case`); structures that match no class are
named in a note, never compared with background. `disagreement` gives the agree / AI only / clinician
only map that the runner writes as a DICOM SEG beside the AI's own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg.errors import InputError
from medseg.io.annotations import Structure, annotation_kind
from medseg.io.image import LabelMap, ScalarImage
from medseg.io.masks import MaskReading
from medseg.io.rtstruct import paint, read_rtstruct
from medseg.io.seg import read_seg_segments
from medseg.metrics.cohort import map_labels, read_labels
from medseg.metrics.evaluate import evaluate_case

#: The disagreement map's values and names (written as a SEG's segments), and their display colours: the
#: report's for AI only (magenta) and clinician only (yellow), green for agreement.
DISAGREEMENT_NAMES = {1: "agree", 2: "AI only", 3: "clinician only"}
DISAGREEMENT_SEG_COLOURS = {1: (60, 180, 75), 2: (240, 50, 230), 3: (255, 225, 25)}


@dataclass
class Comparison:
    """The clinician's labels on the image grid in the model's class values, and what was measured."""

    source: str
    reference: LabelMap
    #: The model's classes compared ({value: name}); the mapping used (reference name -> class value).
    classes: dict[int, str]
    mapping: dict[str, int]
    metrics: dict[str, dict]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "reference": self.source,
            "mapping": self.mapping,
            "classes": {str(value): name for value, name in self.classes.items()},
            "metrics": self.metrics,
            "notes": self.notes,
        }


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def name_mapping(reference_names: Mapping[int, str], class_names: Mapping[int, str]) -> dict[str, int]:
    """Reference structure name -> model class value, where the names agree ignoring case and
    punctuation ("Lung-Left" and "lung_left")."""
    by_key = {_key(name): value for value, name in class_names.items() if value != 0}
    return {name: by_key[_key(name)] for name in reference_names.values() if _key(name) in by_key}


def class_values(
    mapping: Mapping[str, int | str], class_names: Mapping[int, str], path: Path
) -> dict[str, int]:
    """A user's map with class names (any case) or values as targets, as class values."""
    by_key = {_key(name): value for value, name in class_names.items()}
    values = {}
    for source, target in mapping.items():
        text = str(target).strip()
        value = int(text) if text.isdigit() else by_key.get(_key(text))
        if value is None or value not in class_names or value == 0:
            raise InputError(path, f"--reference-map: {target!r} is not one of the model's classes")
        values[str(source)] = value
    return values


def compare(
    image: ScalarImage,
    labels: LabelMap,
    path: str | Path,
    class_names: Mapping[int, str],
    mapping: Mapping[str, int | str] | None = None,
) -> Comparison:
    """The AI's `labels` against the clinician's SEG/RTSTRUCT/mask at `path`, on `image`'s grid."""
    path = Path(path)
    kind = annotation_kind(path)
    readers = {"rtstruct": read_rtstruct, "seg": read_seg_segments}
    structures = readers[kind](path, image) if kind in readers else None
    # each ROI or segment on its own: overlapping ones (a tumour in a lung) stay whole
    if structures is not None:
        names = {structure.number: structure.name for structure in structures}
    else:
        raw = read_labels(path, image)
        if not raw.same_grid(labels):
            raise InputError(path, "the reference does not lie on the segmented series' grid")
        names = {int(value): str(name) for value, name in raw.meta.get("segment_labels", {}).items()}
    chosen = class_values(mapping, class_names, path) if mapping else name_mapping(names, class_names)
    if not chosen:
        raise InputError(
            path,
            f"none of its structures ({', '.join(names.values()) or 'unnamed values'}) is one of the "
            f"model's classes ({', '.join(n for v, n in class_names.items() if v)}); give --reference-map",
        )
    if structures is not None:
        value_of = _mapped_by(chosen)
        unknown = set(chosen) - {key for key in chosen for s in structures if _names(key, s)}
        if unknown:
            raise InputError(path, f"--reference-map names {sorted(unknown)}, which are not among its ROIs")
        reference = LabelMap(paint(structures, image.shape, value_of), image.affine.copy())
        reading = MaskReading(reference)
    else:
        reading = map_labels(MaskReading(raw), chosen, path)
    classes = {value: class_names[value] for value in sorted(set(chosen.values()))}
    notes = [
        f"Compared with {path.name}: {', '.join(f'{k} as {class_names[v]}' for k, v in chosen.items())}."
    ]
    mapped = {key.strip().lower() for key in chosen}
    unmatched = sorted(
        name for number, name in names.items() if {name.lower(), str(number)}.isdisjoint(mapped)
    )
    if unmatched:
        notes.append(f"Not compared (no model class of that name): {', '.join(unmatched)}.")
    metrics = evaluate_case(labels, reading.labels, classes)
    return Comparison(path.name, reading.labels, classes, chosen, metrics, notes)


def _names(key: str, structure: Structure) -> bool:
    """Whether a map key names an RTSTRUCT ROI: its name (any case) or its ROI number."""
    text = key.strip()
    return text.lower() == structure.name.lower() or (text.isdigit() and int(text) == structure.number)


def _mapped_by(chosen: Mapping[str, int]) -> Callable[[Structure], int | None]:
    """The class an RTSTRUCT ROI is painted with: the map's entry naming it; None leaves it out."""
    return lambda structure: next((value for key, value in chosen.items() if _names(key, structure)), None)


def disagreement(labels: LabelMap, reference: LabelMap, classes: Mapping[int, str]) -> LabelMap:
    """1 where AI and clinician give a voxel the same compared class, 2 where only the AI marks it (or
    marks another class), 3 where only the clinician does (`DISAGREEMENT_NAMES`)."""
    compared = np.asarray(sorted(classes))
    ai, clinician = np.isin(labels.array, compared), np.isin(reference.array, compared)
    out = np.zeros(labels.shape, dtype=np.uint8)
    out[ai & clinician & (labels.array == reference.array)] = 1
    out[ai & (out == 0)] = 2
    out[clinician & ~ai] = 3
    return LabelMap(out, labels.affine.copy(), {"source": "disagreement"})
