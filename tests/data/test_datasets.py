"""Dataset layouts and case loading on the real datasets, checked against SimpleITK and PIL."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import SimpleITK as sitk

from medseg.data.datasets import open_dataset, read_image_folders, read_manifest, read_msd
from medseg.data.loading import load_case, load_case_channels
from medseg.errors import ConfigError, GeometryError, InputError
from medseg.io.sitk_bridge import affine_from_sitk
from medseg.io.volume import read_volume, write_volume

#: The two float32 label files and some uint8 images of msd_hippocampus (see its PROVENANCE.md).
HIPPOCAMPUS_SAMPLE = [
    "hippocampus_003",
    "hippocampus_243",
    "hippocampus_001",
    "hippocampus_033",
    "hippocampus_205",
]


@pytest.fixture(scope="module")
def hippocampus(datasets_dir):
    return read_msd(datasets_dir / "msd_hippocampus")


def test_hippocampus_cases_load_as_float_images_and_integer_labels(hippocampus):
    assert len(hippocampus.cases) == 230 and hippocampus.layout == "msd"
    assert hippocampus.label_names == {0: "background", 1: "Anterior", 2: "Posterior"}
    assert hippocampus.modalities == ["MRI"]
    by_id = {case["id"]: case for case in hippocampus.cases}
    for case_id in HIPPOCAMPUS_SAMPLE:
        record = by_id[case_id]
        image, label = load_case(record)
        reference = sitk.ReadImage(record["image"])
        reference_label = sitk.ReadImage(record["label"])
        assert image.array.dtype == np.float32 and np.issubdtype(label.array.dtype, np.integer)
        np.testing.assert_array_equal(image.array, sitk.GetArrayFromImage(reference).T.astype(np.float32))
        np.testing.assert_allclose(image.affine, affine_from_sitk(reference))
        np.testing.assert_array_equal(label.array, sitk.GetArrayFromImage(reference_label).T)
        assert set(np.unique(label.array)) == {0, 1, 2}
        assert label.same_grid(image)


def test_chest_xray_pairs_load_binarised_and_transposed_from_pil(datasets_dir):
    dataset = open_dataset(datasets_dir / "cxr_lung_mc_shenzhen", modality="XRAY")
    assert dataset.layout == "image_folders" and len(dataset.cases) == 218 and dataset.modalities == ["XRAY"]
    for record in dataset.cases[::70]:
        image, label = load_case(record)
        pixels = np.asarray(PIL.Image.open(record["image"]))
        mask = np.asarray(PIL.Image.open(record["label"]))
        assert image.shape == pixels.T.shape
        np.testing.assert_array_equal(image.array, pixels.T)
        np.testing.assert_array_equal(label.array, (mask.T > 127).astype(np.uint8))
        np.testing.assert_allclose(image.spacing, (1.0, 1.0))


def test_em_folders_pair_image_and_label_names(datasets_dir):
    dataset = read_image_folders(datasets_dir / "isbi2012_em_membrane" / "train")
    assert len(dataset.cases) == 30
    assert all(
        c["image"].endswith(f"image/{c['id']}.png") and c["label"].endswith(f"label/{c['id']}.png")
        for c in dataset.cases
    )


def test_nnunet_v2_layout_with_channel_files(tmp_path, datasets_dir):
    source = datasets_dir / "msd_hippocampus"
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    for number in ("001", "003"):
        image = source / "imagesTr" / f"hippocampus_{number}.nii.gz"
        (tmp_path / "imagesTr" / f"hip_{number}_0000.nii.gz").symlink_to(image)
        (tmp_path / "imagesTr" / f"hip_{number}_0001.nii.gz").symlink_to(image)
        (tmp_path / "labelsTr" / f"hip_{number}.nii.gz").symlink_to(source / "labelsTr" / image.name)
    meta = {
        "channel_names": {"0": "T1", "1": "T2"},
        "labels": {"background": 0, "hippocampus": [1, 2]},
        "numTraining": 2,
        "file_ending": ".nii.gz",
    }
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    dataset = open_dataset(tmp_path)
    assert dataset.ids == ["hip_001", "hip_003"] and dataset.modalities == ["T1", "T2"]
    assert dataset.label_names == {0: "background"}  # region lists are not single labels
    images, label = load_case_channels(dataset.cases[0])
    assert len(images) == 2 and images[0].same_grid(label)
    with pytest.raises(ConfigError, match="several channels"):
        load_case(dataset.cases[0])


def test_manifests_csv_and_json_with_splits_and_grid_check(tmp_path, datasets_dir):
    hip = datasets_dir / "msd_hippocampus"
    rows = [
        ("imagesTr/hippocampus_001.nii.gz", "labelsTr/hippocampus_001.nii.gz", "a", "train"),
        ("imagesTr/hippocampus_004.nii.gz", "labelsTr/hippocampus_004.nii.gz", "b", "val"),
    ]
    csv_path = tmp_path / "cases.csv"
    lines = ["image,label,id,split"] + [f"{hip / i},{hip / lab},{cid},{s}" for i, lab, cid, s in rows]
    csv_path.write_text("\n".join(lines) + "\n")
    dataset = open_dataset(csv_path)
    assert dataset.ids == ["a", "b"] and [c["split"] for c in dataset.cases] == ["train", "val"]
    csv_path.write_text("\n".join([*lines[:2], lines[2].replace(",val", ",Validation")]) + "\n")
    assert [c["split"] for c in open_dataset(csv_path).cases] == ["train", "val"]
    csv_path.write_text("\n".join([*lines[:2], lines[2].replace(",val", ",holdout")]) + "\n")
    with pytest.raises(InputError, match=r"cases\.csv: row 2: split 'holdout' is not one of train, "):
        open_dataset(csv_path)

    (tmp_path / "hip").symlink_to(hip)
    json_path = tmp_path / "cases.json"
    mismatched = {
        "image": "hip/imagesTr/hippocampus_001.nii.gz",
        "label": "hip/labelsTr/hippocampus_004.nii.gz",
    }
    json_path.write_text(json.dumps({"name": "demo", "labels": {"0": "bg", "1": "x"}, "cases": [mismatched]}))
    dataset = read_manifest(json_path)
    assert dataset.name == "demo" and dataset.label_names == {0: "bg", 1: "x"}
    assert dataset.ids == ["hippocampus_004"]
    with pytest.raises(GeometryError, match=r"hippocampus_004\.nii\.gz: grid .* does not match image .*001"):
        load_case(dataset.cases[0])

    json_path.write_text(json.dumps([{"image": "hip/imagesTr/nope.nii.gz", "label": "x.nii.gz"}]))
    with pytest.raises(InputError, match="row 1"):
        read_manifest(json_path)


def test_dicom_series_with_seg_and_flipped_nifti_labels(tmp_path, datasets_dir):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "images" / "liver").symlink_to(datasets_dir / "dcmqi_ct3slice_seg" / "ct-3slice")
    (tmp_path / "labels" / "liver.dcm").symlink_to(datasets_dir / "dcmqi_ct3slice_seg" / "liver.dcm")
    totalseg = datasets_dir / "totalseg_ct_mr_examples"
    (tmp_path / "images" / "abdomen").symlink_to(totalseg / "example_ct_dicom")
    (tmp_path / "labels" / "abdomen.nii.gz").symlink_to(totalseg / "example_seg_dicom.nii.gz")
    dataset = open_dataset(tmp_path, modality="CT")
    assert dataset.layout == "dicom" and dataset.ids == ["abdomen", "liver"]

    image, label = load_case(dataset.cases[1])
    nrrd = sitk.ReadImage(str(datasets_dir / "dcmqi_ct3slice_seg" / "liver_seg.nrrd"))
    assert label.same_grid(image)
    np.testing.assert_allclose(label.affine, affine_from_sitk(nrrd), atol=1e-4)
    np.testing.assert_array_equal(label.array, sitk.GetArrayFromImage(nrrd).T)

    image, label = load_case(dataset.cases[0])  # the NIfTI is y-flipped: reoriented exactly onto the series
    assert label.same_grid(image)
    nifti = sitk.ReadImage(str(totalseg / "example_seg_dicom.nii.gz"))
    series = _series(totalseg / "example_ct_dicom")
    on_series = sitk.Resample(nifti, series, sitk.Transform(), sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(label.array, sitk.GetArrayFromImage(on_series).T)


def _series(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def test_fractional_label_values_are_refused_naming_the_file(tmp_path, datasets_dir):
    image_path = datasets_dir / "msd_hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
    image = read_volume(image_path)
    soft = image.with_array(np.full(image.shape, 0.5, dtype=np.float32))
    label_path = write_volume(soft, tmp_path / "soft.nii.gz")
    with pytest.raises(InputError, match=r"soft\.nii\.gz: label values must be whole numbers"):
        load_case({"id": "x", "image": str(image_path), "label": str(label_path)})
