"""Pair predictions with references: two files, two folders matched by case name, a ``medseg infer``
output folder matched by what each result records, or a manifest.

Case name: the file name without its image extension (``case_001.nii.gz`` -> ``case_001``), or the name of a
sub-folder. In a ``medseg infer`` output folder (``summary.json`` and ``<key>/result.json``) each result is
named by its recorded input: the input file's case name, or for a DICOM series its folder's name and its
SeriesInstanceUID (either matches a reference). Masks are files (NIfTI, NRRD, MHA, PNG, DICOM SEG), so two
folders are always folders of cases. A manifest is a CSV (header ``case,prediction,reference``) or a JSON
list of objects with those keys; relative paths are relative to the manifest. Anything left unpaired is an
error that lists it: no case is silently left out of an evaluation.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import InputError
from medseg.inference.output_names import MASK_NAME, RESULT_NAME, SUMMARY_NAME

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


@dataclass(frozen=True)
class InferOutput:
    """One result of a ``medseg infer`` output folder: the names it answers to and its mask."""

    names: tuple[str, ...]
    mask: Path
    record: dict = field(default_factory=dict, compare=False)  # its result.json


def infer_outputs(folder: Path) -> list[InferOutput] | None:
    """The results of a ``medseg infer`` output folder, or None when `folder` is not one."""
    results = sorted(folder.glob(f"*/{RESULT_NAME}"))
    if not folder.is_dir() or not (folder / SUMMARY_NAME).is_file() or not results:
        return None
    outputs = []
    for path in results:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            names = [case_name(Path(str(record["input"])))]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise InputError(path, f"not a medseg result ({error})") from None
        uid = record.get("source_uids", {}).get("series_instance_uid")
        aliases = tuple(dict.fromkeys([*names, *([uid] if uid else [])]))
        outputs.append(InferOutput(aliases, path.parent / MASK_NAME, record))
    return outputs


def match_outputs(
    outputs: list[InferOutput], candidates: dict[str, Path], where: Path, role: str
) -> dict[str, tuple[InferOutput, Path]]:
    """For each output, the candidate named like one of its names that no other output shares (keyed by
    that name); an output or a candidate left without a partner is an error listing them, so two results
    answering to one name (two series in one folder) never collapse into one."""
    owners = Counter(name for output in outputs for name in output.names)
    matched: dict[str, tuple[InferOutput, Path]] = {}
    for output in outputs:
        name = next((n for n in output.names if n in candidates and owners[n] == 1), None)
        if name is None:
            shared = [n for n in output.names if owners[n] > 1]
            why = f"; {', '.join(shared)} also names another result" if shared else ""
            named = " or ".join(output.names)
            raise InputError(where, f"no {role} for the result of {output.names[0]!r} (named {named}{why})")
        matched[name] = (output, candidates[name])
    left = set(candidates) - set(matched)
    if left:
        raise InputError(where, f"no prediction for {len(left)} {role}(s): {_unpaired(left)}")
    return matched


def _unpaired(names: set[str]) -> str:
    listed = ", ".join(sorted(names)[:LISTED])
    return listed + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")


def pair_paths(prediction: str | os.PathLike, reference: str | os.PathLike) -> list[CasePair]:
    """Pairs of two files (one case) or of two folders (cases matched by name)."""
    prediction, reference = Path(prediction), Path(reference)
    for path in (prediction, reference):
        if not path.exists():
            raise InputError(path, "no such file or folder")
    outputs = infer_outputs(prediction) if prediction.is_dir() else None
    if outputs is not None:
        references = _cases_in(reference) if reference.is_dir() else {case_name(reference): reference}
        if len(outputs) == 1 and not reference.is_dir():  # one result and one reference file
            return [CasePair(outputs[0].names[0], outputs[0].mask, reference)]
        matched = match_outputs(outputs, references, reference, "reference")
        return [CasePair(name, output.mask, path) for name, (output, path) in sorted(matched.items())]
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
