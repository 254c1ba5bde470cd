"""read_dicom_image: 2D radiographs with spacing fallbacks, MONOCHROME1 inversion and VOI windowing."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import write_non_image, write_radiograph
from pydicom.pixels import apply_voi_lut

from medseg.errors import InputError
from medseg.io.dicom import read_dicom_image

MAX_12_BIT = 4095


@pytest.fixture(scope="module")
def stored():
    return np.random.default_rng(0).integers(0, MAX_12_BIT + 1, size=(30, 40)).astype(np.uint16)


def test_values_match_simpleitk_and_spacing_follows_pixel_spacing(tmp_path, stored):
    path = write_radiograph(tmp_path / "dx.dcm", stored, pixel_spacing=[0.15, 0.2])
    image = read_dicom_image(path)
    reference = sitk.ReadImage(str(path))  # GDCM ignores PixelSpacing for DX, so spacing is checked by hand
    assert image.shape == (40, 30) == reference.GetSize()[:2]
    row_spacing, column_spacing = (float(v) for v in pydicom.dcmread(path).PixelSpacing)
    np.testing.assert_allclose(image.spacing, [column_spacing, row_spacing])
    np.testing.assert_array_equal(image.array, sitk.GetArrayFromImage(reference)[0].T)
    assert "spacing_unknown" not in image.meta and "inverted" not in image.meta


def test_imager_pixel_spacing_is_the_fallback_and_noted(tmp_path, stored):
    image = read_dicom_image(write_radiograph(tmp_path / "dx.dcm", stored, imager_spacing=[0.14, 0.14]))
    np.testing.assert_allclose(image.spacing, [0.14, 0.14])
    assert image.meta["spacing_source"] == "ImagerPixelSpacing"


def test_pixel_spacing_is_preferred_over_imager_spacing(tmp_path, stored):
    path = write_radiograph(
        tmp_path / "dx.dcm", stored, pixel_spacing=[0.1, 0.1], imager_spacing=[0.14, 0.14]
    )
    image = read_dicom_image(path)
    np.testing.assert_allclose(image.spacing, [0.1, 0.1])
    assert "spacing_source" not in image.meta


def test_no_spacing_gives_one_mm_and_a_flag(tmp_path, stored):
    image = read_dicom_image(write_radiograph(tmp_path / "dx.dcm", stored))
    np.testing.assert_allclose(image.spacing, [1.0, 1.0])
    assert image.meta["spacing_unknown"] is True


def test_monochrome1_is_inverted_so_higher_is_brighter(tmp_path, stored):
    image = read_dicom_image(write_radiograph(tmp_path / "dx.dcm", stored, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(image.array, (MAX_12_BIT - stored.astype(np.float32)).T)
    assert image.meta["inverted"] is True


def test_voi_window_is_applied_on_request(tmp_path, stored):
    path = write_radiograph(tmp_path / "dx.dcm", stored, pixel_spacing=[0.2, 0.2], window=(2000.0, 1000.0))
    windowed = read_dicom_image(path, voi=True)
    expected = apply_voi_lut(stored.astype(np.float64), pydicom.dcmread(path))
    np.testing.assert_allclose(windowed.array, expected.T.astype(np.float32))
    assert np.unique(windowed.array).size < np.unique(read_dicom_image(path).array).size


def test_non_image_object_is_refused(tmp_path):
    path = write_non_image(tmp_path / "sr.dcm", "1.2.840.10008.5.1.4.1.1.88.11", "SR", "1.2.3")
    with pytest.raises(InputError, match=r"sr\.dcm: not an image: structured report"):
        read_dicom_image(path)
