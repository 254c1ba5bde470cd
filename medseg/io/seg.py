"""Read DICOM Segmentation objects (SEG) into a `LabelMap`, with highdicom.

`read_seg` combines the segments into one label map whose values are the segment numbers (overlapping
segments are refused: a label map holds one class per voxel); `read_seg_segments` reads each segment as a
mask of its own, so overlapping ones (a tumour drawn inside an organ) stay whole. Two ways to place them:

* on the SEG's own frame geometry (plane positions and orientation stored in the SEG), or
* on the grid of the referenced source series (``reference``): when ``reference.meta["sop_instance_uids"]``
  lists the series' SOP Instance UIDs in slice order (as `medseg.io.dicom` puts them), frames are matched
  by reference and then cross-checked against the SEG's plane positions; otherwise the SEG's own
  geometry must lie exactly on the reference grid. Nothing is interpolated and nothing is guessed.
"""

from __future__ import annotations

import os
from pathlib import Path

import highdicom as hd
import numpy as np

from medseg.errors import GeometryError, InputError
from medseg.io.annotations import Structure
from medseg.io.image import LPS_TO_RAS, Image, LabelMap

#: Voxel centres of the SEG and the reference grid must coincide within this fraction of a voxel.
GRID_TOLERANCE_VOXELS = 0.01
#: Label values are stored in the smallest unsigned type that holds the largest segment number.
_LABEL_DTYPE = np.uint8


class OverlappingSegmentsError(InputError):
    """The SEG's segments overlap, so one label map cannot hold them."""


def _refuse_overlap(error: Exception, path: Path) -> None:
    """highdicom refuses to combine overlapping segments; say so in medseg's words."""
    if "overlap" in str(error):
        raise OverlappingSegmentsError(
            path, "its segments overlap, so one label map cannot hold them (read_seg_segments reads each)"
        ) from None


def _load(path: Path) -> hd.seg.Segmentation:
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        return hd.seg.segread(path)
    except Exception as error:  # pydicom and highdicom raise many types for a non-SEG file
        raise InputError(path, f"not a readable DICOM SEG ({type(error).__name__}: {error})") from None


def _segment_labels(seg: hd.seg.Segmentation) -> dict[int, str]:
    return {int(item.SegmentNumber): str(item.SegmentLabel) for item in seg.SegmentSequence}


def _label_dtype(seg: hd.seg.Segmentation) -> np.dtype:
    return np.dtype(_LABEL_DTYPE if max(seg.get_segment_numbers()) <= 255 else np.uint16)


def _own_geometry(seg: hd.seg.Segmentation, path: Path, segments: list[int] | None) -> LabelMap:
    """Labels of `segments` (None: all) on the SEG's own frames; highdicom's volume axes are (slice,
    row, column) in LPS+."""
    try:
        volume = seg.get_volume(segment_numbers=segments, combine_segments=True, dtype=_label_dtype(seg))
    except (ValueError, RuntimeError) as error:
        _refuse_overlap(error, path)
        raise GeometryError(path, f"SEG frames do not form a regular volume ({error})") from None
    affine = LPS_TO_RAS @ volume.affine[:, [2, 1, 0, 3]]
    return LabelMap(np.ascontiguousarray(volume.array.transpose(2, 1, 0)), affine)


def _by_reference(
    seg: hd.seg.Segmentation, path: Path, reference: Image, segments: list[int] | None
) -> np.ndarray:
    """Labels of `segments` (None: all) per source instance, in the reference's slice order, as an
    (i, j, k) array."""
    uids = [str(uid) for uid in reference.meta["sop_instance_uids"]]
    referenced = {str(item[2]) for item in seg.get_source_image_uids()}
    missing = referenced - set(uids)
    if missing:
        raise GeometryError(path, f"references {len(missing)} instance(s) that are not in the source series")
    if len(uids) != reference.shape[2]:
        raise GeometryError(
            path, f"source lists {len(uids)} SOP instance UIDs for {reference.shape[2]} slices"
        )
    try:
        frames = seg.get_pixels_by_source_instance(
            uids,
            segment_numbers=segments,
            combine_segments=True,
            assert_missing_frames_are_empty=True,
            ignore_spatial_locations=True,  # many SEGs omit SpatialLocationsPreserved; cross-checked below
            dtype=_label_dtype(seg),
        )
    except (ValueError, RuntimeError) as error:
        _refuse_overlap(error, path)
        raise InputError(path, f"cannot match SEG frames to the source series ({error})") from None
    array = np.ascontiguousarray(frames.transpose(2, 1, 0))
    if array.shape != reference.shape:
        raise GeometryError(
            path, f"SEG frames are {array.shape[:2]}, the source series {reference.shape[:2]}"
        )
    return array


