"""Malformed and unusual series each have their documented outcome: a refusal or a repair."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import SHAPE, ct_image, edit, ramp, ramp_image, write_non_image, write_series

from medseg.errors import GeometryError, InputError
from medseg.io.dicom import read_series
from medseg.io.dicom.scan import scan_folder

STEP_MM = 2.5


@pytest.fixture()
def series(tmp_path):
    """A written 6-slice CT series: (original image, folder, paths in slice order)."""
    image = ct_image()
    paths = write_series(image, tmp_path / "series")
    return image, tmp_path / "series", paths


def test_missing_slice_is_refused_then_resampled_on_request(series):
    image, folder, paths = series
    paths[3].unlink()
    with pytest.raises(GeometryError, match=r"1 missing slice.*slice_0003\.dcm.*slice_0005\.dcm"):
        read_series(folder)
    repaired = read_series(folder, repair=["resample_spacing"])
    assert repaired.shape == image.shape and repaired.same_grid(image, atol_mm=1e-4)
    kept = [0, 1, 2, 4, 5]
    np.testing.assert_allclose(repaired.array[:, :, kept], image.array[:, :, kept])
    np.testing.assert_allclose(repaired.array[:, :, 3], (image.array[:, :, 2] + image.array[:, :, 4]) / 2)
    assert repaired.meta["repairs"] == ["resample_spacing (1 missing slice(s))"]


def test_duplicate_slice_is_refused(series):
    """Another instance (its own SOP Instance UID) at a slice's position: which one is right is unknown."""
    _, folder, paths = series
    ds = pydicom.dcmread(paths[2])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "copy_of_three.dcm")
    with pytest.raises(GeometryError, match=r"duplicate slice.*(copy_of_three|slice_0003)"):
        read_series(folder)


def test_copies_of_one_instance_keep_the_series(series, tmp_path):
    """A study exported twice, and a truncated copy of one slice elsewhere: the complete file of each SOP
    instance is read (the same image as without copies) and the copies are listed as left out."""
    _, folder, paths = series
    expected = read_series(folder)
    twice = tmp_path / "export"
    shutil.copytree(folder, twice / "first")
    shutil.copytree(folder, twice / "second")
    truncated = twice / "elsewhere" / "slice.dcm"
    truncated.parent.mkdir()
    truncated.write_bytes(paths[3].read_bytes()[:-200])
    scan = scan_folder(twice)
    [info] = scan.series
    assert info.problem is None and info.number_of_slices == len(paths)
    reasons = [item.reason for item in scan.skipped]
    assert sum("an identical copy of" in reason for reason in reasons) == len(paths)
    assert sum("a damaged or different copy of" in reason for reason in reasons) == 1
    np.testing.assert_array_equal(read_series(twice).array, expected.array)


def test_two_series_in_one_folder_are_listed_and_one_can_be_chosen(series, tmp_path):
    _, folder, _ = series
    other = write_series(ct_image(seed=5), tmp_path / "other", modality="MR")
    for k, path in enumerate(other):
        shutil.copy(path, folder / f"mr_{k}.dcm")
    with pytest.raises(InputError, match=r"2 series found") as error:
        read_series(folder)
    assert "(CT, 'medseg synthetic series', 6 files)" in str(error.value)
    assert "(MR, 'medseg synthetic series', 6 files)" in str(error.value)
    uid = str(pydicom.dcmread(other[0], stop_before_pixels=True).SeriesInstanceUID)
    chosen = read_series(folder, series_uid=uid)
    assert chosen.meta["modality"] == "MR" and chosen.meta["series_instance_uid"] == uid


def test_inconsistent_orientation_names_the_file(series):
    _, folder, paths = series
    edit(paths[4:5], lambda k, ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0.9950042, 0.0998334]))
    with pytest.raises(GeometryError, match=r"slice_0005\.dcm.*ImageOrientationPatient"):
        read_series(folder)


def test_inconsistent_pixel_spacing_names_the_file(series):
    _, folder, paths = series
    edit(paths[1:2], lambda k, ds: setattr(ds, "PixelSpacing", [0.5, 0.5]))
    with pytest.raises(GeometryError, match=r"slice_0002\.dcm.*PixelSpacing"):
        read_series(folder)


def test_slice_off_the_stack_line_is_refused(series):
    _, folder, paths = series

    def shift_one(k, ds):
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0] + 3.0, *ds.ImagePositionPatient[1:]]

    edit(paths[2:3], shift_one)
    with pytest.raises(GeometryError, match=r"slice_0003\.dcm.*off the line"):
        read_series(folder)


