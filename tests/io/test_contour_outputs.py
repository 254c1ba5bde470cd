"""What medseg writes for clinicians' systems: RT Structure Sets whose contours read back to the very mask,
and binary and label-map SEGs of the same labels, with structure codes and display colours, checked by
dicom3tools' dciodvfy (an independent conformance checker) and read back on the source grid."""

from __future__ import annotations

import subprocess

import numpy as np
import pydicom
import pytest
from highdicom.color import CIELabColor
from space import assert_same_voxels_in_space
from system_tools import require_tool

from medseg import LabelMap, read_image
from medseg.io.annotations import SEG_SOP_CLASSES
from medseg.io.rtstruct import fill_polygon, read_rtstruct, rtstruct_labels
from medseg.io.rtstruct_writer import mask_contours, write_rtstruct
from medseg.io.seg import read_seg
from medseg.io.seg_writer import read_source_headers, write_seg
from medseg.utils.colours import class_colour

LUNG1 = "nsclc_lung1_ct_rtstruct"
BINARY_SEG_SOP_CLASS = SEG_SOP_CLASSES[0]
#: What the Debian dciodvfy (dicom3tools 2022-06-18) says of any label-map SEG: it predates DICOM 2024c
#: (Supplement 243), so it knows neither the Label Map Segmentation Storage SOP class nor its segment 0.
SEGMENT_ZERO = (
    "Error - SegmentNumber not monotonically increasing from one by one - have SegmentSequence item "
    "number 1 (from one) with SegmentNumber of 0"
)
DCIODVFY_BEFORE_LABELMAPS = {"Error - Information Object Not found", SEGMENT_ZERO}
#: ...and checked as the binary Segmentation IOD it knows, only what Supplement 243 changed: segment 0
#: (background), the LABELMAP type, and no per-frame segment identification.
LABELMAP_AS_BINARY_SEG = {
    SEGMENT_ZERO,
    "Error - Value is zero for value 1 of attribute <Segment Number>",
    "Error - Unrecognized enumerated value <LABELMAP> for value 1 of attribute <Segmentation Type>",
    "Error - Missing attribute Type 1 Required Element=<SegmentIdentificationSequence> "
    "Module=<SegmentationMacro>",
}


def test_voxel_edge_contours_fill_back_to_the_very_mask():
    rng = np.random.default_rng(7)
    pinch = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], bool)  # voxels touching at corners only
    ring = np.pad(np.ones((5, 5), bool), 2)
    ring[3:6, 3:6] = False
    ring[4, 4] = True  # an island in a hole
    for mask in [pinch, ring, *(rng.random((11, 9)) < rng.uniform(0.2, 0.8) for _ in range(50))]:
        filled = np.zeros_like(mask)
        for polygon in mask_contours(mask):
            filled ^= fill_polygon(polygon[:, 0], polygon[:, 1], mask.shape)
        np.testing.assert_array_equal(filled, mask)
    [square] = mask_contours(np.ones((3, 2), bool))
    assert len(square) == 4  # collinear points merged


@pytest.fixture(scope="module")
def lung1(datasets_dir):
    """The LUNG1 CT, its clinician structures as one label map (ROI numbers), and the source headers."""
    root = datasets_dir / LUNG1
    ct = read_image(root / "CT")
    labels = rtstruct_labels(next((root / "RTSTRUCT").glob("*.dcm")), ct)
    headers = read_source_headers(sorted((root / "CT").glob("*.dcm")), ct.meta["sop_instance_uids"])
    return ct, labels, headers


def _dciodvfy_errors(path) -> set[str]:
    dciodvfy = require_tool("dciodvfy", "dicom3tools")
    checked = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=120)
    return {line.strip() for line in (checked.stdout + checked.stderr).splitlines() if "Error" in line}