def _onto_grid(labels: LabelMap, reference: Image, path: Path) -> np.ndarray:
    """Copy `labels` into an array on `reference`'s grid; its voxel centres must be reference voxels."""
    to_reference = np.linalg.solve(reference.affine, labels.affine)
    offset = to_reference[:3, 3]
    linear = to_reference[:3, :3]
    if not (
        np.allclose(linear, np.round(linear), atol=GRID_TOLERANCE_VOXELS)
        and np.allclose(offset, np.round(offset), atol=GRID_TOLERANCE_VOXELS)
    ):
        raise GeometryError(path, "SEG frames are not on the voxel grid of the reference image")
    index = np.indices(labels.shape).reshape(3, -1)
    target = (np.round(linear) @ index + np.round(offset)[:, None]).astype(int)
    if np.any(target < 0) or np.any(target >= np.asarray(reference.shape)[:, None]):
        raise GeometryError(path, "SEG frames lie outside the reference image")
    out = np.zeros(reference.shape, dtype=labels.array.dtype)
    out[tuple(target)] = labels.array.reshape(-1)
    return out


def read_seg(path: str | os.PathLike, reference: Image | None = None) -> LabelMap:
    """Read a DICOM SEG as a `LabelMap` (value = segment number) on its own or `reference`'s grid.

    ``meta["segment_labels"]`` maps segment numbers to their labels (e.g. ``{1: "Liver"}``).
    """
    path = Path(path)
    seg = _load(path)
    labels = _place(seg, path, reference, None)
    labels.meta.update({"source": path.name, "segment_labels": _segment_labels(seg)})
    return labels


def read_seg_segments(path: str | os.PathLike, reference: Image) -> list[Structure]:
    """Each segment of a DICOM SEG as a mask of its own on `reference`'s grid (number, label, mask), so
    that overlapping segments stay whole; placed as `read_seg` places them.

    Segments that do not overlap (the usual case) are decoded once, together; overlapping ones one by one.
    """
    path = Path(path)
    seg = _load(path)
    labels = _segment_labels(seg)
    try:
        combined = _place(seg, path, reference, None).array
    except OverlappingSegmentsError:
        seg = _load(path)  # highdicom's frame index stays locked after the refused query
        return [
            Structure(number, name, _place(seg, path, reference, [number]).array == number)
            for number, name in labels.items()
        ]
    return [Structure(number, name, combined == number) for number, name in labels.items()]


def _place(
    seg: hd.seg.Segmentation, path: Path, reference: Image | None, segments: list[int] | None
) -> LabelMap:
    """Labels of `segments` (None: all, combined) on the SEG's own grid or on `reference`'s."""
    if reference is None:
        return _own_geometry(seg, path, segments)
    if reference.ndim != 3:
        raise GeometryError(path, "a DICOM SEG is placed on a 3D series; the reference is 2D")
    if "sop_instance_uids" in reference.meta:
        array = _by_reference(seg, path, reference, segments)
        if seg.get_volume_geometry() is not None:
            placed = _onto_grid(_own_geometry(seg, path, segments), reference, path)
            if not np.array_equal(placed, array):
                raise GeometryError(path, "SEG plane positions disagree with the referenced source instances")
        return LabelMap(array, reference.affine.copy())
    return LabelMap(_onto_grid(_own_geometry(seg, path, segments), reference, path), reference.affine.copy())
