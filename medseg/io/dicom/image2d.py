"""Single 2D DICOM images: radiographs (CR, DX), mammograms (MG) and any other one-frame image.

Values: stored values through the modality LUT (RescaleSlope/Intercept or a Modality LUT), then, if asked,
the VOI LUT or window (`voi=True`). MONOCHROME1 images (low values bright) are inverted so that higher
values are always brighter; ``meta["inverted"]`` says so. Output is float32.

Pixel spacing: PixelSpacing when present (calibrated at the patient); else ImagerPixelSpacing (at the
detector, not corrected for magnification; ``meta["spacing_source"]`` says so); else 1 mm with
``meta["spacing_unknown"] = True``. Geometry: ImagePositionPatient/ImageOrientationPatient when present;
otherwise origin 0 and ITK's identity direction in LPS+, as SimpleITK reads such a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from medseg.errors import GeometryError, InputError
from medseg.io.dicom.files import SkippedFile, non_image_reason, read_dataset
from medseg.io.dicom.frames import UNIT_TOLERANCE, cross
from medseg.io.dicom.pixels import stored_frames
from medseg.io.dicom.values import numbers, values_of
from medseg.io.image import LPS_TO_RAS, ScalarImage

#: Pixel spacing (mm) used when the file gives none.
UNKNOWN_SPACING_MM = 1.0


def read_dicom_image(path: str | os.PathLike, *, voi: bool = False) -> ScalarImage:
    """Read a single-frame 2D DICOM image as a 2D `ScalarImage`; see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    ds = read_dataset(path, pixels=True)
    if isinstance(ds, SkippedFile):
        raise InputError(path, ds.reason)
    if (reason := non_image_reason(ds)) is not None:
        raise InputError(path, f"not an image: {reason}")
    stored = stored_frames(ds, path)
    if stored.shape[0] != 1:
        raise InputError(path, f"{stored.shape[0]} frames: read it as a volume with read_series")
    values, value_range = _values(stored[0], ds, voi)
    meta: dict[str, object] = {"modality": str(ds.get("Modality", "")), "source": str(path)}
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        values = value_range[0] + value_range[1] - values
        meta["inverted"] = True
    spacing, source = _spacing(ds, path)
    if source is None:
        meta["spacing_unknown"] = True
    elif source != "PixelSpacing":
        meta["spacing_source"] = source
    return ScalarImage(np.ascontiguousarray(values.T, dtype=np.float32), _affine(ds, spacing, path), meta)


def _values(stored: np.ndarray, ds: pydicom.Dataset, voi: bool) -> tuple[np.ndarray, tuple[float, float]]:
    """Modality (and VOI) values, and the range those values can take (for MONOCHROME1 inversion)."""
    bits = int(ds.get("BitsStored", ds.BitsAllocated))
    signed = int(ds.PixelRepresentation) == 1
    limits = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] if signed else [0, 2**bits - 1])
    values = apply_modality_lut(stored, ds).astype(np.float64)
    limits = apply_modality_lut(limits.astype(stored.dtype), ds).astype(np.float64)
    if voi:
        values = apply_voi_lut(values, ds).astype(np.float64)
        limits = apply_voi_lut(limits, ds).astype(np.float64)
    return values, (float(limits.min()), float(limits.max()))


def _spacing(ds: pydicom.Dataset, path: Path) -> tuple[tuple[float, float], str | None]:
    """(between rows, between columns) in mm and the attribute it came from (None when the file gives
    none). A spacing that is there but not two positive numbers is an error, never replaced by a guess."""
    with values_of(path):
        for name in ("PixelSpacing", "ImagerPixelSpacing"):
            value = numbers(ds, name)
            if value is None:
                continue
            if len(value) != 2 or min(value) <= 0:
                raise GeometryError(path, f"{name} {value} must be two positive numbers")
            return (value[0], value[1]), name
    return (UNKNOWN_SPACING_MM, UNKNOWN_SPACING_MM), None


def _affine(ds: pydicom.Dataset, spacing: tuple[float, float], path: Path) -> np.ndarray:
    """Voxel to RAS mm: the plane from ImageOrientationPatient and ImagePositionPatient where the file
    gives them (checked as a series' slices are), else the identity directions at the origin."""
    with values_of(path):
        iop, ipp = numbers(ds, "ImageOrientationPatient"), numbers(ds, "ImagePositionPatient")
    lps = np.eye(4)
    if iop is not None:
        row, column = np.asarray(iop[:3]), np.asarray(iop[3:])
        if len(iop) != 6 or abs(np.linalg.norm(cross(row, column)) - 1.0) > UNIT_TOLERANCE:
            raise GeometryError(path, f"ImageOrientationPatient {iop} is not two orthogonal unit vectors")
        lps[:3, 0], lps[:3, 1] = row * spacing[1], column * spacing[0]
        lps[:3, 2] = cross(row, column)
    else:
        lps[0, 0], lps[1, 1] = spacing[1], spacing[0]
    if ipp is not None:
        if len(ipp) != 3:
            raise GeometryError(path, f"ImagePositionPatient {ipp} must have 3 values")
        lps[:3, 3] = ipp
    return LPS_TO_RAS @ lps
