"""Per-frame geometry and rescale values from single-frame and enhanced multi-frame datasets.

A `Frame` is one 2D image plane: a single-frame file holds one, an enhanced multi-frame file one per
frame (geometry from the Shared/Per-frame Functional Groups). Everything here is in DICOM's LPS+.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from medseg.errors import GeometryError, InputError
from medseg.io.dicom.mosaic import is_mosaic, mosaic_frames
from medseg.io.dicom.values import integer, number, numbers, text, values_of

#: Largest deviation from 1 of |row x column| for ImageOrientationPatient to count as orthonormal.
UNIT_TOLERANCE = 1e-3


#: Header keywords that tell apart the volumes of one series stacked at the same slice positions: time
#: (TemporalPositionIdentifier, or GE's TriggerTime without it), echoes (field maps, multi-echo), image
#: types (magnitude / phase), acquisitions, diffusion b-values.
STACK_KEYS = (
    "TemporalPositionIdentifier",
    "AcquisitionNumber",
    "EchoNumbers",
    "EchoTime",
    "ImageType",
    "TriggerTime",
    "DiffusionBValue",
)


@dataclass(frozen=True)
class Frame:
    """One image plane: where it is, how its pixels map to mm, and how stored values become real ones."""

    path: Path
    index: int  # frame number inside the file (0 for single-frame files)
    multi_frame: bool
    position: np.ndarray  # ImagePositionPatient, LPS mm, centre of the first pixel
    orientation: np.ndarray  # ImageOrientationPatient: row direction (3) then column direction (3)
    pixel_spacing: tuple[float, float]  # (between rows, between columns) in mm
    rows: int
    columns: int
    slope: float
    intercept: float
    sop_instance_uid: str
    temporal_position: int | None  # TemporalPositionIdentifier / TemporalPositionIndex
    acquisition_number: int | None
    slice_thickness: float | None
    #: The values that tell apart volumes stacked at the same positions (echo, image type, time...), by
    #: keyword (`STACK_KEYS`), as text; absent keywords are left out.
    stack_values: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """How to name this frame in a message: the file, and the frame number for multi-frame files."""
        return _where(self.path, self.index, self.multi_frame)

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal (row direction × column direction)."""
        normal = cross(self.orientation[:3], self.orientation[3:])
        return normal / np.linalg.norm(normal)


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of two 3-vectors (np.cross costs ~0.2 ms a call, which adds up over slices)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def sop_instance_uid(ds: pydicom.Dataset) -> str:
    """SOPInstanceUID, or the file meta's copy when an anonymiser blanked the dataset's one."""
    uid = text(ds, "SOPInstanceUID")
    if not uid and hasattr(ds, "file_meta"):
        uid = text(ds.file_meta, "MediaStorageSOPInstanceUID")
    return uid


def is_enhanced(ds: pydicom.Dataset) -> bool:
    """True for multi-frame datasets that describe each frame in functional groups."""
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def frames_of(ds: pydicom.Dataset, path: Path) -> list[Frame]:
    """The frames of one dataset, with their geometry; raises GeometryError when it is missing.

    A header value that is not a finite number is an InputError naming the file."""
    with values_of(path):
        frames = integer(ds, "NumberOfFrames", 1)
        if is_enhanced(ds):
            return [_enhanced_frame(ds, path, i) for i in range(frames)]
        if frames > 1:
            raise InputError(path, "multi-frame image without functional groups: frame positions are unknown")
        frame = _frame(ds, ds, ds, ds, path, 0, ds)
        return mosaic_frames(frame, ds) if is_mosaic(ds) else [frame]


def _frame(
    position: pydicom.Dataset | None,
    orientation: pydicom.Dataset | None,
    measures: pydicom.Dataset | None,
    rescale: pydicom.Dataset | None,
    path: Path,
    index: int,
    ds: pydicom.Dataset,
    temporal_position: int | None = None,
) -> Frame:
    multi_frame = is_enhanced(ds)
    where = _where(path, index, multi_frame)
    ipp = numbers(position, "ImagePositionPatient") if position is not None else None
    iop = numbers(orientation, "ImageOrientationPatient") if orientation is not None else None
    spacing = numbers(measures, "PixelSpacing") if measures is not None else None
    for name, value, size in (
        ("ImagePositionPatient", ipp, 3),
        ("ImageOrientationPatient", iop, 6),
        ("PixelSpacing", spacing, 2),
    ):
        if value is None:
            raise GeometryError(where, f"no {name}: the slice cannot be placed in the patient")
        if len(value) != size:
            raise GeometryError(where, f"{name} has {len(value)} values instead of {size}")
    if min(spacing) <= 0:
        raise GeometryError(where, f"PixelSpacing {spacing} must be positive")
    iop = np.array(iop)
    if abs(np.linalg.norm(cross(iop[:3], iop[3:])) - 1.0) > UNIT_TOLERANCE:
        raise GeometryError(
            where, f"ImageOrientationPatient {iop.tolist()} is not two orthogonal unit vectors"
        )
    if temporal_position is None:
        temporal_position = integer(ds, "TemporalPositionIdentifier")
    return Frame(
        path=path,
        index=index,
        multi_frame=multi_frame,
        position=np.array(ipp),
        orientation=iop,
        pixel_spacing=(spacing[0], spacing[1]),
        rows=integer(ds, "Rows"),
        columns=integer(ds, "Columns"),
        slope=number(rescale, "RescaleSlope", 1.0) if rescale is not None else 1.0,
        intercept=number(rescale, "RescaleIntercept", 0.0) if rescale is not None else 0.0,
        sop_instance_uid=sop_instance_uid(ds),
        temporal_position=temporal_position,
        acquisition_number=integer(ds, "AcquisitionNumber"),
        slice_thickness=_slice_thickness(measures),
        stack_values={key: value for key in STACK_KEYS if (value := text(ds, key).strip())},
    )


def _slice_thickness(measures: pydicom.Dataset | None) -> float | None:
    """SliceThickness, or None where it is absent or malformed ("2.5/0" in some exports): only a single
    slice's depth falls back on it, and positions place every slice of a series."""
    try:
        return number(measures, "SliceThickness") if measures is not None else None
    except ValueError:
        return None


def _where(path: Path, index: int, multi_frame: bool) -> str:
    return f"{path} frame {index + 1}" if multi_frame else str(path)


def _functional_group(ds: pydicom.Dataset, index: int, name: str) -> pydicom.Dataset | None:
    """The item of functional group `name` for frame `index`: per-frame first, then shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and index < len(per_frame) and name in per_frame[index]:
        return per_frame[index][name][0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared is not None and len(shared) and name in shared[0]:
        return shared[0][name][0]
    return None


def _enhanced_frame(ds: pydicom.Dataset, path: Path, index: int) -> Frame:
    content = _functional_group(ds, index, "FrameContentSequence")
    temporal = integer(content, "TemporalPositionIndex") if content is not None else None
    return _frame(
        _functional_group(ds, index, "PlanePositionSequence"),
        _functional_group(ds, index, "PlaneOrientationSequence"),
        _functional_group(ds, index, "PixelMeasuresSequence"),
        _functional_group(ds, index, "PixelValueTransformationSequence"),
        path,
        index,
        ds,
        temporal_position=temporal,
    )
