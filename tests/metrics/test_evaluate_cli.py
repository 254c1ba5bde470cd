"""`medseg evaluate` end to end: folders, manifests, PNG and DICOM SEG inputs, grids, outputs."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from mask_perturbations import eroded, shifted

from medseg.cli.main import main
from medseg.io.image import LabelMap
from medseg.io.png import write_png
from medseg.io.volume import write_volume
from medseg.metrics.evaluate import evaluate_case


@pytest.fixture(scope="module")
def hippocampus_folders(hippocampus_labels, tmp_path_factory):
    """References (real labels) and predictions: eroded, shifted, and one missing its posterior class."""
    root = tmp_path_factory.mktemp("hippocampus")
    (root / "ref").mkdir()
    (root / "pred").mkdir()
    predictions = {}
    for number, (case, label) in enumerate(hippocampus_labels.items()):
        prediction = [eroded(label, (2, 2, 2)), shifted(label, 2, axis=1), label][number]
        if number == 2:
            prediction = label.with_array(np.where(label.array == 2, 0, label.array).astype(np.uint8))
        predictions[case] = prediction
        write_volume(
            label.with_array(label.array.astype(np.uint8)), root / "ref" / f"hippocampus_{case}.nii.gz"
        )
        write_volume(
            prediction.with_array(prediction.array.astype(np.uint8)),
            root / "pred" / f"hippocampus_{case}.nii.gz",
        )
    (root / "labels.json").write_text(
        json.dumps({"labels": {"0": "background", "1": "anterior", "2": "posterior"}})
    )
    return root, predictions


@pytest.fixture(scope="module")
def evaluated(hippocampus_folders):
    root, _ = hippocampus_folders
    code = main(["evaluate", str(root / "pred"), str(root / "ref"), "--out", str(root / "out"),
                 "--labels", str(root / "labels.json"), "--bootstrap", "200"])  # fmt: skip
    assert code == 0
    return root / "out"


def test_per_case_csv_matches_direct_computation(evaluated, hippocampus_folders, hippocampus_labels):
    _, predictions = hippocampus_folders
    with (evaluated / "metrics_per_case.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 3 * 2
    for row in rows:
        case = row["case"].removeprefix("hippocampus_")
        label = {"anterior": 1, "posterior": 2}[row["class"]]
        predicted, expected = predictions[case].array == label, hippocampus_labels[case].array == label
        dice = 2 * np.sum(predicted & expected) / (predicted.sum() + expected.sum())
        assert float(row["dice"]) == pytest.approx(dice)
        volume = (predicted.sum() - expected.sum()) * np.prod(hippocampus_labels[case].spacing) / 1000
        assert float(row["volume_diff_ml"]) == pytest.approx(volume)


def test_missing_class_is_flagged_and_kept_in_the_summary(evaluated, hippocampus_labels):
    result = json.loads((evaluated / "metrics.json").read_text())
    missed = result["cases"]["hippocampus_038"]["posterior"]
    label = hippocampus_labels["038"]
    diagonal = np.linalg.norm(np.array(label.shape) * label.spacing)
    assert missed["empty"] == "prediction" and missed["dice"] == 0.0
    assert missed["hd95_mm"] == pytest.approx(diagonal) and missed["missed"] == 1
    posterior = result["summary"]["posterior"]
    assert posterior["empty"] == {"both": 0, "prediction": 1, "reference": 0}
    assert posterior["dice"]["n"] == 3
    dice = [result["cases"][case]["posterior"]["dice"] for case in result["cases"]]
    assert posterior["dice"]["mean"] == pytest.approx(np.mean(dice))
    assert "empty" in result["empty_mask_policy"]
    with (evaluated / "metrics_summary.csv").open() as file:
        summary = {(r["class"], r["metric"]): r for r in csv.DictReader(file)}
    assert float(summary[("posterior", "dice")]["mean"]) == pytest.approx(np.mean(dice))


def test_terminal_table_shows_the_numbers(hippocampus_folders, capsys):
    root, _ = hippocampus_folders
    main(["evaluate", str(root / "pred"), str(root / "ref"), "--out", str(root / "out2"),
          "--labels", str(root / "labels.json"), "--bootstrap", "50"])  # fmt: skip
    table = capsys.readouterr().out
    result = json.loads((root / "out2" / "metrics.json").read_text())
    assert f"{result['summary']['anterior']['dice']['mean']:.3f}" in table
    assert "0/1/0" in table  # the posterior class empty in one prediction


def test_grid_mismatch_is_refused_naming_both_files_unless_resampled(hippocampus_labels, tmp_path, capsys):
    label = hippocampus_labels["015"]
    moved = LabelMap(label.array.astype(np.uint8), label.affine.copy())
    moved.affine[:3, 3] += 0.3  # less than half a voxel: nearest resampling gives the labels back
    write_volume(moved, tmp_path / "pred.nii.gz")
    write_volume(label.with_array(label.array.astype(np.uint8)), tmp_path / "ref.nii.gz")
    args = [
        "evaluate",
        str(tmp_path / "pred.nii.gz"),
        str(tmp_path / "ref.nii.gz"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args) == 2
    message = capsys.readouterr().err
    assert "pred.nii.gz" in message and "ref.nii.gz" in message and "--resample" in message
    assert main([*args, "--resample", "--bootstrap", "20"]) == 0
    result = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert result["settings"]["resampled"] is True
    assert all(entry["dice"] == 1.0 for entry in result["cases"]["ref"].values())


def test_manifest_of_png_masks_with_threshold(chest_mask, datasets_dir, tmp_path):
    source = datasets_dir / "cxr_lung_mc_shenzhen" / "masks"
    names = ["MCUCXR_0016_0", "CHNCXR_0006_0"]
    rows = ["case,prediction,reference"]
    for name in names:
        shutil.copy(source / f"{name}.png", tmp_path / f"{name}_ref.png")
        rows.append(f"{name},{name}_pred.png,{name}_ref.png")
    prediction = shifted(chest_mask, 6, axis=0)
    write_png(prediction.with_array(prediction.array * 255), tmp_path / f"{names[0]}_pred.png")
    shutil.copy(source / f"{names[1]}.png", tmp_path / f"{names[1]}_pred.png")  # perfect prediction
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    code = main(["evaluate", "--manifest", str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "out"),
                 "--threshold", "127", "--bootstrap", "20"])  # fmt: skip
    assert code == 0
    cases = json.loads((tmp_path / "out" / "metrics.json").read_text())["cases"]
    assert cases[names[1]]["label_1"]["dice"] == 1.0 and "area_diff_cm2" in cases[names[1]]["label_1"]
    expected = evaluate_case(prediction, chest_mask, {1: "lung"})["lung"]
    assert cases[names[0]]["label_1"]["dice"] == pytest.approx(expected["dice"])


def test_dicom_seg_against_its_nrrd_reoriented_exactly(datasets_dir, tmp_path):
    """The SEG stores its frames in the other slice order: the same voxels on a flipped grid are turned
    exactly (as training turns labels), without --resample, and the output says so."""
    folder = datasets_dir / "dcmqi_ct3slice_seg"
    args = ["evaluate", str(folder / "liver.dcm"), str(folder / "liver_seg.nrrd"), "--out", str(tmp_path)]
    assert main([*args, "--bootstrap", "20"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    (entry,) = metrics["cases"]["liver_seg"].values()
    assert entry["dice"] == 1.0 and entry["hd95_mm"] == 0.0
    [note] = metrics["notes"]["liver_seg"]
    assert note.startswith("prediction reoriented exactly from")


def test_unpaired_cases_and_bad_manifests_are_refused_by_name(hippocampus_folders, tmp_path, capsys):
    root, _ = hippocampus_folders
    shutil.copytree(root / "pred", tmp_path / "pred")
    shutil.copy(root / "pred" / "hippocampus_015.nii.gz", tmp_path / "pred" / "extra_case.nii.gz")
    assert main(["evaluate", str(tmp_path / "pred"), str(root / "ref"), "--out", str(tmp_path / "o")]) == 2
    assert "no reference for 1 prediction(s): extra_case" in capsys.readouterr().err
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps([{"case": "a", "prediction": "p.nii.gz"}]))
    assert main(["evaluate", "--manifest", str(manifest), "--out", str(tmp_path / "o")]) == 2
    assert "entry 1 needs case, prediction and reference" in capsys.readouterr().err
    rows = [
        {
            "case": "c",
            "prediction": f"{root}/pred/hippocampus_025.nii.gz",
            "reference": f"{root}/ref/hippocampus_025.nii.gz",
        }
    ]
    manifest.write_text(json.dumps(rows))
    assert (
        main(["evaluate", "--manifest", str(manifest), "--out", str(tmp_path / "o"), "--bootstrap", "10"])
        == 0
    )
    assert list(json.loads((tmp_path / "o" / "metrics.json").read_text())["cases"]) == ["c"]