def test_an_rtstruct_written_by_medseg_reads_back_to_the_clinicians_structures(lung1, tmp_path):
    ct, labels, headers = lung1
    names = labels.meta["segment_labels"]
    path = tmp_path / "rtstruct.dcm"
    numbers = write_rtstruct(labels, headers, path, names, "medseg test", pseudonym="ANON-1")
    assert _dciodvfy_errors(path) == set()
    back = {structure.name: structure for structure in read_rtstruct(path, ct)}
    for value, name in names.items():
        expected = labels.array == value
        assert expected.sum() > 1000 and np.array_equal(back[name].mask, expected), name  # Dice 1.0
    written = pydicom.dcmread(path)
    assert written.PatientID == "ANON-1" and written.DeidentificationMethod
    for item in written.ROIContourSequence:
        assert [int(v) for v in item.ROIDisplayColor] == list(class_colour(numbers[item.ReferencedROINumber]))
    referenced = {
        contour.ContourImageSequence[0].ReferencedSOPInstanceUID
        for item in written.ROIContourSequence
        for contour in item.ContourSequence
    }
    assert referenced <= set(ct.meta["sop_instance_uids"])


#: Slices of LUNG1 the SEG test writes (all four structures cross them; the whole CT takes 3x longer).
SEG_SLICES = slice(64, 88)


def test_binary_and_label_map_segs_of_one_mask_decode_to_the_same_labels(lung1, tmp_path):
    _, full, all_headers = lung1
    shift = np.eye(4)
    shift[2, 3] = SEG_SLICES.start  # the first kept slice's voxel index becomes 0
    labels = LabelMap(full.array[:, :, SEG_SLICES], full.affine @ shift, dict(full.meta))
    headers = all_headers[SEG_SLICES]
    names = {value: name for value, name in labels.meta["segment_labels"].items()}
    sizes = {}
    for kind in ("binary", "labelmap"):
        path = tmp_path / f"{kind}.dcm"
        write_seg(labels, headers, path, names, "medseg test", "1", seg_type=kind)
        sizes[kind] = path.stat().st_size
        errors = _dciodvfy_errors(path)
        assert errors == set() if kind == "binary" else errors <= DCIODVFY_BEFORE_LABELMAPS, errors
        if kind == "labelmap":  # every other module checked under the SOP class the checker knows
            as_binary = pydicom.dcmread(path)
            as_binary.SOPClassUID = as_binary.file_meta.MediaStorageSOPClassUID = BINARY_SEG_SOP_CLASS
            as_binary.save_as(tmp_path / "as_binary.dcm")
            assert _dciodvfy_errors(tmp_path / "as_binary.dcm") <= LABELMAP_AS_BINARY_SEG
        decoded = read_seg(path)  # on its own geometry: compared in physical space
        by_name = {name: value for value, name in decoded.meta["segment_labels"].items()}
        remapped = np.zeros_like(decoded.array)
        for value, name in names.items():
            remapped[decoded.array == by_name[name]] = value
        assert_same_voxels_in_space(labels.array, labels.affine, remapped, decoded.affine)
        seg = pydicom.dcmread(path, stop_before_pixels=True)
        segments = {s.SegmentLabel: s for s in seg.SegmentSequence if s.SegmentNumber > 0}
        for value, name in names.items():
            colour = CIELabColor.from_rgb(*class_colour(value)).value
            assert tuple(int(v) for v in segments[name].RecommendedDisplayCIELabValue) == tuple(colour)
        lung = segments["Lung-Left"].SegmentedPropertyTypeCodeSequence[0]
        assert (lung.CodeValue, lung.CodeMeaning) == ("39607008", "Lung")
        tumour = segments["GTV-1"].SegmentedPropertyCategoryCodeSequence[0]
        assert tumour.CodeMeaning == "Morphologically Abnormal Structure"
    print(f"LUNG1, 24 slices: binary SEG {sizes['binary']} bytes, label-map SEG {sizes['labelmap']} bytes")
    assert sizes["labelmap"] * 20 < sizes["binary"]
