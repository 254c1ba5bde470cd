"""Fingerprint and plan: msd_hippocampus gives nnU-Net-like settings; statistics match a direct count."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.cli.main import main
from medseg.data.planner import Plan, Planner, load_plan, save_plan
from medseg.errors import InputError


@pytest.fixture(scope="module")
def hippocampus_plan(tmp_path_factory, datasets_dir) -> Plan:
    out = tmp_path_factory.mktemp("plan") / "plans.json"
    assert main(["plan", str(datasets_dir / "msd_hippocampus"), "--out", str(out), "--no-progress"]) == 0
    return load_plan(out)


def test_hippocampus_plan_spacing_patch_and_batch(hippocampus_plan, datasets_dir):
    plan = hippocampus_plan
    assert plan.dim == 3 and plan.orientation == "RAS"
    assert plan.target_spacing == [1.0, 1.0, 1.0]
    assert plan.label_names == {0: "background", 1: "Anterior", 2: "Posterior"} and plan.num_classes == 3

    reader = sitk.ImageFileReader()
    sizes = []
    for path in sorted((datasets_dir / "msd_hippocampus" / "labelsTr").glob("*.nii.gz")):
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        sizes.append(reader.GetSize())
    median = np.median(np.array(sizes), axis=0)
    np.testing.assert_array_equal(plan.fingerprint["median_shape"], median)
    assert all(p >= m for p, m in zip(plan.patch_size, median, strict=True))  # covers the typical volume
    assert np.prod(plan.patch_size) < 2 * np.prod(median)  # ...without being needlessly large
    assert all(p % 2**c == 0 for p, c in zip(plan.patch_size, plan.pool_counts, strict=True))
    assert min(plan.pool_counts) >= 2
    assert Planner.MIN_BATCH_SIZE <= plan.batch_size <= 32
    assert plan.normalization == [{"modality": "MRI", "scheme": "zscore", "nonzero": False}]
    assert plan.mirror_axes == [0, 1, 2]  # anterior/posterior labels: every axis may be mirrored


def test_intensity_statistics_match_all_foreground_voxels(hippocampus_plan, datasets_dir):
    # Every hippocampus case has fewer foreground voxels than the per-case sample, so nothing is sampled.
    root = datasets_dir / "msd_hippocampus"
    values = []
    for label_path in sorted((root / "labelsTr").glob("*.nii.gz")):
        label = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "imagesTr" / label_path.name)))
        values.append(image[label > 0].astype(np.float64))
    pooled = np.concatenate(values)
    stats = hippocampus_plan.fingerprint["intensity"][0]
    np.testing.assert_allclose(stats["mean"], pooled.mean(), rtol=1e-6)
    np.testing.assert_allclose(stats["std"], pooled.std(), rtol=1e-6)
    np.testing.assert_allclose(
        [stats["percentile_00_5"], stats["percentile_99_5"]], np.percentile(pooled, [0.5, 99.5]), rtol=1e-6
    )
    classes = hippocampus_plan.fingerprint["classes"]
    assert classes["1"]["cases_present"] == 230 and classes["2"]["cases_present"] == 230
    assert classes["1"]["foreground_fraction"] + classes["2"]["foreground_fraction"] == pytest.approx(1.0)


def _synthetic_fingerprint(spacings, shapes, modality="CT"):
    intensity = {
        "channel": 0,
        "modality": modality,
        "mean": 80.0,
        "std": 40.0,
        "median": 75.0,
        "min": -1000.0,
        "max": 3000.0,
        "percentile_00_5": -50.0,
        "percentile_99_5": 250.0,
    }
    return {"dim": len(spacings[0]), "spacings": spacings, "shapes": shapes, "intensity": [intensity]}


def test_anisotropic_ct_gets_finer_coarse_axis_budgeted_patch_and_ct_normalisation():
    rng = np.random.default_rng(0)
    slice_spacing = rng.choice([2.5, 5.0, 5.0, 5.0], size=40).tolist()
    spacings = [[0.8, 0.8, s] for s in slice_spacing]
    shapes = [[512, 512, round(150 / s)] for s in slice_spacing]
    planner = Planner(_synthetic_fingerprint(spacings, shapes))
    spacing = planner.target_spacing()
    assert spacing[:2] == [0.8, 0.8]
    assert spacing[2] == pytest.approx(np.percentile(slice_spacing, Planner.COARSE_AXIS_PERCENTILE))
    assert spacing[2] < np.median(slice_spacing)

    patch = planner.patch_size(spacing)
    counts = planner.pool_counts(patch, spacing)
    assert np.prod(patch) <= Planner.PATCH_VOXEL_BUDGET[3]
    assert counts[2] < counts[0]  # the coarse axis is pooled later
    assert all(p % 2**c == 0 for p, c in zip(patch, counts, strict=True))

    norm = planner.normalization(planner.fingerprint["intensity"][0])
    assert norm == {
        "modality": "CT",
        "scheme": "ct",
        "clip_low": -50.0,
        "clip_high": 250.0,
        "mean": 80.0,
        "std": 40.0,
    }


def test_mirror_axes_spare_radiographs_and_sided_labels():
    ct_3d = Planner(_synthetic_fingerprint([[0.8, 0.8, 2.0]] * 4, [[256, 256, 100]] * 4))
    info = {"labels": {"0": "background", "1": "liver", "2": "spleen"}}
    assert ct_3d.plan(info).mirror_axes == [0, 1, 2]
    sided = {"labels": {"0": "background", "1": "kidney_left", "2": "Right lung"}}
    assert ct_3d.plan(sided).mirror_axes == [1, 2]  # a left-right flip would swap these classes
    assert ct_3d.plan({"labels": {"1": "bright spot"}}).mirror_axes == [0, 1, 2]  # "bright" is no side
    xray = Planner(_synthetic_fingerprint([[1.0, 1.0]] * 4, [[512, 512]] * 4, modality="DX"))
    plan = xray.plan({"labels": {"0": "background", "1": "lung"}})
    assert plan.normalization[0]["scheme"] == "percentile"
    assert plan.mirror_axes == [] and plan.mirroring == ()


def test_plans_without_mirror_axes_mirror_every_axis_and_bad_axes_are_refused(tmp_path, hippocampus_plan):
    path = save_plan(hippocampus_plan, tmp_path / "plans.json")
    written_before_the_field = json.loads(path.read_text())
    del written_before_the_field["mirror_axes"]
    path.write_text(json.dumps(written_before_the_field))
    assert load_plan(path).mirroring == (0, 1, 2)
    written_before_the_field["mirror_axes"] = [1, 3]
    path.write_text(json.dumps(written_before_the_field))
    with pytest.raises(InputError, match=r"mirror_axes \[1, 3\] must be axes 0..2"):
        load_plan(path)


def test_plan_round_trip_and_hand_edits_are_checked(tmp_path, hippocampus_plan):
    path = save_plan(hippocampus_plan, tmp_path / "plans.json")
    assert load_plan(path) == hippocampus_plan
    edited = json.loads(path.read_text())
    edited["patch_size"] = [40, 50, 40]
    path.write_text(json.dumps(edited))
    with pytest.raises(InputError, match=r"patch_size\[1\] = 50 is not divisible by 2\*\*3"):
        load_plan(path)
    edited["patch_size"] = [40, 56, 40]
    edited["normalization"][0]["scheme"] = "magic"
    path.write_text(json.dumps(edited))
    with pytest.raises(InputError, match="magic"):
        load_plan(path)


def test_plan_cli_reports_a_bad_dataset_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["plan", str(tmp_path / "empty"), "--out", str(tmp_path / "p.json")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "empty: not a dataset layout medseg reads" in error
    assert not (tmp_path / "p.json").exists()
