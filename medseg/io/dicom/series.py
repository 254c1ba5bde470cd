"""Read one DICOM series (single-frame files or an enhanced multi-frame file) as a `ScalarImage`.

Output values are the rescaled ones (RescaleSlope/Intercept: Hounsfield units for CT). The array is
**int16** when every frame has slope 1 and a whole-number intercept and all values fit in int16, and
**float32** otherwise (and after a repair). The affine is RAS+ (DICOM's LPS+ converted at the edge);
array axes are (column, row, slice) with slices ascending along the slice normal.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import pydicom

from medseg.errors import GeometryError, InputError
from medseg.io.dicom.files import list_files, read_datasets, split_images
from medseg.io.dicom.frames import Frame, frames_of
from medseg.io.dicom.geometry import Stack, assemble
from medseg.io.dicom.mosaic import is_mosaic
from medseg.io.dicom.pixels import check_decodable, read_native_into, stored_dtype, stored_frames
from medseg.io.dicom.repair import remove_tilt, uniform_spacing
from medseg.io.dicom.values import text
from medseg.io.image import LPS_TO_RAS, ScalarImage

#: Range of the compact integer output type.
INT16_RANGE = (-32768, 32767)


def read_series(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    series_uid: str | None = None,
    repair: Collection[str] = (),
    time_point: int | None = None,
    select: Mapping[str, str] | None = None,
) -> ScalarImage:
    """Read the DICOM series in folder `source` (any depth) or in the listed files.

    `series_uid` picks one series when several are present (otherwise that is an InputError that lists
    them); `repair` allows the resampling repairs of `medseg.io.dicom.geometry.REPAIRS`; `time_point`
    picks one TemporalPositionIdentifier (or AcquisitionNumber) when a series repeats its positions;
    `select` keeps the frames whose header values match (``{"EchoNumbers": "1"}``, keywords of
    `medseg.io.dicom.frames.STACK_KEYS`) when it stacks several volumes.
    """
    if isinstance(source, (str, os.PathLike)):
        where, paths = Path(source), list_files(source)
    else:
        paths = [Path(p) for p in source]
        where = paths[0].parent if paths else None
    if not paths:
        raise InputError(where, "no files to read")
    images, skipped = split_images(zip(paths, read_datasets(paths, pixels=True), strict=True))
    if not images:
        reasons = sorted({s.reason for s in skipped})
        raise InputError(where, f"no DICOM image in {len(paths)} file(s) ({'; '.join(reasons)})")
    images = _one_series(images, series_uid, where)
    datasets = {path: ds for path, ds in images}
    for path, ds in images:
        check_decodable(ds, path)
    frames = [frame for path, ds in images for frame in frames_of(ds, path)]
    stack = assemble(frames, repair, time_point, select)
    array = _rescaled_stack(stack.frames, datasets)
    if stack.needs("resample_tilt"):
        array = remove_tilt(array, stack)
    if stack.needs("resample_spacing"):
        array = uniform_spacing(array, stack)
    first = images[0][1]
    meta = _meta(first, stack, array.shape[0], len(skipped))
    try:
        return ScalarImage(array.transpose(2, 1, 0), LPS_TO_RAS @ stack.affine_lps, meta)
    except ValueError as error:  # e.g. a PixelSpacing of 1e-300: positive, but no volume
        raise GeometryError(stack.frames[0].where, f"the slices do not form a grid ({error})") from None


def _one_series(
    images: list[tuple[Path, pydicom.Dataset]], series_uid: str | None, where: Path | None
) -> list[tuple[Path, pydicom.Dataset]]:
    by_series: dict[str, list[tuple[Path, pydicom.Dataset]]] = defaultdict(list)
    for path, ds in images:
        by_series[text(ds, "SeriesInstanceUID")].append((path, ds))
    if series_uid is not None:
        if series_uid not in by_series:
            raise InputError(where, f"no series {series_uid}; found {_describe(by_series)}")
        return by_series[series_uid]
    if len(by_series) > 1:
        raise InputError(
            where, f"{len(by_series)} series found, choose one by SeriesInstanceUID: {_describe(by_series)}"
        )
    return next(iter(by_series.values()))


def _describe(by_series: dict[str, list[tuple[Path, pydicom.Dataset]]]) -> str:
    parts = []
    for uid, items in by_series.items():
        ds = items[0][1]
        parts.append(
            f"{uid} ({ds.get('Modality', '?')}, '{ds.get('SeriesDescription', '')}', {len(items)} files)"
        )
    return "; ".join(parts)


def _rescaled_stack(frames: Sequence[Frame], datasets: dict[Path, pydicom.Dataset]) -> np.ndarray:
    """Stored values in slice order, rescaled; shape (slices, rows, columns), int16 or float32."""
    dtype = np.result_type(*{stored_dtype(ds) for ds in datasets.values()})
    stored = np.empty((len(frames), frames[0].rows, frames[0].columns), dtype=dtype)
    decoded: dict[Path, np.ndarray] = {}  # multi-frame files, decoded once
    for k, frame in enumerate(frames):
        ds = datasets[frame.path]
        if frame.multi_frame or not read_native_into(ds, frame.path, stored[k]):
            if frame.path not in decoded:
                decoded[frame.path] = stored_frames(ds, frame.path)
            stored[k] = decoded[frame.path][frame.index]
            if not frame.multi_frame:
                del decoded[frame.path]
    slopes = np.array([f.slope for f in frames])
    intercepts = np.array([f.intercept for f in frames])
    if np.all(slopes == 1) and np.all(intercepts == np.round(intercepts)):
        low, high = int(stored.min()) + intercepts.min(), int(stored.max()) + intercepts.max()
        if INT16_RANGE[0] <= low and high <= INT16_RANGE[1]:
            if stored.dtype != np.int16:  # add in int32: the stored values may not fit int16 before rescaling
                return (stored.astype(np.int32) + intercepts.astype(np.int32)[:, None, None]).astype(np.int16)
            if np.any(intercepts != 0):
                stored += intercepts.astype(np.int16)[:, None, None]
            return stored
    out = stored.astype(np.float32)
    out *= slopes.astype(np.float32)[:, None, None]
    out += intercepts.astype(np.float32)[:, None, None]
    return out


def _meta(ds: pydicom.Dataset, stack: Stack, slices: int, skipped: int) -> dict[str, object]:
    """Non-identifying facts about the series (no patient names, IDs or dates from the headers), and its
    folder as the source that errors name."""
    meta: dict[str, object] = {
        "modality": str(ds.get("Modality", "")),
        "study_instance_uid": str(ds.get("StudyInstanceUID", "")),
        "series_instance_uid": str(ds.get("SeriesInstanceUID", "")),
        "series_description": str(ds.get("SeriesDescription", "")),
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "")),
        "sop_instance_uids": [f.sop_instance_uid for f in stack.frames],
        "number_of_slices": slices,
        "source": str(stack.frames[0].path.parent),  # what errors about the image name
    }
    if is_mosaic(ds):
        meta["mosaic"] = True  # its slices share one image: no frame of it to reference
    elif stack.frames[0].multi_frame:
        meta["frame_numbers"] = [f.index + 1 for f in stack.frames]  # 1-based, as DICOM references frames
    if stack.repairs:
        meta["repairs"] = list(stack.repairs)
    if stack.notes:
        meta["notes"] = list(stack.notes)
    if skipped:
        meta["skipped_files"] = skipped
    return meta
