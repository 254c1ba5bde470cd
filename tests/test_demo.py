"""The demo end to end at reduced size, through the front door: DICOM cohort -> `fit` -> `Segmenter` ->
exactly what ``medseg infer`` writes; and its model then works with ``medseg infer``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.cli.main import main
from medseg.data.phantom import PhantomConfig
from medseg.demo import DemoSettings, run_demo
from medseg.io.sitk_bridge import from_sitk

SMALL = DemoSettings(
    train_cases=5,
    phantom=PhantomConfig(shape=(64, 64, 24), spacing=(5.25, 5.25, 8.5)),
    patch_size=(64, 64, 24),
    channels=(8, 16, 32),
    max_steps=150,
    max_seconds=600.0,
)
UNSEEN = "phantom_005"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("demo")
    settings = DemoSettings(**{**SMALL.__dict__, "out_dir": out_dir})
    return out_dir, run_demo(settings, progress=False, say=lambda _: None)


def _result_folder(out_dir):
    [result] = (out_dir / "results" / UNSEEN).glob("*/result.json")
    return result.parent


def test_demo_segments_the_organs_of_an_unseen_case_within_its_step_budget(demo):
    _, summary = demo
    dice = summary["mean_dice"]
    assert set(dice) == {"liver", "spleen", "kidney", "tumour"}
    assert dice["liver"] > 0.8 and dice["spleen"] > 0.7 and dice["kidney"] > 0.7
    assert summary["training"]["steps"] == summary["training"]["planned_steps"] == 150
    assert summary["training"]["cut_short_by_time_cap"] is False
    assert 0 <= summary["mean_iou"]["liver"] <= dice["liver"] <= 1


def test_demo_writes_what_infer_writes_on_the_source_dicom_grid(demo):
    out_dir, _ = demo
    folder = _result_folder(out_dir)
    for name in ("mask.nii.gz", "seg.dcm", "report.html", "result.json"):
        assert (folder / name).is_file(), name
    assert list((folder / "overlays").glob("*.png"))
    result = json.loads((folder / "result.json").read_text())
    assert result["kind"] == "dicom-series" and result["structures"]["liver"]["volume_ml"] > 100
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(out_dir / "data" / UNSEEN / "dicom")))
    source = from_sitk(reader.Execute())
    mask = from_sitk(sitk.ReadImage(str(folder / "mask.nii.gz")))
    assert mask.shape == source.shape
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-4)
    assert 60 < np.median(source.array[mask.array == 1]) < 150  # liver on liver-like HU
    assert not list(out_dir.rglob("*.tmp*")), "temporary files left behind"


def test_the_demo_model_works_with_medseg_infer(demo, tmp_path):
    out_dir, summary = demo
    run_folder = out_dir / "model"
    assert summary["checkpoint"] == str(run_folder / "best.pt")
    out = tmp_path / "infer"
    assert (
        main(["infer", str(out_dir / "data" / UNSEEN / "dicom"), "-m", str(run_folder), "-o", str(out)]) == 0
    )
    [result] = out.glob("*/result.json")
    demo_mask = sitk.GetArrayFromImage(sitk.ReadImage(str(_result_folder(out_dir) / "mask.nii.gz")))
    infer_mask = sitk.GetArrayFromImage(sitk.ReadImage(str(result.parent / "mask.nii.gz")))
    np.testing.assert_array_equal(infer_mask, demo_mask)


def test_a_time_cap_that_cuts_training_short_is_said_plainly(tmp_path):
    said = []
    settings = DemoSettings(**{**SMALL.__dict__, "out_dir": tmp_path, "train_cases": 3, "max_seconds": 1.0})
    summary = run_demo(settings, progress=False, say=said.append)
    assert summary["training"]["cut_short_by_time_cap"] is True
    assert summary["training"]["steps"] < summary["training"]["planned_steps"]
    assert any("cap stopped training after" in line for line in said)


def test_cli_help_and_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("medseg ")
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    for command in ("demo", "info", "convert", "plan", "infer", "pacs", "bench"):
        assert f"    {command}" in listed
    for command in ("demo", "infer", "train", "pacs"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0 and "usage: medseg " + command in capsys.readouterr().out
