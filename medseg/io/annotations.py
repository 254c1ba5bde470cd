"""DICOM objects that hold labels drawn on an image series: SEG (binary, fractional or label map) and
RTSTRUCT contours, and the series each says it was drawn on.

Datasets (a PACS export whose SEGs and RTSTRUCTs are the training labels) and inference (a study whose
clinician contours are the second opinion's reference) find them the same way, by this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

#: SOP Class UIDs of DICOM Segmentation Storage and Label Map Segmentation Storage (DICOM 2024c).
SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")
#: The Manufacturer of every SEG and RTSTRUCT medseg writes: how its results are told from a clinician's.
MANUFACTURER = "medseg"
#: SOP Class UID of RT Structure Set Storage.
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


def is_seg(ds: pydicom.Dataset) -> bool:
    return str(ds.get("SOPClassUID", "")) in SEG_SOP_CLASSES


def is_rtstruct(ds: pydicom.Dataset) -> bool:
    return str(ds.get("SOPClassUID", "")) == RTSTRUCT_SOP_CLASS or ds.get("Modality") == "RTSTRUCT"


def labelled_series(ds: pydicom.Dataset) -> list[str] | None:
    """The SeriesInstanceUIDs a SEG or RTSTRUCT says it labels; None for any other object."""
    if is_seg(ds):
        return [str(item.SeriesInstanceUID) for item in ds.get("ReferencedSeriesSequence", [])]
    if is_rtstruct(ds):
        return [
            str(series.SeriesInstanceUID)
            for frame in ds.get("ReferencedFrameOfReferenceSequence", [])
            for study in frame.get("RTReferencedStudySequence", [])
            for series in study.get("RTReferencedSeriesSequence", [])
        ]
    return None


def annotation_kind(path: str | os.PathLike) -> str | None:
    """``"seg"`` or ``"rtstruct"`` for a DICOM file holding one (its header alone is read), else None."""
    path = Path(path)
    if not path.is_file():  # never opened otherwise: a pipe would block
        return None
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
    except Exception:  # not DICOM
        return None
    return "seg" if is_seg(header) else "rtstruct" if is_rtstruct(header) else None


@dataclass
class Structure:
    """One RTSTRUCT ROI or SEG segment: its number, name and mask on the reference grid."""

    number: int
    name: str
    mask: np.ndarray
    contours: int = 0
    notes: list[str] = field(default_factory=list)
