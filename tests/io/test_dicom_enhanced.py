"""Enhanced multi-frame CT (highdicom's legacy converter): per-frame geometry from functional groups."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_factory import ct_image, write_series

from medseg.errors import GeometryError
from medseg.io.dicom import read_series


def enhanced_ct(image, folder, order):
    """Write `image` as single frames, then convert them (in `order`) to one enhanced CT file."""
    paths = write_series(image, folder / "single")
    datasets = [pydicom.dcmread(paths[k]) for k in order]
    converted = hd.legacy.LegacyConvertedEnhancedCTImage(
        datasets, series_instance_uid=hd.UID(), series_number=2, sop_instance_uid=hd.UID(), instance_number=1
    )
    path = folder / "enhanced.dcm"
    converted.save_as(path)
    return path


def test_oblique_enhanced_ct_with_shuffled_frames_reads_like_its_source(tmp_path):
    angle = np.radians(15)
    affine = np.eye(4)
    affine[:3, :3] = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine[:3, :3] = affine[:3, :3] @ np.diag([0.75, 0.9, 2.0])
    affine[:3, 3] = [5.0, -20.0, 33.0]
    source = ct_image(shape=(40, 32, 5), affine=affine)
    path = enhanced_ct(source, tmp_path, order=[3, 0, 4, 1, 2])
    ds = pydicom.dcmread(path)
    assert int(ds.NumberOfFrames) == 5 and "PerFrameFunctionalGroupsSequence" in ds
    shuffle = [2, 4, 0, 3, 1]  # reorder the frames inside the file, pixels and per-frame groups together
    frames = np.frombuffer(ds.PixelData, dtype=np.int16).reshape(5, -1)
    ds.PixelData = frames[shuffle].tobytes()
    ds.PerFrameFunctionalGroupsSequence = [ds.PerFrameFunctionalGroupsSequence[k] for k in shuffle]
    ds.save_as(path)
    image = read_series([path])
    assert image.same_grid(source, atol_mm=1e-4)
    np.testing.assert_array_equal(image.array, source.array)
    normal = np.cross(
        *np.reshape(
            ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient, (2, 3)
        )
    )
    heights = [
        float(np.dot(item.PlanePositionSequence[0].ImagePositionPatient, normal))
        for item in ds.PerFrameFunctionalGroupsSequence
    ]
    assert [heights[n - 1] for n in image.meta["frame_numbers"]] == sorted(heights)
    assert image.meta["modality"] == "CT"


def test_per_frame_orientation_that_disagrees_names_the_frame(tmp_path):
    path = enhanced_ct(ct_image(shape=(40, 32, 4)), tmp_path, order=[0, 1, 2, 3])
    ds = pydicom.dcmread(path)
    shared = ds.SharedFunctionalGroupsSequence[0]
    orientation = shared.PlaneOrientationSequence
    del shared.PlaneOrientationSequence
    for k, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        frame_orientation = pydicom.Dataset()
        iop = [float(v) for v in orientation[0].ImageOrientationPatient]
        if k == 2:
            iop = [1, 0, 0, 0, 0.9950042, 0.0998334]
        frame_orientation.ImageOrientationPatient = iop
        item.PlaneOrientationSequence = [frame_orientation]
    ds.save_as(path)
    with pytest.raises(GeometryError, match=r"enhanced\.dcm frame 3: ImageOrientationPatient"):
        read_series([path])
