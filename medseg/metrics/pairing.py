"""Pair predictions with references: two files, two folders matched by case name, or a manifest.

Case name: the file name without its image extension (``case_001.nii.gz`` -> ``case_001``), or the
name of a sub-folder. Masks are files (NIfTI, NRRD, MHA, PNG, DICOM SEG), so two folders are always
folders of cases. A manifest is a CSV (header ``case,prediction,reference``) or a
JSON list of objects with those keys; relative paths are relative to the manifest. Anything left
unpaired is an error that lists it: no case is silently left out of an evaluation.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from medseg.errors import InputError

#: Image file endings, longest first so that ``.nii.gz`` wins over ``.gz``.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".jpeg", ".dcm")
#: Files in a folder that are not cases.
NOT_CASES = (".json", ".csv", ".md", ".txt", ".raw", ".zraw", ".pkl")
#: How many unpaired names an error message lists.
LISTED = 5


@dataclass(frozen=True)
class CasePair:
    """One case to evaluate: its name and the prediction and reference paths."""

    name: str
    prediction: Path
    reference: Path


def case_name(path: Path) -> str:
    """The case name of a file or DICOM folder (see the module docstring)."""
    lower = path.name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix) and not path.is_dir():
            return path.name[: -len(suffix)]
    return path.name


def _cases_in(folder: Path) -> dict[str, Path]:
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    cases: dict[str, Path] = {}
    for entry in entries:
        if entry.is_file() and entry.name.lower().endswith(NOT_CASES):
            continue
        name = case_name(entry)
        if name in cases:
            raise InputError(entry, f"two entries for case {name!r} ({cases[name].name} and {entry.name})")
        cases[name] = entry
    if not cases:
        raise InputError(folder, "no images in this folder")
    return cases


def _unpaired(names: set[str]) -> str:
    listed = ", ".join(sorted(names)[:LISTED])
    return listed + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")


def pair_paths(prediction: str | os.PathLike, reference: str | os.PathLike) -> list[CasePair]:
    """Pairs of two files (one case) or of two folders (cases matched by name)."""
    prediction, reference = Path(prediction), Path(reference)
    for path in (prediction, reference):
        if not path.exists():
            raise InputError(path, "no such file or folder")
    if not (prediction.is_dir() and reference.is_dir()):
        return [CasePair(case_name(reference), prediction, reference)]
    predictions, references = _cases_in(prediction), _cases_in(reference)
    if set(predictions) - set(references):
        missing = set(predictions) - set(references)
        raise InputError(reference, f"no reference for {len(missing)} prediction(s): {_unpaired(missing)}")
    if set(references) - set(predictions):
        missing = set(references) - set(predictions)
        raise InputError(prediction, f"no prediction for {len(missing)} reference(s): {_unpaired(missing)}")
    return [CasePair(name, predictions[name], references[name]) for name in sorted(references)]


def read_manifest(path: str | os.PathLike) -> list[CasePair]:
    """Pairs listed in a CSV or JSON manifest (keys ``case``, ``prediction``, ``reference``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such manifest file")
    try:
        if path.suffix.lower() == ".json":
            rows = json.loads(path.read_text(encoding="utf-8"))
        else:
            with path.open(newline="", encoding="utf-8") as file:
                rows = list(csv.DictReader(file))
    except (json.JSONDecodeError, csv.Error, UnicodeDecodeError) as error:
        raise InputError(path, f"unreadable manifest ({error})") from None
    if not isinstance(rows, list) or not rows:
        raise InputError(path, "manifest lists no cases")
    pairs = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not all(row.get(key) for key in ("case", "prediction", "reference")):
            raise InputError(path, f"entry {number} needs case, prediction and reference")
        pairs.append(
            CasePair(str(row["case"]), path.parent / row["prediction"], path.parent / row["reference"])
        )
    names = [pair.name for pair in pairs]
    if len(set(names)) != len(names):
        raise InputError(path, "case names repeat")
    return pairs
