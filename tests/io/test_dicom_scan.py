"""scan_folder and select_series on real data and on a generated tree of studies, series and clutter."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from dicom_factory import ct_image, edit, write_non_image, write_series

from medseg.io.dicom.scan import SeriesRules, scan_folder, select_series


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """study A: axial CT (6 slices) + coronal MR (4 slices, two folders deeper) + SR + PDF + text;
    study B: a 2-slice CT whose second slice is shifted in-plane (geometry problem)."""
    root = tmp_path_factory.mktemp("tree")
    ct_paths = write_series(ct_image(), root / "a" / "ct")
    study = str(pydicom.dcmread(ct_paths[0], stop_before_pixels=True).StudyInstanceUID)
    coronal = np.array([[-1, 0, 0, 0], [0, 0, -3, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
    mr_paths = write_series(
        ct_image(shape=(16, 12, 4), affine=coronal), root / "a" / "deep" / "er" / "mr", "MR"
    )
    edit(mr_paths, lambda k, ds: setattr(ds, "StudyInstanceUID", study))
    write_non_image(root / "a" / "sr.dcm", "1.2.840.10008.5.1.4.1.1.88.22", "SR", study)
    write_non_image(root / "a" / "doc.dcm", "1.2.840.10008.5.1.4.1.1.104.1", "DOC", study)
    (root / "a" / "notes.txt").write_text("not DICOM")
    bad = write_series(ct_image(shape=(8, 8, 2), seed=4), root / "b")

    def shift(k, ds):
        if k == 1:
            ds.ImagePositionPatient = [float(ds.ImagePositionPatient[0]) + 5, *ds.ImagePositionPatient[1:]]
        ds.SeriesDescription = "scout"

    edit(bad, shift)
    return root


def test_tree_is_grouped_into_studies_and_series(tree):
    scan = scan_folder(tree)
    assert len(scan.studies) == 2
    by_modality = {s.modality: s for s in scan.series if s.number_of_files > 2}
    assert by_modality["CT"].number_of_slices == 6 and by_modality["CT"].orientation == "axial"
    assert by_modality["MR"].number_of_slices == 4 and by_modality["MR"].orientation == "coronal"
    assert by_modality["CT"].study_instance_uid == by_modality["MR"].study_instance_uid
    reasons = {p.name: r for p, r in ((s.path, s.reason) for s in scan.skipped)}
    assert reasons == {
        "sr.dcm": "not an image: structured report (SR)",
        "doc.dcm": "not an image: encapsulated PDF",
        "notes.txt": "not a DICOM file",
    }
    (scout,) = [s for s in scan.series if s.description == "scout"]
    assert "do not form one stack" in scout.problem


def test_rules_pick_series_and_say_why_the_others_were_left_out(tree):
    scan = scan_folder(tree)
    selection = select_series(scan, SeriesRules(modalities=("CT",), min_slices=3, orientations=("axial",)))
    assert [s.modality for s in selection.chosen] == ["CT"] and selection.chosen[0].number_of_slices == 6
    why = {s.description if s.modality == "CT" else s.modality: reasons for s, reasons in selection.rejected}
    assert why["MR"] == ["modality MR is not one of CT", "orientation coronal is not one of axial"]
    assert why["scout"][0] == "2 slice(s), fewer than 3" and "do not form one stack" in why["scout"][1]
    by_text = select_series(scan, SeriesRules(description_pattern="^SCOUT$", readable_only=False))
    assert [s.description for s in by_text.chosen] == ["scout"]


def test_real_brain_mri_folder(datasets_dir):
    scan = scan_folder(datasets_dir / "brain_mri_dicom_hippocrop")
    assert len(scan.series) == 7 and len(scan.studies) == 3
    assert all(s.modality == "MR" and s.problem is None and s.orientation == "axial" for s in scan.series)
    counts = sorted(s.number_of_slices for s in scan.series)
    on_disk = sorted(len(list(d.iterdir())) for d in (datasets_dir / "brain_mri_dicom_hippocrop").glob("*/*"))
    assert counts == on_disk
    chosen = select_series(scan, SeriesRules(description_pattern="hippocrop", min_slices=33)).chosen
    assert sorted(s.number_of_slices for s in chosen) == [35, 40]


def test_seg_beside_its_ct_is_skipped_with_a_note(datasets_dir, tmp_path):
    source = datasets_dir / "dcmqi_ct3slice_seg"
    shutil.copytree(source / "ct-3slice", tmp_path / "ct")
    shutil.copy(source / "liver.dcm", tmp_path / "ct" / "liver.dcm")
    scan = scan_folder(tmp_path)
    assert [s.number_of_slices for s in scan.series] == [3]
    assert [(s.path.name, s.reason) for s in scan.skipped] == [
        ("liver.dcm", "not an image: segmentation (SEG)")
    ]
