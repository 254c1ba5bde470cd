"""Compressed transfer syntaxes decode to the same values as the uncompressed original."""

from __future__ import annotations

import io
import shutil

import numpy as np
import PIL.Image
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import ct_image, edit, write_series
from pydicom.encaps import encapsulate
from pydicom.uid import (
    MPEG2MPML,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from medseg.errors import InputError
from medseg.io.dicom import read_dicom_image, read_series


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """An uncompressed 3-slice CT series and its reading."""
    folder = tmp_path_factory.mktemp("plain") / "series"
    write_series(ct_image(shape=(64, 48, 3)), folder)
    return folder, read_series(folder)


def copy_series(folder, target):
    shutil.copytree(folder, target)
    return sorted(target.iterdir())


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_lossless_syntaxes_encoded_by_pydicom_decode_exactly(plain, tmp_path, syntax):
    folder, reference = plain
    paths = copy_series(folder, tmp_path / "compressed")
    edit(paths, lambda k, ds: ds.compress(syntax))
    assert pydicom.dcmread(paths[0], stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    image = read_series(tmp_path / "compressed")
    np.testing.assert_array_equal(image.array, reference.array)
    assert image.same_grid(reference)


def test_jpeg_lossless_process14_from_gdcm_decodes_exactly(plain, tmp_path):
    folder, reference = plain
    paths = copy_series(folder, tmp_path / "jpeg_lossless")

    def gdcm_jpeg(k, ds):  # SimpleITK's GDCM writes JPEG lossless (process 14); move its bitstream over
        written = tmp_path / f"gdcm_{k}.dcm"
        writer = sitk.ImageFileWriter()
        writer.SetFileName(str(written))
        writer.SetUseCompression(True)
        writer.SetCompressor("JPEG")
        writer.Execute(sitk.GetImageFromArray(ds.pixel_array[None]))
        ds.PixelData = pydicom.dcmread(written).PixelData
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1

    edit(paths, gdcm_jpeg)
    np.testing.assert_array_equal(read_series(tmp_path / "jpeg_lossless").array, reference.array)


def test_jpeg_baseline_decodes_like_pillow(plain, tmp_path):
    folder, _ = plain
    paths = copy_series(folder, tmp_path / "jpeg_baseline")
    pillow_decoded = []

    def baseline(k, ds):  # 8-bit MR-like slices, encoded lossy by Pillow
        pixels = (ds.pixel_array.astype(np.int32) % 256).astype(np.uint8)
        buffer = io.BytesIO()
        PIL.Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        pillow_decoded.append(np.asarray(PIL.Image.open(io.BytesIO(buffer.getvalue()))))
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = 0
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit

    edit(paths, baseline)
    image = read_series(tmp_path / "jpeg_baseline")
    expected = np.stack(pillow_decoded, axis=-1).transpose(1, 0, 2)
    assert (
        np.max(np.abs(image.array.astype(np.int32) - expected)) <= 1
    )  # decoders may round the IDCT differently


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
    ],
)
def test_pydicom_shipped_files_match_their_uncompressed_twin(name):
    data = pytest.importorskip("pydicom.data")
    reference = read_series([data.get_testdata_file("MR_small.dcm")])
    image = read_series([data.get_testdata_file(name)])
    np.testing.assert_array_equal(image.array, reference.array)
    assert image.same_grid(reference)


def test_syntax_without_decoder_is_a_clear_error(plain, tmp_path):
    folder, _ = plain
    paths = copy_series(folder, tmp_path / "mpeg")

    def as_mpeg2(k, ds):  # the bitstream is never decoded, so the raw bytes can stand in for it
        ds.PixelData = encapsulate([ds.PixelData])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = MPEG2MPML

    edit(paths[:1], as_mpeg2)
    with pytest.raises(InputError, match=r"slice_0001\.dcm: no decoder installed for transfer syntax MPEG2"):
        read_series(tmp_path / "mpeg")


@pytest.mark.parametrize(
    ("name", "tolerance"),
    [
        ("image_dfl.dcm", 0),  # deflated explicit VR little endian
        ("JPEG2000.dcm", 0),  # lossy JPEG 2000
        ("JPEGLSNearLossless_16.dcm", 0),
        ("JPGExtended.dcm", 1),  # 12-bit lossy JPEG: decoders may round the IDCT differently
    ],
)
def test_pydicom_shipped_files_decode_like_gdcm(name, tolerance):
    data = pytest.importorskip("pydicom.data")
    path = data.get_testdata_file(name)
    image = read_dicom_image(path)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(path))[0].T
    assert np.max(np.abs(image.array - reference)) <= tolerance


def test_undecodable_stream_is_a_clear_error():
    data = pytest.importorskip("pydicom.data")
    with pytest.raises(InputError, match=r"JPEG-lossy\.dcm: cannot decode JPEG Extended \(Process 2 and 4\)"):
        read_dicom_image(data.get_testdata_file("JPEG-lossy.dcm"))  # a known non-conformant file
