"""Read a DICOM RTSTRUCT: each ROI's planar contours rasterised onto the grid of the series they outline.

Radiotherapy departments draw their structures as RTSTRUCT contours: closed polygons in patient coordinates
(LPS mm), one or more per slice. `read_rtstruct` turns each ROI into a boolean mask on the reference
image's grid (the CT the RTSTRUCT references):

* every contour must lie on one slice of the reference (within `SLICE_TOLERANCE` of a voxel plane) and in
  its plane; contours off the slice positions, or a series not parallel to them, are refused by name;
* each contour is filled by a scanline with the even-odd rule on voxel centres, and the contours of one ROI
  on one slice are combined by exclusive or: a contour inside another is a hole, one inside a hole an
  island, as the standard describes (C.8.8.6.3);
* ROI numbers and names are kept.

Written on pydicom and NumPy (a scanline fill is a few lines, and the polygon libraries at hand either fill
boundary pixels or are not installed); tested against an independent rasterisation (PIL's polygon fill)
and the structure volumes of the shared LUNG1 case.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import pydicom

from medseg.errors import GeometryError, InputError
from medseg.io.annotations import Structure, annotation_kind, is_rtstruct, labelled_series
from medseg.io.image import LPS_TO_RAS, Image, LabelMap

#: A contour's points must lie within this share of a slice step of one voxel plane.
SLICE_TOLERANCE = 0.1
#: Contour types that enclose an area; points and open polylines enclose none and are skipped.
CLOSED = ("CLOSED_PLANAR",)


def is_rtstruct_file(path: str | os.PathLike) -> bool:
    """True for a DICOM file holding an RT Structure Set (its header alone is read)."""
    return annotation_kind(path) == "rtstruct"


def read_rtstruct(path: str | os.PathLike, reference: Image, fill: str = "centre") -> list[Structure]:
    """Every ROI of the RTSTRUCT at `path` as a mask on `reference`'s grid (a 3D image); `fill` is one
    of `FILLS`."""
    if fill not in FILLS:
        raise ValueError(f"fill {fill!r}; use one of {', '.join(FILLS)}")
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except Exception as error:  # pydicom raises many types for broken files
        raise InputError(path, f"unreadable RTSTRUCT ({type(error).__name__})") from None
    if not is_rtstruct(ds):
        raise InputError(path, "not an RT Structure Set")
    if reference.ndim != 3:
        raise GeometryError(path, "RTSTRUCT contours are placed on a 3D series; the reference is 2D")
    series = reference.meta.get("series_instance_uid")
    drawn_on = labelled_series(ds) or []
    if series and drawn_on and series not in drawn_on:
        raise InputError(path, "its contours were drawn on another series than the reference")
    names = {int(roi.ROINumber): str(roi.get("ROIName", "")) for roi in ds.get("StructureSetROISequence", [])}
    world_to_voxel = np.linalg.inv(reference.affine) @ LPS_TO_RAS
    structures = []
    for roi in ds.get("ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        structure = Structure(number, names.get(number, f"ROI {number}"), np.zeros(reference.shape, bool))
        for contour in roi.get("ContourSequence", []):
            if str(contour.get("ContourGeometricType", "")) not in CLOSED:
                continue
            points = np.asarray(contour.ContourData, dtype=np.float64).reshape(-1, 3)
            voxels = (np.c_[points, np.ones(len(points))] @ world_to_voxel.T)[:, :3]
            k = _slice_of(voxels[:, 2], path, structure.name, reference.shape[2])
            if k is None:
                structure.notes.append("a contour outside the reference's slices was left out")
                continue
            structure.mask[:, :, k] ^= FILLS[fill](voxels[:, 0], voxels[:, 1], reference.shape[:2])
            structure.contours += 1
        structures.append(structure)
    return structures


def rtstruct_labels(path: str | os.PathLike, reference: Image, fill: str = "centre") -> LabelMap:
    """The RTSTRUCT as one label map on `reference`'s grid: each ROI's voxels hold its ROI number, larger
    structures painted first so that one inside another (a tumour in a lung) keeps its voxels.
    ``meta["segment_labels"]`` maps ROI numbers to names, for name mappings (``--map '{"GTV-1": 1}'``)."""
    structures = read_rtstruct(path, reference, fill)
    if not structures:
        raise InputError(path, "the structure set holds no ROI contours")
    labels = paint(structures, reference.shape, lambda structure: structure.number)
    meta = {"source": Path(path).name, "segment_labels": {s.number: s.name for s in structures}}
    return LabelMap(labels, reference.affine.copy(), meta)


def paint(
    structures: list[Structure], shape: tuple[int, ...], value_of: Callable[[Structure], int | None]
) -> np.ndarray:
    """One label map of `structures`, each painted with `value_of(structure)` (None: left out), larger
    structures first so that one inside another (a tumour in a lung) keeps its voxels."""
    values = {structure.number: value_of(structure) for structure in structures}
    largest = max((v for v in values.values() if v is not None), default=0)
    labels = np.zeros(shape, dtype=np.uint16 if largest > 255 else np.uint8)
    for structure in sorted(structures, key=lambda s: -int(s.mask.sum())):
        if values[structure.number] is not None:
            labels[structure.mask] = values[structure.number]
    return labels


def _slice_of(k: np.ndarray, path: Path, name: str, slices: int) -> int | None:
    """The slice a contour lies on, None when it lies beyond the reference's slices."""
    if np.ptp(k) > 2 * SLICE_TOLERANCE:
        raise GeometryError(path, f"a contour of {name} is not parallel to the reference's slices")
    centre = float(np.mean(k))
    if abs(centre - round(centre)) > SLICE_TOLERANCE:
        raise GeometryError(
            path, f"a contour of {name} lies between the reference's slices (at slice {centre:.2f})"
        )
    index = round(centre)
    return index if 0 <= index < slices else None