def test_oblique_series_matches_simpleitk(tmp_path):
    angle = np.radians(20)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.9, 0.8, 3.0])
    affine[:3, 3] = [-12.0, 30.0, 7.5]
    original = ct_image(affine=affine)
    write_series(original, tmp_path / "oblique")
    image = read_series(tmp_path / "oblique")
    assert image.same_grid(original, atol_mm=1e-4)
    np.testing.assert_array_equal(image.array, original.array)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "oblique")))
    reference = reader.Execute()
    direction = np.array(reference.GetDirection()).reshape(3, 3) * np.array([-1, -1, 1])[:, None]
    np.testing.assert_allclose(image.direction, direction, atol=1e-5)
    np.testing.assert_allclose(image.origin, np.array(reference.GetOrigin()) * [-1, -1, 1], atol=1e-4)


def test_gantry_tilt_is_refused_then_resampled_in_physical_space(tmp_path):
    affine = np.diag([1.0, 1.0, STEP_MM, 1.0])
    image = ramp_image((30, 30, 8), affine)
    paths = write_series(image, tmp_path / "tilt", modality="MR")
    tilt = np.tan(np.radians(10))

    def shear(k, ds):  # each slice origin moves along the column direction (LPS -y = RAS +y) with k
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y - k * STEP_MM * tilt, z]
        # the pixels keep their values, so the world ramp shifts with the slice: rewrite them to match
        rows = np.arange(ds.Rows)[:, None] + 0 * np.arange(ds.Columns)[None, :]
        cols = 0 * rows + np.arange(ds.Columns)[None, :]
        world = np.stack([cols - x, rows - (y - k * STEP_MM * tilt), np.full(rows.shape, z)], -1)
        ds.PixelData = np.rint(ramp(world.reshape(-1, 3))).astype(np.int16).tobytes()

    edit(paths, shear)
    with pytest.raises(GeometryError, match=r"gantry tilt of 10\.00 degrees"):
        read_series(tmp_path / "tilt")
    repaired = read_series(tmp_path / "tilt", repair=["resample_tilt"])
    assert repaired.meta["repairs"] == ["resample_tilt (10.00 degrees)"]
    np.testing.assert_allclose(repaired.direction, np.eye(3), atol=1e-9)
    expected = ramp_image(repaired.shape, repaired.affine).array
    inside = np.s_[:, 5:, :]  # rows whose source lies inside every tilted slice (largest shift 3.1 rows)
    np.testing.assert_allclose(repaired.array[inside], np.rint(expected[inside]), atol=1.0)


def test_non_uniform_spacing_resampled_onto_uniform_grid(tmp_path):
    image = ramp_image((8, 8, 6), np.diag([1.0, 1.0, 1.0, 1.0]))
    paths = write_series(image, tmp_path / "steps", modality="MR")
    z = [0.0, 1.0, 2.0, 4.0, 6.0, 8.0]  # 1 mm then 2 mm steps

    def move(k, ds):
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], z[k]]
        world = np.stack(np.meshgrid(np.arange(8.0), np.arange(8.0), indexing="xy"), -1).reshape(-1, 2)
        values = ramp(np.c_[world, np.full(len(world), z[k])])
        ds.PixelData = np.rint(values).astype(np.int16).tobytes()

    edit(paths, move)
    with pytest.raises(GeometryError, match="non-uniform slice spacing"):
        read_series(tmp_path / "steps")
    repaired = read_series(tmp_path / "steps", repair=["resample_spacing"])
    assert repaired.shape == (8, 8, 9) and np.isclose(repaired.spacing[2], 1.0)
    np.testing.assert_allclose(repaired.array, ramp_image(repaired.shape, repaired.affine).array, atol=1e-4)


def test_several_time_points_are_refused_and_one_can_be_chosen(tmp_path):
    first, second = ct_image(seed=1), ct_image(seed=2)
    paths = write_series(first, tmp_path / "t1") + write_series(second, tmp_path / "t2")
    uids = {
        key: str(pydicom.dcmread(paths[0], stop_before_pixels=True)[key].value)
        for key in ("SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID")
    }

    def as_time_point(k, ds):
        for key, value in uids.items():
            setattr(ds, key, value)
        ds.TemporalPositionIdentifier = 1 + k // SHAPE[2]

    edit(paths, as_time_point)
    with pytest.raises(
        GeometryError, match=r"2 time points.*TemporalPositionIdentifier \[1, 2\].*time_point"
    ):
        read_series(paths)
    np.testing.assert_array_equal(read_series(paths, time_point=2).array, second.array)


def test_non_image_objects_and_other_files_are_skipped(series):
    image, folder, paths = series
    study = str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
    write_non_image(folder / "report.dcm", "1.2.840.10008.5.1.4.1.1.88.11", "SR", study)
    write_non_image(folder / "document.dcm", "1.2.840.10008.5.1.4.1.1.104.1", "DOC", study)
    (folder / "notes.txt").write_text("not DICOM")
    loaded = read_series(folder)
    np.testing.assert_array_equal(loaded.array, image.array)
    assert loaded.meta["skipped_files"] == 3


def test_folder_without_images_is_a_clear_error(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(InputError, match=r"no DICOM image in 1 file\(s\) \(not a DICOM file\)"):
        read_series(tmp_path)
