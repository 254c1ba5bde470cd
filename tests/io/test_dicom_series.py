"""read_series against SimpleITK on real series, and on written series with known geometry."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import ct_image, shuffle_names, write_series

from medseg.io.dicom import read_series

LPS_FLIP = np.array([-1.0, -1.0, 1.0])


def sitk_series(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def assert_matches_sitk(image, reference: sitk.Image) -> None:
    """Same voxels and the same physical grid as SimpleITK's reading (LPS converted to RAS by hand)."""
    np.testing.assert_allclose(image.origin, np.array(reference.GetOrigin()) * LPS_FLIP, atol=1e-4)
    np.testing.assert_allclose(image.spacing, reference.GetSpacing(), rtol=1e-5)
    direction = np.array(reference.GetDirection()).reshape(3, 3) * LPS_FLIP[:, None]
    np.testing.assert_allclose(image.direction, direction, atol=1e-5)
    np.testing.assert_array_equal(image.array, sitk.GetArrayFromImage(reference).transpose())


@pytest.mark.parametrize(
    "relative",
    [
        "totalseg_ct_mr_examples/example_ct_dicom",
        "brain_mri_dicom_hippocrop/Study1/13_HCropVolume",
        "brain_mri_dicom_hippocrop/Study3/37830-T2reg-78532",
        "dcmqi_ct3slice_seg/ct-3slice",
    ],
)
def test_real_series_match_simpleitk(datasets_dir, relative):
    folder = datasets_dir / relative
    image = read_series(folder)
    assert_matches_sitk(image, sitk_series(folder))
    assert image.meta["number_of_slices"] == image.shape[2] == len(image.meta["sop_instance_uids"])
    assert image.array.dtype == np.int16


def test_meta_carries_uids_in_slice_order_and_no_patient_data(datasets_dir):
    folder = datasets_dir / "brain_mri_dicom_hippocrop" / "Study3" / "36468-FLAIRreg-58706"
    image = read_series(folder)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in folder.iterdir()]
    assert image.meta["modality"] == "MR"
    assert image.meta["series_instance_uid"] == headers[0].SeriesInstanceUID
    assert image.meta["study_instance_uid"] == headers[0].StudyInstanceUID
    assert image.meta["frame_of_reference_uid"] == headers[0].FrameOfReferenceUID
    assert image.meta["series_description"] == headers[0].SeriesDescription
    assert not any("patient" in key.lower() for key in image.meta)
    assert str(headers[0].PatientID) not in repr(image.meta)
    # SOP instance UIDs follow the slice positions along the normal (here +z), not the file names
    z = {str(ds.SOPInstanceUID): float(ds.ImagePositionPatient[2]) for ds in headers}
    positions = [z[uid] for uid in image.meta["sop_instance_uids"]]
    assert positions == sorted(positions) and len(positions) == len(headers)


@pytest.fixture(scope="module")
def totalseg_ct(datasets_dir):
    """The TotalSegmentator CT series (JPEG 2000, about a second to decode), read once."""
    return read_series(datasets_dir / "totalseg_ct_mr_examples" / "example_ct_dicom")


def test_blank_sop_instance_uids_fall_back_to_file_meta(datasets_dir, totalseg_ct):
    folder = datasets_dir / "totalseg_ct_mr_examples" / "example_ct_dicom"
    image = totalseg_ct
    assert image.meta["modality"] == "CT"
    metas = {
        str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID)
        for p in folder.iterdir()
    }
    assert set(image.meta["sop_instance_uids"]) == metas


def test_written_series_with_shuffled_names_round_trips(tmp_path):
    original = ct_image()
    paths = write_series(original, tmp_path / "series")
    shuffle_names(paths)
    image = read_series(tmp_path / "series")
    assert image.same_grid(original, atol_mm=1e-4)
    np.testing.assert_array_equal(image.array, original.array)
    assert_matches_sitk(image, sitk_series(tmp_path / "series"))


def test_list_of_files_reads_the_same_as_the_folder(tmp_path):
    original = ct_image(seed=3)
    paths = write_series(original, tmp_path / "series")
    image = read_series(list(reversed(paths)))
    np.testing.assert_array_equal(image.array, original.array)
    assert image.same_grid(original, atol_mm=1e-4)


def test_totalsegmentator_labels_line_up_with_the_ct_series_in_physical_space(datasets_dir, totalseg_ct):
    """The label map is stored on a y-flipped grid; SimpleITK resamples it onto medseg's CT grid."""
    root = datasets_dir / "totalseg_ct_mr_examples"
    ct = totalseg_ct
    grid = sitk.Image(
        [int(n) for n in ct.shape], sitk.sitkUInt8
    )  # medseg's CT grid, written out by hand in LPS
    grid.SetOrigin([float(v) for v in ct.origin * LPS_FLIP])
    grid.SetSpacing([float(v) for v in ct.spacing])
    grid.SetDirection([float(v) for v in (ct.direction * LPS_FLIP[:, None]).ravel()])
    label_path = root / "example_seg_dicom.nii.gz"
    resampled = sitk.Resample(
        sitk.ReadImage(str(label_path)), grid, sitk.Transform(), sitk.sitkNearestNeighbor
    )
    labels = sitk.GetArrayFromImage(resampled).transpose()

    # voxel for voxel: the index map between the two grids (from nibabel's affine) is a pure y flip
    nifti = nib.load(label_path)
    index_map = np.linalg.inv(nifti.affine) @ ct.affine
    np.testing.assert_allclose(
        index_map, [[1, 0, 0, 0], [0, -1, 0, 511], [0, 0, 1, 0], [0, 0, 0, 1]], atol=1e-6
    )
    stored = np.asarray(nifti.dataobj)
    np.testing.assert_array_equal(labels, stored[:, ::-1, :])

    # anatomy: spleen (1) and liver (5) lie on soft-tissue HU, which the raw unflipped array does not
    soft_tissue = (ct.array > -100) & (ct.array < 250)
    for label in (1, 5):
        assert soft_tissue[labels == label].mean() > 0.99
    assert soft_tissue[stored == 1].mean() < 0.9  # the same check catches a grid mix-up
