"""Resampling and reorientation in physical space, checked against SimpleITK and nibabel."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medseg.errors import GeometryError
from medseg.io.image import LabelMap, ScalarImage
from medseg.io.png import png_affine
from medseg.io.resample import reorient, resample_to, resample_to_spacing
from medseg.io.sitk_bridge import affine_from_sitk
from medseg.io.volume import read_volume


@pytest.fixture(scope="module")
def totalseg(datasets_dir):
    return datasets_dir / "totalseg_ct_mr_examples"


def _oblique_grid(shape, spacing, angle_deg, origin):
    angle = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation * np.asarray(spacing)
    affine[:3, 3] = origin
    return LabelMap(np.zeros(shape, dtype=np.uint8), affine)


def test_label_onto_dicom_series_grid_matches_independent_simpleitk(totalseg):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(totalseg / "example_ct_dicom")))
    ct = reader.Execute()
    ct_grid = LabelMap(np.zeros(ct.GetSize(), dtype=np.uint8), affine_from_sitk(ct))
    label = read_volume(totalseg / "example_seg_dicom.nii.gz", LabelMap)

    ours = resample_to(label, ct_grid)
    assert isinstance(ours, LabelMap) and ours.array.dtype == label.array.dtype
    assert ours.same_grid(ct_grid)

    nifti = sitk.ReadImage(str(totalseg / "example_seg_dicom.nii.gz"))
    independent = sitk.Resample(nifti, ct, sitk.Transform(), sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(ours.array, sitk.GetArrayFromImage(independent).T)
    # The NIfTI is y-flipped relative to DICOM: the same organs, so counts per label are preserved.
    assert np.array_equal(np.unique(ours.array), np.unique(label.array))


def test_linear_resampling_reproduces_a_linear_function_of_world_position(totalseg):
    image = read_volume(totalseg / "example_mr_sm.nii.gz")
    gradient = np.array([0.3, -0.2, 0.5])

    def world_ramp(grid):
        i, j, k = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
        world = grid.index_to_world(np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1))
        return (world @ gradient + 100.0).reshape(grid.shape)

    ramp = ScalarImage(world_ramp(image).astype(np.float64), image.affine)
    centre = image.index_to_world(np.asarray(image.shape) / 2)[0]
    target = _oblique_grid((30, 25, 12), (2.0, 2.5, 3.0), 17.0, centre - np.array([30.0, 30.0, 18.0]))

    out = resample_to(ramp, target)
    assert out.array.dtype == np.float64 and out.same_grid(target)
    expected = world_ramp(target)
    inside = out.array != 0
    assert inside.mean() > 0.9
    np.testing.assert_allclose(out.array[inside], expected[inside], atol=1e-6)

    bspline = resample_to(ramp, target, interpolation="bspline")
    assert np.median(np.abs(bspline.array[inside] - expected[inside])) < 1e-3
    with pytest.raises(ValueError, match="nearest"):
        resample_to(LabelMap(np.zeros((4, 4, 4), np.uint8), np.eye(4)), target, interpolation="linear")


def test_resample_to_spacing_keeps_field_of_view_and_returns(totalseg):
    label = read_volume(totalseg / "example_seg.nii.gz", LabelMap)
    fine = resample_to_spacing(label, (1.5, 1.5, 1.5))
    np.testing.assert_allclose(fine.spacing, (1.5, 1.5, 1.5))
    assert fine.shape == tuple(2 * n for n in label.shape)
    corner = label.index_to_world([-0.5, -0.5, -0.5])
    np.testing.assert_allclose(fine.index_to_world([-0.5, -0.5, -0.5]), corner, atol=1e-6)
    np.testing.assert_allclose(fine.direction, label.direction, atol=1e-9)

    back = resample_to(fine, label)
    assert back.same_grid(label)
    np.testing.assert_array_equal(back.array, label.array)  # 2x nearest up then down is lossless


def test_reorient_is_exact_and_matches_nibabel(totalseg):
    path = totalseg / "example_ct_sm.nii.gz"
    image = read_volume(path)
    for codes in ("LPS", "SAR", "RAS"):
        turned = reorient(image, codes)
        assert turned.orientation == codes
        # The same voxel value sits at the same world position.
        index = np.array([[3, 7, 11], [60, 50, 20]])
        world = image.index_to_world(index)
        new_index = np.rint(np.linalg.solve(turned.affine, np.c_[world, np.ones(2)].T)[:3].T).astype(int)
        for old, new in zip(index, new_index, strict=True):
            assert image.array[tuple(old)] == turned.array[tuple(new)]
        back = reorient(turned, image.orientation)
        np.testing.assert_array_equal(back.array, image.array)
        np.testing.assert_allclose(back.affine, image.affine)

    canonical = nib.as_closest_canonical(nib.load(str(path)))
    ras = reorient(image, "RAS")
    np.testing.assert_allclose(ras.affine, canonical.affine, atol=1e-4)
    np.testing.assert_allclose(ras.array, np.asanyarray(canonical.dataobj), atol=1e-3)


def test_reorient_2d_within_plane_only():
    image = ScalarImage(np.arange(12, dtype=np.uint8).reshape(4, 3), png_affine((0.5, 2.0)))
    assert image.orientation == "LP"
    flipped = reorient(image, "RA")
    np.testing.assert_array_equal(flipped.array, image.array[::-1, ::-1])
    np.testing.assert_allclose(flipped.index_to_world([0, 0]), image.index_to_world([3, 2]))
    swapped = reorient(image, "PL")
    np.testing.assert_array_equal(swapped.array, image.array.T)
    with pytest.raises(GeometryError, match="plane"):
        reorient(image, "RS")
