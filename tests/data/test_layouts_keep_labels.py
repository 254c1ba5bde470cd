"""Every common layout keeps every label: traps a new user hit, built from the shared data in the tests.

- 3D NIfTI in ``images/`` + ``labels/`` once lost labels 1 and 2 (masks were binarised at > 127) and
  training then died inside MONAI on a ``label_threshold`` key;
- a CSV manifest (it cannot name classes) with labels 0/1/2 built a 2-output network;
- ``X_mask.png`` naming could not be set; 0/255 PNG masks are read as 0/1 and counted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import PIL.Image
import pydicom
import pytest

from medseg.cli.main import main
from medseg.data.datasets import open_dataset
from medseg.data.fingerprint import compute_fingerprint
from medseg.data.loading import load_case
from medseg.data.planner import Planner, load_plan
from medseg.errors import InputError
from medseg.training.config import config_from_dict
from medseg.training.experiment import prepare

HIPPOCAMPUS = ("hippocampus_001", "hippocampus_003", "hippocampus_004", "hippocampus_006", "hippocampus_007")
CXR = ("CHNCXR_0006_0", "CHNCXR_0007_0", "MCUCXR_0001_0", "MCUCXR_0002_0", "MCUCXR_0004_0")
#: A tiny U-Net and run, enough to build the network and take a step.
TINY = {"model": "unet", "model_options": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}


def _link(target: Path, source: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source)


@pytest.fixture(scope="module")
def hippocampus_folders(datasets_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hippo_layout")
    for case in HIPPOCAMPUS:
        for part, folder in (("imagesTr", "images"), ("labelsTr", "labels")):
            _link(
                root / folder / f"{case}.nii.gz", datasets_dir / "msd_hippocampus" / part / f"{case}.nii.gz"
            )
    return root


@pytest.fixture(scope="module")
def hippocampus_csv(datasets_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hippo_csv")
    rows = ["image,label"] + [
        f"{datasets_dir}/msd_hippocampus/imagesTr/{case}.nii.gz,{datasets_dir}/msd_hippocampus/labelsTr/{case}.nii.gz"
        for case in HIPPOCAMPUS
    ]
    (root / "cases.csv").write_text("\n".join(rows) + "\n")
    return root / "cases.csv"


@pytest.mark.parametrize("layout", ["hippocampus_folders", "hippocampus_csv"])
def test_unnamed_3d_labels_keep_every_class_and_size_the_network(layout, request, tmp_path):
    dataset = request.getfixturevalue(layout)
    assert main(["plan", str(dataset), "--out", str(tmp_path / "plans.json"), "--no-progress"]) == 0
    plan = load_plan(tmp_path / "plans.json")
    assert plan.label_names == {0: "background", 1: "label_1", 2: "label_2"}
    assert plan.fingerprint["classes"]["2"]["cases_present"] == len(HIPPOCAMPUS)
    config = config_from_dict({"dataset": str(dataset), "output": str(tmp_path / "run"), **TINY})
    experiment = prepare(config)
    assert experiment.model_config.out_channels == 3  # not 2: class 2 is trained from the first step


def test_training_a_dataset_folder_without_a_config_runs(hippocampus_folders, tmp_path):
    """``medseg train DATASET --out RUN`` with names from --labels: a real step and a validation."""
    run = tmp_path / "run"
    argv = [
        "train",
        str(hippocampus_folders),
        "--out",
        str(run),
        "--labels",
        '{"1": "anterior", "2": "posterior"}',
    ]
    settings = [
        "--epochs",
        "1",
        "--set",
        "steps_per_epoch=1",
        "--set",
        "patch_size=[16,16,16]",
        "--no-progress",
    ]
    sizes = [
        f"--set=model={TINY['model']}",
        "--set",
        "model_options={channels: [4, 8], strides: [2], num_res_units: 0}",
    ]
    assert main([*argv, *settings, *sizes]) == 0
    validation = json.loads((run / "validation.json").read_text())
    assert set(validation["dice"]) == {"anterior", "posterior"}


def test_png_masks_with_a_suffix_are_paired_and_read_as_0_1(datasets_dir, tmp_path):
    root = tmp_path / "cxr"
    for case in CXR:
        _link(
            root / "images" / f"{case}.png", datasets_dir / "cxr_lung_mc_shenzhen" / "images" / f"{case}.png"
        )
        _link(
            root / "masks" / f"{case}_mask.png",
            datasets_dir / "cxr_lung_mc_shenzhen" / "masks" / f"{case}.png",
        )
    dataset = open_dataset(root, modality="XRAY", labels={"1": "lung"})
    assert len(dataset.cases) == len(CXR) and dataset.label_names == {1: "lung"}
    fingerprint = compute_fingerprint(dataset, progress=False)
    assert set(fingerprint["classes"]) == {"0", "1"}  # the anti-aliased 0..255 masks became 0/1
    assert fingerprint["label_interpretation"] == {"anti-aliased": len(CXR)}
    plan = Planner(fingerprint).plan(dataset.describe(root))
    assert plan.label_names == {0: "background", 1: "lung"}


def test_a_mask_that_is_a_picture_is_warned_about(datasets_dir, tmp_path):
    """An image copied in as its own 'mask' has hundreds of values: the plan says what looks wrong."""
    root = tmp_path / "pictures"
    for case in CXR[:3]:
        picture = datasets_dir / "cxr_lung_mc_shenzhen" / "images" / f"{case}.png"
        _link(root / "images" / f"{case}.png", picture)
        grey = PIL.Image.open(picture).convert("L")
        (root / "masks").mkdir(exist_ok=True)
        grey.save(root / "masks" / f"{case}.png")
    fingerprint = compute_fingerprint(open_dataset(root), progress=False)
    assert any("different values: are they pictures" in warning for warning in fingerprint["warnings"])


def test_a_pacs_export_with_seg_beside_its_series_is_a_labelled_dataset(datasets_dir, tmp_path, caplog):
    """``patient/CT/*.dcm`` + ``patient/SEG/liver.dcm``: each SEG is paired with the series it references;
    its segment label names the class and the files' Modality is the dataset's; a patient without a SEG
    is named in a warning, never labelled background."""
    source = datasets_dir / "dcmqi_ct3slice_seg"
    root = tmp_path / "export"
    for patient in ("patient_a", "patient_b", "patient_c"):
        shutil.copytree(source / "ct-3slice", root / patient / "CT")
        if patient != "patient_c":
            (root / patient / "SEG").mkdir()
            shutil.copy(source / "liver.dcm", root / patient / "SEG" / "liver.dcm")
    dataset = open_dataset(root)
    assert dataset.layout == "dicom_studies" and dataset.ids == ["patient_a", "patient_b"]
    assert dataset.modalities == ["CT"]
    assert [name.lower() for name in dataset.label_names.values()] == ["background", "liver"]
    assert "patient_c" in caplog.text
    fingerprint = compute_fingerprint(dataset, progress=False)
    assert fingerprint["classes"]["1"]["cases_present"] == 2


def test_a_series_with_a_label_volume_beside_it_is_a_case(datasets_dir, tmp_path):
    """``patient/CT/*.dcm`` + ``patient/liver.nrrd``: the one label volume beside the one series."""
    source = datasets_dir / "dcmqi_ct3slice_seg"
    root = tmp_path / "export"
    for patient in ("patient_a", "patient_b"):
        shutil.copytree(source / "ct-3slice", root / patient / "CT")
        shutil.copy(source / "liver_seg.nrrd", root / patient / "liver.nrrd")
    dataset = open_dataset(root, labels={"1": "liver"})
    assert dataset.ids == ["patient_a", "patient_b"] and dataset.modalities == ["CT"]
    fingerprint = compute_fingerprint(dataset, progress=False)
    assert fingerprint["classes"]["1"]["cases_present"] == 2


def test_clinician_rtstruct_contours_train_as_classes_through_a_name_mapping(datasets_dir, tmp_path):
    """A PACS export with 24 slices of the LUNG1 CT and its RTSTRUCT (twice, as two patients): the ROIs
    become four classes through case-insensitive name variants, and a few training steps run on them. A
    mapped ROI a case lacks is an error naming the file, never background."""
    from medseg.training.config import config_from_dict
    from medseg.training.trainer import fit

    source = datasets_dir / "nsclc_lung1_ct_rtstruct"
    root = tmp_path / "export"
    by_height = sorted(
        (source / "CT").iterdir(),
        key=lambda path: float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2]),
    )
    kept = {"CT": by_height[64:88], "RTSTRUCT": list((source / "RTSTRUCT").iterdir())}  # all four ROIs
    for patient in ("patient_a", "patient_b"):
        for part, paths in kept.items():
            (root / patient / part).mkdir(parents=True)
            for path in paths:
                (root / patient / part / path.name).symlink_to(path)  # linked files, real folders
    labels = {
        "1": ["Lung-Left", "Lung_L"],
        "2": ["lung-right"],
        "3": "GTV-1",
        "4": ["SpinalCord", "Spinal-Cord"],
    }
    dataset = open_dataset(root, labels=labels)
    assert dataset.ids == ["patient_a", "patient_b"] and dataset.modalities == ["CT"]
    config = config_from_dict({
        "dataset": str(root), "output": str(tmp_path / "run"), "labels": labels, "folds": 2,
        "target_spacing": [4.0, 4.0, 6.0], "patch_size": [32, 32, 16], "batch_size": 2, "epochs": 1,
        "steps_per_epoch": 2, **TINY, "progress": False, "threads": 1,
    })  # fmt: skip
    summary = fit(config)
    assert summary["steps"] == 2
    plan = load_plan(tmp_path / "run" / "plans.json")
    assert sorted(plan.fingerprint["classes"]) == ["0", "1", "2", "3", "4"]
    assert plan.label_names == {0: "background", 1: "Lung-Left", 2: "lung-right", 3: "GTV-1", 4: "SpinalCord"}
    missing = open_dataset(root, labels={**labels, "5": "Heart"})
    with pytest.raises(InputError, match=r"\.dcm: no ROI for class\(es\) \[5\]"):
        load_case(missing.cases[0])
