"""DICOM SEG reading: the dcmqi liver SEG lines up voxel for voxel with its NRRD label map."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import binary_seg

from medseg.errors import GeometryError, InputError
from medseg.io.image import ScalarImage
from medseg.io.seg import read_seg
from medseg.io.sitk_bridge import from_sitk, to_sitk


@pytest.fixture(scope="module")
def dcmqi(datasets_dir):
    return datasets_dir / "dcmqi_ct3slice_seg"


@pytest.fixture(scope="module")
def ct(dcmqi):
    """The 3 CT slices read by SimpleITK (independent of medseg's DICOM reader), with UIDs in slice order."""
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(dcmqi / "ct-3slice"))
    reader.SetFileNames(files)
    image = reader.Execute()
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    return image, uids


@pytest.fixture(scope="module")
def liver_on_ct(dcmqi, ct):
    """liver_seg.nrrd placed on the CT grid by SimpleITK alone (nearest neighbour in physical space)."""
    nrrd = sitk.ReadImage(str(dcmqi / "liver_seg.nrrd"))
    placed = sitk.Resample(nrrd, ct[0], sitk.Transform(), sitk.sitkNearestNeighbor)
    return sitk.GetArrayFromImage(placed).T


def test_seg_on_source_series_by_uid_matches_nrrd(dcmqi, ct, liver_on_ct):
    image, uids = ct
    source = from_sitk(image, ScalarImage)
    source.meta["sop_instance_uids"] = uids
    labels = read_seg(dcmqi / "liver.dcm", source)
    assert labels.same_grid(source)
    assert labels.meta["segment_labels"] == {1: "Liver"}
    assert liver_on_ct.sum() > 100_000
    np.testing.assert_array_equal(labels.array, liver_on_ct)


def test_seg_on_reference_grid_without_uids_matches_nrrd(dcmqi, ct, liver_on_ct):
    labels = read_seg(dcmqi / "liver.dcm", from_sitk(ct[0], ScalarImage))
    np.testing.assert_array_equal(labels.array, liver_on_ct)


def test_seg_on_own_geometry_sits_on_the_nrrd_in_physical_space(dcmqi):
    labels = read_seg(dcmqi / "liver.dcm")
    assert labels.shape == (512, 512, 3)
    nrrd = sitk.ReadImage(str(dcmqi / "liver_seg.nrrd"))
    placed = sitk.Resample(to_sitk(labels), nrrd, sitk.Transform(), sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(placed), sitk.GetArrayFromImage(nrrd))


def test_misplaced_or_wrong_inputs_refused(dcmqi, ct):
    image, uids = ct
    source = from_sitk(image, ScalarImage)
    source.meta["sop_instance_uids"] = uids[::-1]
    with pytest.raises(GeometryError, match="disagree"):
        read_seg(dcmqi / "liver.dcm", source)

    shifted = from_sitk(image, ScalarImage)
    shifted.affine[0, 3] += 0.4  # half a voxel: the SEG frames are no longer on this grid
    with pytest.raises(GeometryError, match="not on the voxel grid"):
        read_seg(dcmqi / "liver.dcm", shifted)

    with pytest.raises(InputError, match=r"01\.dcm: not a readable DICOM SEG"):
        read_seg(dcmqi / "ct-3slice" / "01.dcm")


def test_seg_on_series_read_by_medseg(dcmqi):
    from medseg.io.dicom import read_series

    series = read_series(dcmqi / "ct-3slice")
    labels = read_seg(dcmqi / "liver.dcm", series)
    assert labels.same_grid(series) and len(series.meta["sop_instance_uids"]) == 3
    nrrd = sitk.ReadImage(str(dcmqi / "liver_seg.nrrd"))
    placed = sitk.Resample(nrrd, to_sitk(series), sitk.Transform(), sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(labels.array, sitk.GetArrayFromImage(placed).T)


@pytest.mark.parametrize("overlapping", [False, True])
def test_each_segment_read_whole_overlapping_or_not(
    dcmqi, ct, liver_on_ct, tmp_path, monkeypatch, overlapping
):
    """Disjoint segments are decoded once, together; overlapping ones one by one. Either way each mask
    is the segment as drawn (the liver placed by SimpleITK, independently of medseg)."""
    from medseg.io import seg as seg_module

    image, uids = ct
    source = from_sitk(image, ScalarImage)
    source.meta["sop_instance_uids"] = uids
    liver = liver_on_ct > 0
    left = liver.copy()
    left[256:] = False
    masks = (
        {"liver": liver, "left part": left}
        if overlapping
        else {"right part": liver & ~left, "left part": left}
    )
    sources = sorted(
        (pydicom.dcmread(path) for path in (dcmqi / "ct-3slice").glob("*.dcm")),
        key=lambda ds: uids.index(ds.SOPInstanceUID),
    )
    for ds in sources:
        ds.SpecificCharacterSet = "ISO_IR 100"  # these files leave it empty, which highdicom refuses
    path = tmp_path / "seg.dcm"
    binary_seg(sources, masks).save_as(path)

    placements = []
    place = seg_module._place
    monkeypatch.setattr(seg_module, "_place", lambda *args: placements.append(args[3]) or place(*args))
    structures = seg_module.read_seg_segments(path, source)
    assert [(s.number, s.name) for s in structures] == list(enumerate(masks, start=1))
    for structure, expected in zip(structures, masks.values(), strict=True):
        assert expected.sum() > 10_000
        np.testing.assert_array_equal(structure.mask, expected)
    assert placements == ([None, [1], [2]] if overlapping else [None])
