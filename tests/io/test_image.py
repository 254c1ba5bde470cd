"""The Image type and its SimpleITK bridge agree with independent readers on real files."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medseg.io.image import LabelMap, ScalarImage
from medseg.io.sitk_bridge import to_sitk
from medseg.io.volume import read_volume, write_volume


def test_nifti_geometry_matches_nibabel(datasets_dir):
    path = datasets_dir / "totalseg_ct_mr_examples" / "example_seg_dicom.nii.gz"
    image = read_volume(path, LabelMap)
    reference = nib.load(path)
    assert image.shape == reference.shape
    np.testing.assert_allclose(image.affine, reference.affine, atol=1e-4)
    np.testing.assert_array_equal(image.array, np.asarray(reference.dataobj))
    assert image.orientation == "".join(nib.aff2axcodes(reference.affine))
    assert isinstance(image, LabelMap) and np.issubdtype(image.array.dtype, np.integer)


def test_index_to_world_matches_simpleitk(datasets_dir):
    image = read_volume(datasets_dir / "msd_hippocampus" / "imagesTr" / "hippocampus_001.nii.gz")
    itk = to_sitk(image)
    index = (3, 7, 11)
    lps = np.array(itk.TransformIndexToPhysicalPoint(index))
    np.testing.assert_allclose(image.index_to_world(index)[0], lps * [-1, -1, 1], atol=1e-6)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_write_read_round_trip_keeps_voxels_and_geometry(tmp_path, suffix):
    affine = np.array([[0, -0.7, 0, 12.0], [0.8, 0, 0, -3.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1]])
    array = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    path = write_volume(ScalarImage(array, affine), tmp_path / f"volume{suffix}")
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, array)
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)
    itk = sitk.ReadImage(str(path))
    assert itk.GetSize() == (6, 5, 4)
    assert [p.name for p in tmp_path.iterdir()] == [f"volume{suffix}"]


def test_degenerate_affine_is_refused():
    with pytest.raises(ValueError, match="degenerate"):
        ScalarImage(np.zeros((4, 4, 4)), np.diag([1.0, 0.0, 1.0, 1.0]))


def test_fractional_labels_are_refused(tmp_path):
    path = write_volume(
        ScalarImage(np.full((3, 3, 3), 0.5, dtype=np.float32), np.eye(4)), tmp_path / "l.nii.gz"
    )
    with pytest.raises(ValueError, match="whole numbers"):
        read_volume(path, LabelMap)
