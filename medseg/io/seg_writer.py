"""Write a predicted `LabelMap` as a DICOM SEG that references its source series (with highdicom).

Segments are the label map's classes (background excluded), numbered 1..N in class-value order; each
gets a coded category and type (`segment_codes`) and the algorithm's name and version. The series
description says the result is AI-generated and not for clinical use. Frame k of the SEG is slice k
of the label map, i.e. ``array[:, :, k].T`` (rows, columns), taken from source instance k.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import JPEGLSLossless, generate_uid

import medseg
from medseg.errors import GeometryError, InputError
from medseg.io.annotations import MANUFACTURER
from medseg.io.dicom.anonymize import EMPTIED, anonymize, copy_identity_removal
from medseg.io.dicom.files import SkippedFile, read_dataset
from medseg.io.dicom.frames import sop_instance_uid
from medseg.io.image import LabelMap
from medseg.utils.atomic import atomic_path
from medseg.utils.colours import class_colour

#: Every SEG says this, so nobody mistakes it for a reviewed result.
SERIES_DESCRIPTION = "AI-generated segmentation - not for clinical use"
#: Words that make a class a finding (category "Morphologically Abnormal Structure") and the SNOMED CT
#: keyword of its type.
ABNORMAL_WORDS = {
    "tumour": "Tumor",
    "tumor": "Tumor",
    "neoplasm": "Neoplasm",
    "cancer": "Neoplasm",
    "carcinoma": "Neoplasm",
    "lesion": "Lesion",
    "lesions": "Lesion",
    "mass": "Mass",
    "nodule": "Nodule",
    "nodules": "Nodule",
    "metastasis": "Metastasis",
    "metastases": "Metastasis",
    "cyst": "Cyst",
    "gtv": "Tumor",  # radiotherapy's gross tumour volume
}
#: Words left out when looking a structure up by name (laterality and filler).
IGNORED_WORDS = {"left", "right", "l", "r", "the", "of", "and"}
#: British spellings in class names -> the SNOMED CT keyword spelling.
SPELLINGS = {"oesophagus": "esophagus", "haemorrhage": "hemorrhage", "oedema": "edema"}
#: Patient and study attributes the SEG copies from its source (type 2: present, possibly empty).
EMPTY_ALLOWED = ("PatientName", "PatientID", *EMPTIED)
SERIES_NUMBER = 900
#: The SEG kinds ``medseg infer --seg-type`` writes.
SEG_TYPES = {
    "binary": hd.seg.SegmentationTypeValues.BINARY,
    "labelmap": hd.seg.SegmentationTypeValues.LABELMAP,
}
#: A label-map SEG is compressed losslessly with JPEG-LS: on the 4-structure LUNG1 CT (512x512x134) it
#: took 197 kB against 746 kB with RLE and 35 MB uncompressed (binary SEG: 17.8 MB; bit planes cannot be
#: compressed). Viewers that read label-map SEGs (OHIF 3.11, Slicer) decode JPEG-LS.
LABELMAP_TRANSFER_SYNTAX = JPEGLSLossless


def _keyword(words: Sequence[str]) -> str:
    return "".join(word.capitalize() for word in words)


#: Where a class name is looked up: DICOM's segmentation property types (CID 7151: organs and other
#: anatomical structures), then its anatomic regions (CID 4). Not all of SNOMED CT: "Anterior" or "Left"
#: there are qualifier values, which a viewer would show as the structure.
STRUCTURE_CONTEXT_GROUPS = (codes.cid7151, codes.cid4)


def _lookup(keyword: str) -> Code | None:
    for group in STRUCTURE_CONTEXT_GROUPS:
        try:
            return getattr(group, keyword)
        except AttributeError:
            continue
    return None


def segment_codes(name: str) -> tuple[Code, Code]:
    """(category, type) codes for a class name, e.g. ``"liver"`` -> Anatomical Structure, Liver.

    Tumour-like names (`ABNORMAL_WORDS`) get Morphologically Abnormal Structure; other names are looked
    up among the anatomical structures (`STRUCTURE_CONTEXT_GROUPS`) by their words (laterality left
    out), falling back to the generic type Anatomical Structure.
    """
    words = [SPELLINGS.get(w, w) for w in re.findall(r"[a-z]+", name.lower())]
    for word in words:
        if word in ABNORMAL_WORDS:
            return codes.SCT.MorphologicallyAbnormalStructure, getattr(codes.SCT, ABNORMAL_WORDS[word])
    significant = [w for w in words if w not in IGNORED_WORDS]
    candidates = [
        _keyword(significant),
        _keyword(significant[::-1]),
        *map(_keyword, ([w] for w in significant[::-1])),
    ]
    for keyword in candidates:
        code = _lookup(keyword) if keyword else None
        if code is not None:
            return codes.SCT.AnatomicalStructure, code
    return codes.SCT.AnatomicalStructure, codes.SCT.AnatomicalStructure


def read_source_headers(
    files: Sequence[str | os.PathLike], sop_instance_uids: Sequence[str] | None = None
) -> list[pydicom.Dataset]:
    """Headers of the source `files` ordered as `sop_instance_uids` (the label map's slice order), each
    once (the frames of a multi-frame image share its UID).

    Without `sop_instance_uids` (one 2D image), the headers in the order of `files`.
    """
    by_uid = {}
    frame_of_reference = generate_uid()  # one for the whole series, where its files carry none
    for path in files:
        ds = read_dataset(Path(path), pixels=False)  # the same reader as the images (no preamble...)
        if isinstance(ds, SkippedFile):
            raise InputError(path, ds.reason)
        # Some files carry their UIDs only in the file meta; the SEG references them from the dataset.
        ds.SOPInstanceUID = sop_instance_uid(ds)
        if not str(ds.get("SpecificCharacterSet", "") or "").strip():  # empty, common in PACS data:
            ds.pop("SpecificCharacterSet", None)  # absent means the default repertoire
        if not str(ds.get("FrameOfReferenceUID", "") or "").strip():  # the SEG needs one: made
            ds.FrameOfReferenceUID = frame_of_reference
        if not ds.get("SOPClassUID"):
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        _drop_malformed_numbers(ds)
        for keyword in EMPTY_ALLOWED:  # the SEG copies them; DICOM allows them empty, not absent
            if keyword not in ds:
                setattr(ds, keyword, "")
        by_uid[str(ds.SOPInstanceUID)] = ds
    if sop_instance_uids is None:
        return list(by_uid.values())
    missing = [uid for uid in sop_instance_uids if uid not in by_uid]
    if missing:
        raise InputError(Path(files[0]).parent, f"{len(missing)} source instance(s) of the labels not found")
    return [by_uid[str(uid)] for uid in dict.fromkeys(sop_instance_uids)]


def _drop_malformed_numbers(ds: pydicom.Dataset) -> None:
    """Remove the decimal and integer strings that are not numbers ("2.5/0" in some exports) from a
    source header: the SEG copies some of them, and pydicom refuses to write them. The image's geometry
    was read and checked from the same header before, so a value needed for it never reaches here."""
    for element in list(ds):
        if element.VR not in ("DS", "IS"):
            continue
        raw = (
            element.value
            if isinstance(element.value, (list, pydicom.multival.MultiValue))
            else [element.value]
        )
        try:
            [float(value) for value in raw if value not in (None, "")]
        except (TypeError, ValueError):
            del ds[element.tag]


def _frames(
    labels: LabelMap,
    sources: Sequence[pydicom.Dataset],
    segment_of: np.ndarray,
    frame_numbers: Sequence[int] | None,
) -> np.ndarray:
    """(frames, rows, columns) array of segment numbers: frame k from slice k, or for one multi-frame
    source, frame n from the slice whose `frame_numbers` entry is n (the source's frame order)."""
    array = labels.array if labels.ndim == 3 else labels.array[:, :, None]
    if frame_numbers is not None:  # every frame of the source, empty where no slice was selected from it
        count = int(sources[0].get("NumberOfFrames", 1) or 1)
        numbers = np.asarray(frame_numbers)
        if (
            len(sources) != 1
            or len(set(numbers)) != len(numbers)
            or numbers.min() < 1
            or numbers.max() > count
        ):
            raise GeometryError(None, f"label slices from frames {list(frame_numbers)} of {count}")
        frames = np.zeros((*array.shape[:2], count), dtype=array.dtype)
        frames[:, :, numbers - 1] = array
        array = frames
    elif array.shape[2] != len(sources):
        raise GeometryError(None, f"{array.shape[2]} label slices for {len(sources)} source instances")
    rows, columns = int(sources[0].Rows), int(sources[0].Columns)
    if array.shape[:2] != (columns, rows):
        raise GeometryError(
            None, f"label slices are {array.shape[:2]}, source images {columns}x{rows} (columns x rows)"
        )
    return np.ascontiguousarray(segment_of[array].transpose(2, 1, 0))


def write_seg(
    labels: LabelMap,
    sources: Sequence[pydicom.Dataset],
    path: str | os.PathLike,
    class_names: dict[int, str],
    algorithm_name: str,
    algorithm_version: str,
    pseudonym: str | None = None,
    series_description: str = SERIES_DESCRIPTION,
    frame_numbers: Sequence[int] | None = None,
    seg_type: str = "binary",
    colours: Mapping[int, tuple[int, int, int]] | None = None,
) -> dict[int, int]:
    """Write `labels` (on the source grid, slice k = ``sources[k]``, or frame ``frame_numbers[k]`` of one
    multi-frame source) as a DICOM SEG at `path`: ``binary`` (one bit plane per segment, what every
    viewer reads) or ``labelmap`` (one frame of segment numbers per slice, DICOM 2024c: several times
    smaller for many classes; `SEG_TYPES`). Segments carry their overlay colour, or `colours[value]`.

    `series_description` starts with `SERIES_DESCRIPTION` (results are recognised by it).

    The SEG copies the source's patient and study modules, as the standard requires; with `pseudonym`
    the patient is replaced by it (`medseg.io.dicom.anonymize.anonymize`). Returns
    ``{segment number: class value}``.
    """
    if seg_type not in SEG_TYPES:
        raise ValueError(f"seg_type {seg_type!r}; use one of {', '.join(SEG_TYPES)}")
    classes = sorted(value for value in class_names if value > 0)
    segment_of = np.zeros(max(max(classes, default=0), int(labels.array.max())) + 1, dtype=np.uint16)
    segment_of[classes] = np.arange(1, len(classes) + 1)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, family=codes.cid7162.ArtificialIntelligence, version=algorithm_version
    )
    descriptions = []
    for number, value in enumerate(classes, start=1):
        category, kind = segment_codes(class_names[value])
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=class_names[value],
                segmented_property_category=category,
                segmented_property_type=kind,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                display_color=hd.color.CIELabColor.from_rgb(*(colours or {}).get(value, class_colour(value))),
            )
        )
    for ds in sources:  # highdicom copies it into the SEG: a malformed one was dropped on reading
        if "SliceThickness" not in ds and labels.ndim == 3:
            ds.SliceThickness = f"{labels.spacing[2]:.6g}"  # the distance between slice centres
    frames = _frames(labels, sources, segment_of, frame_numbers)
    seg = hd.seg.Segmentation(
        source_images=list(sources),
        pixel_array=frames.astype(np.uint8 if len(classes) < 256 else np.uint16),
        segmentation_type=SEG_TYPES[seg_type],
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=algorithm_name,
        software_versions=f"medseg {medseg.__version__}",
        device_serial_number="0",
        series_description=series_description,
        omit_empty_frames=False,
        **({"transfer_syntax_uid": LABELMAP_TRANSFER_SYNTAX} if seg_type == "labelmap" else {}),
    )
    copy_identity_removal(seg, sources[0])
    if pseudonym is not None:
        anonymize(seg, pseudonym)
    with atomic_path(path) as temporary:
        seg.save_as(temporary)
    return {number: value for number, value in enumerate(classes, start=1)}
