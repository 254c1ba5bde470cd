"""`medseg info` on real inputs: shape and spacing checked against SimpleITK and pydicom."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import SimpleITK as sitk

from medseg.cli.main import main


def info(path, capsys) -> dict:
    assert main(["info", str(path)]) == 0
    return json.loads(capsys.readouterr().out)


def sitk_series(folder) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def test_totalsegmentator_ct_dicom_folder(datasets_dir, capsys):
    folder = datasets_dir / "totalseg_ct_mr_examples" / "example_ct_dicom"
    result = info(folder, capsys)
    reference = sitk_series(folder)
    assert result["kind"] == "dicom_folder" and result["modality"] == "CT"
    assert result["shape"] == list(reference.GetSize())
    np.testing.assert_allclose(result["spacing"], reference.GetSpacing(), rtol=1e-5)
    np.testing.assert_allclose(
        np.array(result["affine"])[:3, 3], np.multiply(reference.GetOrigin(), [-1, -1, 1]), atol=1e-3
    )
    assert result["orientation_codes"] == "LPS"  # i to patient Left, j to Posterior, as axial DICOM stores it
    (study,) = result["studies"]
    (series,) = study["series"]
    assert series["number_of_slices"] == 20 and series["problem"] is None
    assert {s["reason"] for s in result["skipped"]} == set()


def test_brain_mri_folder_lists_every_series_and_no_patient_data(datasets_dir, capsys):
    folder = datasets_dir / "brain_mri_dicom_hippocrop"
    result = info(folder, capsys)
    series = [s for study in result["studies"] for s in study["series"]]
    assert len(series) == 7 and "shape" not in result  # several series: no single grid at the top
    t2 = folder / "Study3" / "37830-T2reg-78532"
    (listed,) = [s for s in series if s["description"] == "T2_reg"]
    reference = sitk_series(t2)
    assert listed["shape"] == list(reference.GetSize())
    np.testing.assert_allclose(listed["spacing"], reference.GetSpacing(), rtol=1e-5)
    header = pydicom.dcmread(next(t2.iterdir()), stop_before_pixels=True)
    text = json.dumps(result)
    assert str(header.PatientID) not in text and "patient" not in text.lower()


def test_hippocampus_nifti(datasets_dir, capsys):
    path = datasets_dir / "msd_hippocampus" / "imagesTr" / "hippocampus_190.nii.gz"
    result = info(path, capsys)
    reference = sitk.ReadImage(str(path))
    assert result["shape"] == list(reference.GetSize())
    np.testing.assert_allclose(result["spacing"], reference.GetSpacing(), rtol=1e-6)


def test_chest_xray_png(datasets_dir, capsys):
    path = next((datasets_dir / "cxr_lung_mc_shenzhen" / "images").glob("*.png"))
    result = info(path, capsys)
    reference = sitk.ReadImage(str(path))
    assert result["shape"] == list(reference.GetSize())[:2]
    np.testing.assert_allclose(result["spacing"], reference.GetSpacing()[:2])


def test_missing_path_is_a_one_line_error(tmp_path, capsys):
    assert main(["info", str(tmp_path / "absent.nii.gz")]) == 2
    assert capsys.readouterr().err.strip().endswith("absent.nii.gz: no such file or folder")


def test_dicom_seg_file(datasets_dir, capsys):
    path = datasets_dir / "dcmqi_ct3slice_seg" / "liver.dcm"
    result = info(path, capsys)
    header = pydicom.dcmread(path, stop_before_pixels=True)
    assert result["modality"] == "SEG"
    assert result["shape"] == [int(header.Columns), int(header.Rows), int(header.NumberOfFrames)]
