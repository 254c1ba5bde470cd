"""Write a label map as a DICOM RT Structure Set: one ROI per class, closed planar contours per slice.

Radiotherapy planning systems take structures as RTSTRUCT contours, not masks. Each class becomes one ROI
(`ROIDisplayColor` = its overlay colour, ROIGenerationAlgorithm AUTOMATIC); each slice of its mask
becomes contours that follow the **voxel edges** (`mask_contours`): the outline of the voxels' squares,
with collinear steps merged. Read back with `medseg.io.rtstruct` (even-odd rule on voxel centres), such
a contour gives exactly the voxels it came from, holes and islands included, so the round trip loses
nothing; a smoothed (marching-squares) contour would lose or add part of a voxel along every edge. The
price is staircase outlines, as a planning system shows masks imported from any voxel segmentation.

Contours are in the patient's LPS mm, on the source slices' planes, each referencing the source instance
of its slice; the patient and study modules are copied from the source (or pseudonymised).
"""

from __future__ import annotations

import datetime
import os
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import medseg
from medseg.errors import GeometryError
from medseg.io.annotations import MANUFACTURER, RTSTRUCT_SOP_CLASS
from medseg.io.dicom.anonymize import anonymize, copy_identity_removal
from medseg.io.image import LPS_TO_RAS, LabelMap
from medseg.utils.atomic import atomic_path
from medseg.utils.colours import class_colour

#: Patient and study attributes an RTSTRUCT copies from its source (type 2 ones made empty if absent).
COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)
SERIES_NUMBER = 901
STRUCTURE_SET_LABEL = "medseg AI"
#: Steps along the four directions of a voxel edge (as corner offsets), counter-clockwise order.
DIRECTIONS = ((1, 0), (0, 1), (-1, 0), (0, -1))


