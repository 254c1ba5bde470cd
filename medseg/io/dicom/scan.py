"""Survey a folder of DICOM files: which studies and series it holds, and which series to read.

`scan_folder` reads headers only (no pixel data), groups image files by study and series, checks
each series' geometry without reading pixels, and lists every file it did not use with the reason.
`select_series` applies `SeriesRules` and says why each other series was left out.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from medseg.errors import InputError, MedsegError
from medseg.io.dicom.files import SkippedFile, list_files, read_dataset, read_datasets, split_images
from medseg.io.dicom.frames import frames_of
from medseg.io.dicom.geometry import assemble
from medseg.io.dicom.pixels import check_decodable
from medseg.io.dicom.values import text
from medseg.io.image import LPS_TO_RAS, grid_summary

#: Projection modalities: their single-frame files are 2D images, not slices of a volume.
RADIOGRAPHY_MODALITIES = ("DX", "CR", "MG", "RF", "XA", "IO", "PX")

#: A slice normal within this angle of a patient axis counts as axial, coronal or sagittal.
PLANE_ANGLE_DEGREES = 15.0
#: Patient axis (LPS) of the slice normal -> plane name.
PLANES = {0: "sagittal", 1: "coronal", 2: "axial"}


@dataclass
class SeriesInfo:
    """One image series found in a folder (no patient data)."""

    series_instance_uid: str
    study_instance_uid: str
    modality: str
    description: str
    number_of_files: int
    number_of_slices: int
    orientation: str  # axial, coronal, sagittal, oblique or unknown
    rows: int
    columns: int
    problem: str | None  # why the series cannot be read as a volume, or None
    files: list[Path] = field(repr=False)
    affine: np.ndarray | None = field(default=None, repr=False)  # RAS+ grid when the geometry is valid

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape the series reads to: (columns, rows, slices)."""
        return (self.columns, self.rows, self.number_of_slices)

    def summary(self) -> dict[str, object]:
        """JSON-ready description."""
        return {
            "series_instance_uid": self.series_instance_uid,
            "modality": self.modality,
            "description": self.description,
            "number_of_files": self.number_of_files,
            "number_of_slices": self.number_of_slices,
            "orientation": self.orientation,
            "rows": self.rows,
            "columns": self.columns,
            "problem": self.problem,
            **(grid_summary(self.shape, self.affine) if self.affine is not None else {}),
        }


@dataclass
class FolderScan:
    """What `scan_folder` found: image series (in study order) and the files it skipped."""

    folder: Path
    series: list[SeriesInfo]
    skipped: list[SkippedFile]

    @property
    def studies(self) -> dict[str, list[SeriesInfo]]:
        """StudyInstanceUID -> its series."""
        studies: dict[str, list[SeriesInfo]] = defaultdict(list)
        for series in self.series:
            studies[series.study_instance_uid].append(series)
        return dict(studies)


@dataclass(frozen=True)
class SeriesRules:
    """Which series to read. Empty tuples and None mean 'any'."""

    modalities: tuple[str, ...] = ()
    min_slices: int = 1
    description_pattern: str | None = None  # regular expression, searched case-insensitively
    orientations: tuple[str, ...] = ()
    readable_only: bool = True  # leave out series whose geometry would be refused


@dataclass
class SeriesSelection:
    chosen: list[SeriesInfo]
    rejected: list[tuple[SeriesInfo, list[str]]]


def scan_folder(folder: str | os.PathLike) -> FolderScan:
    """Group the DICOM image files under `folder` (any depth) into studies and series."""
    paths = list_files(folder)
    images, skipped = split_images(zip(paths, read_datasets(paths, pixels=False), strict=True))
    groups: dict[str, list[tuple[Path, pydicom.Dataset]]] = defaultdict(list)
    for path, ds in images:
        groups[text(ds, "SeriesInstanceUID")].append((path, ds))
    series = [_describe(uid, items) for uid, items in groups.items()]
    series.sort(key=lambda s: (s.study_instance_uid, s.modality, s.description, s.series_instance_uid))
    return FolderScan(Path(folder), series, skipped)


def is_radiograph(series: SeriesInfo) -> bool:
    """A projection image without slice positions (each file a 2D image, not a slice of a volume)."""
    return series.problem is not None and series.modality in RADIOGRAPHY_MODALITIES


def select_series(scan: FolderScan, rules: SeriesRules) -> SeriesSelection:
    """Split the scanned series into those matching `rules` and the others, each with its reasons."""
    selection = SeriesSelection([], [])
    for series in scan.series:
        reasons = rejection_reasons(series, rules)
        if reasons:
            selection.rejected.append((series, reasons))
        else:
            selection.chosen.append(series)
    return selection


def rejection_reasons(series: SeriesInfo, rules: SeriesRules) -> list[str]:
    """Why `series` does not match `rules` (empty when it does)."""
    reasons = []
    if rules.modalities and series.modality not in rules.modalities:
        reasons.append(f"modality {series.modality} is not one of {', '.join(rules.modalities)}")
    if series.number_of_slices < rules.min_slices:
        reasons.append(f"{series.number_of_slices} slice(s), fewer than {rules.min_slices}")
    if rules.description_pattern and not re.search(
        rules.description_pattern, series.description, re.IGNORECASE
    ):
        reasons.append(f"description '{series.description}' does not match '{rules.description_pattern}'")
    if rules.orientations and series.orientation not in rules.orientations:
        reasons.append(f"orientation {series.orientation} is not one of {', '.join(rules.orientations)}")
    if rules.readable_only and series.problem:
        reasons.append(series.problem)
    return reasons


def plane_name(orientation: np.ndarray) -> str:
    """axial, coronal or sagittal when the slice normal is near a patient axis, else oblique."""
    normal = np.cross(orientation[:3], orientation[3:])
    axis = int(np.argmax(np.abs(normal)))
    if np.degrees(np.arccos(min(1.0, abs(normal[axis]) / np.linalg.norm(normal)))) <= PLANE_ANGLE_DEGREES:
        return PLANES[axis]
    return "oblique"


def _describe(uid: str, items: list[tuple[Path, pydicom.Dataset]]) -> SeriesInfo:
    first = items[0][1]
    problem, orientation, slices, affine = None, "unknown", 0, None
    rows, columns = int(first.Rows), int(first.Columns)
    try:
        _check_first_pixels(items[0][0])  # what reading refuses (palette, colour, no pixel data...)
        frames = [frame for path, ds in items for frame in frames_of(ds, path)]
        slices, rows, columns = len(frames), frames[0].rows, frames[0].columns  # a mosaic's tiles
        orientation = plane_name(frames[0].orientation)
        stack = assemble(frames)
        slices, affine = len(stack.frames), LPS_TO_RAS @ stack.affine_lps
    except MedsegError as error:
        problem = str(error)
    return SeriesInfo(
        series_instance_uid=uid,
        study_instance_uid=str(first.get("StudyInstanceUID", "")),
        modality=str(first.get("Modality", "")),
        description=str(first.get("SeriesDescription", "")),
        number_of_files=len(items),
        number_of_slices=slices,
        orientation=orientation,
        rows=rows,
        columns=columns,
        problem=problem,
        files=[path for path, _ in items],
        affine=affine,
    )


def _check_first_pixels(path: Path) -> None:
    """What reading would refuse in the pixel data of a series' first file, read with its pixel data
    deferred (the bytes are not loaded): colour, no decoder, none or too few bytes."""
    ds = read_dataset(path, pixels=True)
    if isinstance(ds, SkippedFile):
        raise InputError(path, ds.reason)
    check_decodable(ds, path, pixels=True)
