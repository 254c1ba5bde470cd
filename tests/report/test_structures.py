"""Structure statistics against SimpleITK's label statistics and nibabel on real label maps."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medseg.io.image import LabelMap
from medseg.io.png import binarize_mask, read_png
from medseg.io.reader import read_image
from medseg.io.resample import reorient
from medseg.report.structures import axial_axis, lesion_list, structure_stats


@pytest.fixture(scope="module")
def totalseg(datasets_dir):
    folder = datasets_dir / "totalseg_ct_mr_examples"
    names = json.loads((folder / "class_map_total_and_total_mr.json").read_text())["total"]
    return folder / "example_seg.nii.gz", {int(k): v for k, v in names.items()}


def test_volumes_centroids_and_lesions_match_simpleitk(totalseg):
    path, names = totalseg
    stats = structure_stats(read_image(path, LabelMap), names)

    labels = sitk.ReadImage(str(path), sitk.sitkUInt8)
    shape = sitk.LabelShapeStatisticsImageFilter()
    shape.Execute(labels)
    assert sorted(entry["label"] for entry in stats.values() if entry["voxels"]) == sorted(shape.GetLabels())
    for value in shape.GetLabels():
        entry = stats[names[value]]
        assert entry["voxels"] == shape.GetNumberOfPixels(value)
        assert entry["volume_ml"] == pytest.approx(shape.GetPhysicalSize(value) / 1000.0)
        lps = np.array(shape.GetCentroid(value))
        np.testing.assert_allclose(entry["centroid_ras_mm"], lps * [-1, -1, 1], atol=1e-6)
        components = sitk.ConnectedComponent(labels == value, True)  # fully connected = 26-connectivity
        assert entry["lesions"] == sitk.GetArrayViewFromImage(components).max()


def test_largest_slice_is_the_axial_slice_with_most_voxels_per_nibabel(totalseg):
    path, names = totalseg
    stats = structure_stats(read_image(path, LabelMap), names)
    array = np.asarray(nib.load(path).dataobj).astype(int)
    assert nib.aff2axcodes(nib.load(path).affine)[2] in "SI"
    for entry in stats.values():
        if entry["voxels"]:
            per_slice = (array == entry["label"]).sum(axis=(0, 1))
            assert per_slice[entry["largest_slice"]] == per_slice.max()


def test_absent_and_unnamed_labels_are_listed_not_dropped(totalseg):
    path, _ = totalseg
    mask = read_image(path, LabelMap)
    stats = structure_stats(mask, {1: "spleen", 200: "not_in_this_scan"})
    assert stats["not_in_this_scan"]["voxels"] == 0 and stats["not_in_this_scan"]["centroid_ras_mm"] is None
    present = {int(v) for v in np.unique(mask.array)} - {0, 1}
    assert {f"label_{v}" for v in present} <= set(stats)


def test_statistics_do_not_depend_on_storage_orientation(totalseg):
    path, names = totalseg
    mask = read_image(path, LabelMap)
    flipped = reorient(mask, "LPI")
    assert axial_axis(flipped) == 2
    original, other = structure_stats(mask, names), structure_stats(flipped, names)
    for name, entry in original.items():
        assert other[name]["voxels"] == entry["voxels"] and other[name]["lesions"] == entry["lesions"]
        if entry["voxels"]:
            np.testing.assert_allclose(other[name]["centroid_ras_mm"], entry["centroid_ras_mm"], atol=1e-6)
            per_slice = (flipped.array == entry["label"]).sum(axis=(0, 1))
            assert per_slice[other[name]["largest_slice"]] == per_slice[29 - entry["largest_slice"]]


def test_chest_xray_has_two_lungs_and_area_in_cm2(datasets_dir):
    path = datasets_dir / "cxr_lung_mc_shenzhen" / "masks" / "CHNCXR_0006_0.png"
    mask = binarize_mask(read_png(path, spacing=(0.5, 0.5)))
    stats = structure_stats(mask, {1: "lung"})["lung"]
    assert stats["lesions"] == 2 and stats["largest_slice"] is None
    assert "volume_ml" not in stats
    assert stats["area_cm2"] == pytest.approx(int((mask.array == 1).sum()) * 0.25 / 100.0)
    lesions = lesion_list(mask, 1)
    assert len(lesions) == 2 and lesions[0]["voxels"] >= lesions[1]["voxels"]
    assert sum(lesion["voxels"] for lesion in lesions) == stats["voxels"]
    assert sum(lesion["area_cm2"] for lesion in lesions) == pytest.approx(stats["area_cm2"])


def test_lesions_touching_by_a_corner_are_one_lesion_in_3d():
    array = np.zeros((6, 6, 6), dtype=np.uint8)
    array[1, 1, 1] = array[2, 2, 2] = 1  # corner contact: one lesion with 26-connectivity
    array[4, 4, 4] = 1
    mask = LabelMap(array, np.diag([2.0, 1.0, 1.0, 1.0]))
    assert structure_stats(mask, {1: "lesion"})["lesion"]["lesions"] == 2
    assert [lesion["voxels"] for lesion in lesion_list(mask, 1)] == [2, 1]
    assert lesion_list(mask, 1)[1]["volume_ml"] == pytest.approx(0.002)
