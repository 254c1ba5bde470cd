"""The second opinion against the study's own contours: ``medseg infer`` on a study folder holding a CT and
its clinician RTSTRUCT (the shared LUNG1 case, cut to 16 slices) compares without a separate command:
metrics per matched structure in result.json, the disagreement in report.html and as a DICOM SEG, and an
RTSTRUCT of its own that reads back to its mask."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pydicom
import pytest
from dicom_factory import binary_seg
from infer_models import save_threshold_checkpoint

from medseg import read_image
from medseg.cli.main import main
from medseg.errors import InputError
from medseg.io.rtstruct import read_rtstruct, rtstruct_labels
from medseg.io.seg import read_seg

LUNG1 = "nsclc_lung1_ct_rtstruct"
#: Slices of the LUNG1 CT kept (by position, foot to head): both lungs and the tumour are on them.
KEPT = slice(60, 76)


@pytest.fixture(scope="module")
def study(datasets_dir, tmp_path_factory):
    """A study folder as a PACS export gives it: CT/ (16 slices) and RTSTRUCT/ (all contours)."""
    root = datasets_dir / LUNG1
    folder = tmp_path_factory.mktemp("study")
    (folder / "CT").mkdir()
    slices = sorted(
        (root / "CT").glob("*.dcm"),
        key=lambda path: float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2]),
    )
    for path in slices[KEPT]:
        shutil.copy(path, folder / "CT" / path.name)
    shutil.copytree(root / "RTSTRUCT", folder / "RTSTRUCT")
    return folder


def test_infer_compares_with_the_clinicians_contours_found_in_the_study(study, tmp_path):
    model = save_threshold_checkpoint(tmp_path / "ct.pt", 3, [2.0, 2.0, 3.0], [128, 128, 16])
    out = tmp_path / "out"
    argv = ["infer", str(study), "-m", str(model), "-o", str(out), "--force-domain", "--rtstruct"]
    assert main([*argv, "--reference-map", '{"lung-left": 1}']) == 0
    [folder] = [path for path in out.iterdir() if path.is_dir()]
    result = json.loads((folder / "result.json").read_text())
    comparison = result["comparison"]
    assert comparison["mapping"] == {"lung-left": 1}
    assert (
        "Not compared (no model class of that name): GTV-1, Lung-Right, Spinal-Cord." in comparison["notes"]
    )
    metrics = comparison["metrics"]["bright lesion"]
    assert {"dice", "iou", "hd95_mm", "nsd", "volume_diff_ml", "lesions_ref", "detected"} <= set(metrics)

    image = read_image(study / "CT")
    mask = read_image(folder / "mask.nii.gz").array
    # the whole left lung, the tumour inside it included (an unmapped structure leaves no hole)
    structures = read_rtstruct(next((study / "RTSTRUCT").glob("*.dcm")), image)
    expected = next(structure.mask for structure in structures if structure.name == "Lung-Left")
    ai = mask == 1
    assert metrics["dice"] == pytest.approx(2 * (ai & expected).sum() / (ai.sum() + expected.sum()), abs=1e-6)

    disagreement = read_seg(folder / "disagreement.dcm", image)
    segments = {name: value for value, name in disagreement.meta["segment_labels"].items()}
    assert set(segments) == {"agree", "AI only", "clinician only"}
    np.testing.assert_array_equal(disagreement.array == segments["agree"], ai & expected)
    np.testing.assert_array_equal(disagreement.array == segments["clinician only"], expected & ~ai)
    np.testing.assert_array_equal(disagreement.array == segments["AI only"], ai & ~expected)

    page = (folder / "report.html").read_text()
    assert "Agreement with the reference" in page and "Compared with" in page
    ours = rtstruct_labels(folder / "rtstruct.dcm", image)
    np.testing.assert_array_equal(ours.array > 0, ai)


def test_a_reference_matching_no_class_is_a_warning_and_the_mask_stands(study, tmp_path, caplog):
    model = save_threshold_checkpoint(tmp_path / "ct.pt", 3, [2.0, 2.0, 3.0], [128, 128, 16])
    out = tmp_path / "out"
    argv = ["infer", str(study), "-m", str(model), "-o", str(out), "--force-domain", "--no-overlays"]
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    [result] = out.glob("*/result.json")
    record = json.loads(result.read_text())
    assert record["comparison"] is None and (result.parent / "mask.nii.gz").is_file()
    assert "none of its structures (GTV-1, Spinal-Cord, Lung-Left, Lung-Right)" in record["warnings"][0]
    assert "give --reference-map" in caplog.text


def test_a_seg_reference_with_overlapping_segments_is_compared_segment_by_segment(study, tmp_path):
    """Slicer-style binary SEGs may overlap (a tumour drawn inside its organ): one label map cannot hold
    them, so each segment is read on its own and the mapped one is compared whole."""
    image = read_image(study / "CT")
    structures = {s.name: s.mask for s in read_rtstruct(next((study / "RTSTRUCT").glob("*.dcm")), image)}
    lung = structures["Lung-Left"] | structures["GTV-1"]  # the organ with its tumour
    tumour = structures["GTV-1"]
    assert (lung & tumour).any()
    sources = [pydicom.dcmread(path) for path in sorted((study / "CT").glob("*.dcm"))]
    sources.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    seg = binary_seg(sources, {"Lung-Left": lung, "GTV-1": tumour})
    reference = tmp_path / "overlapping_seg.dcm"
    seg.save_as(reference)
    with pytest.raises(InputError, match="its segments overlap, so one label map cannot hold them"):
        read_seg(reference, image)  # one label map: refused, not silently merged

    model = save_threshold_checkpoint(tmp_path / "ct.pt", 3, [2.0, 2.0, 3.0], [128, 128, 16])
    out = tmp_path / "out"
    argv = ["infer", str(study / "CT"), "-m", str(model), "-o", str(out), "--force-domain", "--no-overlays"]
    assert main([*argv, "--reference", str(reference), "--reference-map", '{"lung-left": 1}']) == 0
    [result] = out.glob("*/result.json")
    metrics = json.loads(result.read_text())["comparison"]["metrics"]["bright lesion"]
    ai = read_image(result.parent / "mask.nii.gz").array == 1
    expected = 2 * (ai & lung).sum() / (ai.sum() + lung.sum())  # the lung whole, its tumour included
    assert metrics["dice"] == pytest.approx(expected, abs=1e-6)
