"""The fast NIfTI path gives exactly what SimpleITK gives, and steps aside whenever the file is ambiguous."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medseg.io.nifti import read_nifti
from medseg.io.volume import read_volume

LPS_FLIP = np.array([-1.0, -1.0, 1.0])


def assert_same_as_sitk(image, path) -> None:
    reference = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(image.array, sitk.GetArrayFromImage(reference).transpose())
    assert image.array.dtype == sitk.GetArrayViewFromImage(reference).dtype
    np.testing.assert_allclose(image.origin, np.array(reference.GetOrigin()) * LPS_FLIP, atol=1e-4)
    np.testing.assert_allclose(image.spacing, reference.GetSpacing(), rtol=1e-6)
    direction = np.array(reference.GetDirection()).reshape(3, 3) * LPS_FLIP[:, None]
    np.testing.assert_allclose(image.direction, direction, atol=1e-6)


@pytest.mark.parametrize(
    "relative",
    [
        "msd_hippocampus/imagesTr/hippocampus_190.nii.gz",
        "msd_hippocampus/labelsTr/hippocampus_190.nii.gz",
        "totalseg_ct_mr_examples/example_seg_dicom.nii.gz",  # y-flipped grid
        "totalseg_ct_mr_examples/example_mr_sm.nii.gz",
    ],
)
def test_real_files_match_simpleitk(datasets_dir, relative):
    image = read_nifti(datasets_dir / relative)
    assert image is not None
    assert_same_as_sitk(image, datasets_dir / relative)


def write(tmp_path, name, configure, shape=(4, 5, 6)) -> object:
    data = np.random.default_rng(0).integers(-1000, 1000, size=shape).astype(np.int16)
    image = nib.Nifti1Image(data, np.diag([0.5, 0.75, 2.0, 1.0]))
    configure(image)
    path = tmp_path / name
    nib.save(image, path)
    return path


def disagreeing_forms(image) -> None:
    original = image.affine.copy()
    shifted = original.copy()
    shifted[:3, 3] = [10.0, 0.0, 0.0]
    image.set_sform(shifted, code=1)
    image.set_qform(original, code=1)


def scaled(image) -> None:
    image.header.set_slope_inter(2.0, -5.0)


@pytest.mark.parametrize("configure", [disagreeing_forms, scaled], ids=["qform_vs_sform", "scl_slope"])
def test_ambiguous_files_are_left_to_simpleitk(tmp_path, configure):
    path = write(tmp_path, "case.nii.gz", configure)
    assert read_nifti(path) is None
    assert_same_as_sitk(read_volume(path), path)


def test_plain_uncompressed_file_is_read_fast_and_equal(tmp_path):
    path = write(tmp_path, "plain.nii", lambda image: None)
    image = read_nifti(path)
    assert image is not None
    assert_same_as_sitk(image, path)


@pytest.mark.parametrize("keep", [200, 0.5], ids=["inside_header", "inside_voxels"])
def test_truncated_file_is_refused_not_zero_filled(tmp_path, keep):
    """SimpleITK would fill a truncated .nii.gz with zeros; read_volume refuses it."""
    path = write(tmp_path, "whole.nii.gz", lambda image: None, shape=(40, 50, 60))
    data = path.read_bytes()
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    with pytest.raises(
        ValueError, match=r"broken\.nii\.gz: cannot read as a volume \(.*(header|truncated|corrupt)"
    ):
        read_volume(broken)