def fill_polygon(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Voxel centres (integer i, j) inside the closed polygon with vertices (x, y) = (i, j), by the even-odd
    rule: a scanline per j, edges crossing it half-open (so a vertex counts once), spans [x0, x1)."""
    mask = np.zeros(shape, dtype=bool)
    x0, y0 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    low = max(0, math.ceil(float(y0.min())))
    high = min(shape[1] - 1, math.floor(float(y0.max())))
    for j in range(low, high + 1):
        crossing = ((y0 <= j) & (y1 > j)) | ((y1 <= j) & (y0 > j))
        if not crossing.any():
            continue
        xs = np.sort(
            x0[crossing] + (j - y0[crossing]) * (x1[crossing] - x0[crossing]) / (y1[crossing] - y0[crossing])
        )
        for start, stop in zip(xs[0::2], xs[1::2], strict=False):
            first, last = max(0, math.ceil(start)), min(shape[0], math.ceil(stop))
            if first < last:
                mask[first:last, j] = True
    return mask


def fill_polygon_outline(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Voxels inside the polygon or on its drawn outline (PIL's polygon fill with outline): the
    boundary-inclusive rule of tools that rasterise with an image library (rt-utils' OpenCV fill is
    alike). It makes every structure larger by about half a voxel along its perimeter."""
    picture = PIL.Image.new("1", (shape[0], shape[1]), 0)
    PIL.ImageDraw.Draw(picture).polygon(list(zip(x.tolist(), y.tolist(), strict=True)), fill=1, outline=1)
    return np.asarray(picture, dtype=bool).T  # PIL's rows are j


#: How a contour becomes voxels: ``centre`` (default), the voxels whose centre it encloses, by the
#: even-odd rule: its volume is the contour's own enclosed volume; ``outline``, also every voxel its
#: outline is drawn through (`fill_polygon_outline`), to reproduce masks and volumes made that way.
FILLS = {"centre": fill_polygon, "outline": fill_polygon_outline}
