"""`medseg convert`: a DICOM series to NIfTI, checked against SimpleITK's reading of the series."""

from __future__ import annotations

import re

import numpy as np
import SimpleITK as sitk

from medseg.cli.main import main


def test_brain_mri_series_to_nifti_matches_simpleitk(datasets_dir, tmp_path, capsys):
    folder = datasets_dir / "brain_mri_dicom_hippocrop" / "Study1" / "13_HCropVolume"
    out = tmp_path / "hippo.nii.gz"
    assert main(["convert", str(folder), str(out)]) == 0
    assert "MR series 'HippoCrop'" in capsys.readouterr().out
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    reference, written = reader.Execute(), sitk.ReadImage(str(out))
    np.testing.assert_allclose(written.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.GetSpacing(), reference.GetSpacing(), rtol=1e-5)
    np.testing.assert_allclose(written.GetDirection(), reference.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(reference))


def test_several_series_need_a_choice(datasets_dir, tmp_path, capsys):
    folder = datasets_dir / "brain_mri_dicom_hippocrop" / "Study3"
    assert main(["convert", str(folder), str(tmp_path / "x.nii.gz")]) == 2
    error = capsys.readouterr().err
    assert "5 series found, pick one with --series" in error and "T2_reg" in error
    assert not (tmp_path / "x.nii.gz").exists()
    index = re.search(r"(\d+): MR 'T2_reg'", error).group(1)
    assert main(["convert", str(folder), str(tmp_path / "t2.nii.gz"), "--series", index]) == 0
    assert sitk.ReadImage(str(tmp_path / "t2.nii.gz")).GetSize() == (280, 320, 22)