def mask_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Closed polygons along the voxel edges of 2D boolean `mask` (axes i, j), as (n, 2) arrays of voxel
    coordinates (corners at half-integers), collinear points merged. Filled by the even-odd rule on voxel
    centres and combined by exclusive or, they give `mask` back exactly."""
    padded = np.pad(mask.astype(bool), 1)
    inside = padded[1:-1, 1:-1]
    edges: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    # Corner (a, b) is the point (a - 0.5, b - 0.5); each edge keeps the inside on its left.
    for (di, dj), (start, end) in zip(
        ((0, -1), (1, 0), (0, 1), (-1, 0)),
        (((0, 0), (1, 0)), ((1, 0), (1, 1)), ((1, 1), (0, 1)), ((0, 1), (0, 0))),
        strict=True,
    ):
        neighbour = padded[1 + di : padded.shape[0] - 1 + di, 1 + dj : padded.shape[1] - 1 + dj]
        for i, j in np.argwhere(inside & ~neighbour):
            edges[(i + start[0], j + start[1])].append((i + end[0], j + end[1]))
    polygons = []
    while edges:
        first = next(iter(edges))
        loop, corner = [first], first
        while True:
            following = edges[corner]
            step = following.pop()
            if not following:
                del edges[corner]
            if step == first:
                break
            loop.append(step)
            corner = step
        polygons.append(_merge_collinear(np.asarray(loop, dtype=np.float64) - 0.5))
    return polygons


def _merge_collinear(points: np.ndarray) -> np.ndarray:
    """`points` of a closed polygon without those in the middle of a straight run."""
    before, after = np.roll(points, 1, axis=0), np.roll(points, -1, axis=0)
    incoming, outgoing = points - before, after - points
    turn = incoming[:, 0] * outgoing[:, 1] - incoming[:, 1] * outgoing[:, 0] != 0  # 2D cross product
    return points[turn]


def write_rtstruct(
    labels: LabelMap,
    sources: Sequence[pydicom.Dataset],
    path: str | os.PathLike,
    class_names: dict[int, str],
    algorithm_name: str,
    pseudonym: str | None = None,
    series_description: str = "AI-generated structures - not for clinical use",
) -> dict[int, int]:
    """Write `labels` (3D, on the source grid, slice k = ``sources[k]``) as an RTSTRUCT at `path`;
    returns ``{ROI number: class value}`` (classes with no voxel get no ROI)."""
    if labels.ndim != 3 or labels.shape[2] != len(sources):
        raise GeometryError(None, f"an RTSTRUCT needs one source slice per label slice, got {labels.shape}")
    first = sources[0]
    frame_of_reference = str(first.FrameOfReferenceUID)
    to_lps = LPS_TO_RAS @ labels.affine  # voxel (i, j, k) -> LPS mm (LPS_TO_RAS is its own inverse)
    now = datetime.datetime.now()
    ds = pydicom.Dataset()
    if str(first.get("SpecificCharacterSet", "") or "").strip():  # names in the source's repertoire
        ds.SpecificCharacterSet = first.SpecificCharacterSet
    for keyword in COPIED:
        setattr(ds, keyword, first.get(keyword, ""))
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_SOP_CLASS, generate_uid()
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "RTSTRUCT", generate_uid(), SERIES_NUMBER
    ds.SeriesDescription, ds.InstanceNumber = series_description, 1
    ds.Manufacturer, ds.ManufacturerModelName = MANUFACTURER, algorithm_name[:64]
    ds.SoftwareVersions = f"medseg {medseg.__version__}"
    ds.OperatorsName = ""
    ds.FrameOfReferenceUID = frame_of_reference
    ds.PositionReferenceIndicator = first.get("PositionReferenceIndicator", "")
    ds.StructureSetLabel = STRUCTURE_SET_LABEL
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([_referenced_frame(sources)])
    rois, observations, contours, numbers = [], [], [], {}
    for value in sorted(v for v in class_names if v > 0):
        mask = labels.array == value
        if not mask.any():
            continue
        number = len(numbers) + 1
        numbers[number] = value
        roi = pydicom.Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID = number, frame_of_reference
        roi.ROIName, roi.ROIGenerationAlgorithm = class_names[value][:64], "AUTOMATIC"
        rois.append(roi)
        observation = pydicom.Dataset()
        observation.ObservationNumber, observation.ReferencedROINumber = number, number
        observation.RTROIInterpretedType, observation.ROIInterpreter = "", ""
        observations.append(observation)
        item = pydicom.Dataset()
        item.ROIDisplayColor = list(class_colour(value))
        item.ReferencedROINumber = number
        item.ContourSequence = DicomSequence(_slice_contours(mask, sources, to_lps))
        contours.append(item)
    ds.StructureSetROISequence = DicomSequence(rois)
    ds.ROIContourSequence = DicomSequence(contours)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    ds.ApprovalStatus = "UNAPPROVED"
    copy_identity_removal(ds, first)
    if pseudonym is not None:
        anonymize(ds, pseudonym)
        ds.OperatorsName = ""  # type 2 in the RT Series module: present, and empty
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = (
        ds.SOPClassUID,
        ds.SOPInstanceUID,
    )
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    with atomic_path(path) as temporary:
        ds.save_as(temporary, enforce_file_format=True)
    return numbers


def _referenced_frame(sources: Sequence[pydicom.Dataset]) -> pydicom.Dataset:
    """The frame of reference, study, series and every instance the contours were drawn on."""
    images = []
    for source in sources:
        image = pydicom.Dataset()
        image.ReferencedSOPClassUID, image.ReferencedSOPInstanceUID = (
            source.SOPClassUID,
            source.SOPInstanceUID,
        )
        images.append(image)
    series = pydicom.Dataset()
    series.SeriesInstanceUID, series.ContourImageSequence = (
        sources[0].SeriesInstanceUID,
        DicomSequence(images),
    )
    study = pydicom.Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (as PS3.3 asks)
    study.ReferencedSOPInstanceUID = sources[0].StudyInstanceUID
    study.RTReferencedSeriesSequence = DicomSequence([series])
    frame = pydicom.Dataset()
    frame.FrameOfReferenceUID = sources[0].FrameOfReferenceUID
    frame.RTReferencedStudySequence = DicomSequence([study])
    return frame


def _slice_contours(
    mask: np.ndarray, sources: Sequence[pydicom.Dataset], to_lps: np.ndarray
) -> list[pydicom.Dataset]:
    items = []
    for k in np.flatnonzero(mask.any(axis=(0, 1))):
        image = pydicom.Dataset()
        image.ReferencedSOPClassUID = sources[k].SOPClassUID
        image.ReferencedSOPInstanceUID = sources[k].SOPInstanceUID
        for polygon in mask_contours(mask[:, :, k]):
            voxels = np.c_[polygon, np.full(len(polygon), k), np.ones(len(polygon))]
            points = (voxels @ to_lps.T)[:, :3]
            contour = pydicom.Dataset()
            contour.ContourImageSequence = DicomSequence([image])
            contour.ContourGeometricType = "CLOSED_PLANAR"
            contour.NumberOfContourPoints = len(points)
            contour.ContourData = [f"{value:.4f}" for value in points.reshape(-1)]
            items.append(contour)
    return items
