"""read_image dispatches by path to the right reader, and each result matches an independent reader."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medseg.errors import InputError
from medseg.io.image import LabelMap, ScalarImage
from medseg.io.reader import read_image


def test_dicom_folder_reads_the_series(datasets_dir):
    folder = datasets_dir / "dcmqi_ct3slice_seg" / "ct-3slice"
    image = read_image(folder)
    assert isinstance(image, ScalarImage) and image.shape == (512, 512, 3)
    assert image.meta["modality"] == "CT"


def test_folder_with_several_series_lists_them(datasets_dir):
    with pytest.raises(InputError, match=r"5 series found.*T2_reg"):
        read_image(datasets_dir / "brain_mri_dicom_hippocrop" / "Study3")


def test_dicom_file_without_suffix_reads_as_2d_slice(datasets_dir):
    path = sorted((datasets_dir / "totalseg_ct_mr_examples" / "example_ct_dicom").iterdir())[0]
    image = read_image(path)
    reference = sitk.ReadImage(str(path))
    assert image.ndim == 2
    np.testing.assert_array_equal(image.array, sitk.GetArrayFromImage(reference)[0].T)
    np.testing.assert_allclose(image.origin, np.multiply(reference.GetOrigin(), [-1, -1, 1]), atol=1e-4)


def test_dicom_seg_reads_as_label_map(datasets_dir):
    labels = read_image(datasets_dir / "dcmqi_ct3slice_seg" / "liver.dcm")
    assert isinstance(labels, LabelMap) and labels.array.max() == 1


def test_multiframe_dicom_file_reads_as_volume(tmp_path):
    data = pytest.importorskip("pydicom.data")
    source = pydicom.dcmread(data.get_testdata_file("MR_small.dcm"))
    source.NumberOfFrames = 2
    source.PixelData = source.PixelData * 2
    source.SharedFunctionalGroupsSequence = [pydicom.Dataset()]
    shared = source.SharedFunctionalGroupsSequence[0]
    for name, keyword in (
        ("PlaneOrientationSequence", "ImageOrientationPatient"),
        ("PixelMeasuresSequence", "PixelSpacing"),
    ):
        item = pydicom.Dataset()
        setattr(item, keyword, source[keyword].value)
        setattr(shared, name, [item])
    source.PerFrameFunctionalGroupsSequence = []
    for k in range(2):
        position = pydicom.Dataset()
        position.ImagePositionPatient = [
            float(v) + (3.0 * k if i == 2 else 0) for i, v in enumerate(source.ImagePositionPatient)
        ]
        frame = pydicom.Dataset()
        frame.PlanePositionSequence = [position]
        source.PerFrameFunctionalGroupsSequence.append(frame)
    source.save_as(tmp_path / "two_frames.dcm")
    volume = read_image(tmp_path / "two_frames.dcm")
    assert volume.shape == (64, 64, 2)
    np.testing.assert_allclose(
        volume.spacing[2], 3.0 * abs(np.cross(*np.reshape(source.ImageOrientationPatient, (2, 3)))[2])
    )


def test_nifti_and_png_go_to_their_readers(datasets_dir):
    nifti = datasets_dir / "msd_hippocampus" / "labelsTr" / "hippocampus_190.nii.gz"
    labels = read_image(nifti, LabelMap)
    assert isinstance(labels, LabelMap)
    np.testing.assert_array_equal(labels.array, sitk.GetArrayFromImage(sitk.ReadImage(str(nifti))).T)
    png = next((datasets_dir / "cxr_lung_mc_shenzhen" / "images").glob("*.png"))
    assert read_image(png).shape == sitk.ReadImage(str(png)).GetSize()[:2]


def test_unsupported_and_missing_paths(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="unsupported file type"):
        read_image(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="no such file or folder"):
        read_image(tmp_path / "absent")
