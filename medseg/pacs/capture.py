"""Overlay pictures as a DICOM Secondary Capture series, so a PACS viewer can show them beside the study.

Each overlay PNG of a result (`medseg.report.overlay`: axial slices in radiological display, rows
anterior to posterior, columns patient right to left) becomes one RGB Secondary Capture instance in a
new series of the source study, copying the patient and study attributes from a source instance.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import PIL.Image
import pydicom
from pydicom.uid import generate_uid

from medseg.io.annotations import MANUFACTURER
from medseg.utils.atomic import atomic_path

SERIES_NUMBER = 901
SERIES_DESCRIPTION = "AI-generated overlay - not for clinical use"
#: Direction of increasing column and increasing row of a radiological axial overlay.
AXIAL_DISPLAY_ORIENTATION = ("L", "P")


def write_captures(
    overlays: Sequence[str | os.PathLike], source: pydicom.Dataset, folder: str | os.PathLike
) -> list[Path]:
    """Write one Secondary Capture per overlay PNG into `folder` (``capture_<n>.dcm``); return the paths."""
    series_instance_uid = generate_uid()
    paths = []
    for number, overlay in enumerate(overlays, start=1):
        with PIL.Image.open(overlay) as picture:
            pixels = np.asarray(picture.convert("RGB"))
        capture = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source,
            pixel_array=pixels,
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=series_instance_uid,
            series_number=SERIES_NUMBER,
            sop_instance_uid=generate_uid(),
            instance_number=number,
            manufacturer=MANUFACTURER,
            patient_orientation=AXIAL_DISPLAY_ORIENTATION,
        )
        capture.SeriesDescription = SERIES_DESCRIPTION
        path = Path(folder) / f"capture_{number:03d}.dcm"
        with atomic_path(path) as temporary:
            capture.save_as(temporary, enforce_file_format=True)
        paths.append(path)
    return paths
