"""The demo path end to end at reduced size: DICOM cohort -> training -> inference -> outputs."""

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


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("demo")
    settings = DemoSettings(**{**SMALL.__dict__, "out_dir": out_dir})
    return out_dir, run_demo(settings, progress=False, say=lambda _: None)


def test_demo_segments_the_organs_of_an_unseen_case(demo):
    _, summary = demo
    dice = summary["mean_dice"]
    assert set(dice) == {"liver", "spleen", "kidney", "tumour"}
    assert dice["liver"] > 0.8 and dice["spleen"] > 0.7 and dice["kidney"] > 0.7


def test_mask_lies_on_the_source_dicom_grid(demo):
    out_dir, _ = demo
    case_dir = out_dir / "results" / "phantom_005"
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(out_dir / "data" / "phantom_005" / "dicom")))
    source = from_sitk(reader.Execute())
    mask = from_sitk(sitk.ReadImage(str(case_dir / "mask.nii.gz")))
    assert mask.shape == source.shape
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-4)
    # The liver (label 1) lies on liver-like Hounsfield units in the source series.
    assert 60 < np.median(source.array[mask.array == 1]) < 150


def test_report_and_overlays_are_written(demo):
    out_dir, summary = demo
    case_dir = out_dir / "results" / "phantom_005"
    report = json.loads((case_dir / "report.json").read_text())
    assert report["metrics"]["liver"]["dice"] == pytest.approx(summary["mean_dice"]["liver"])
    assert 0 <= report["metrics"]["liver"]["iou"] <= report["metrics"]["liver"]["dice"] <= 1
    assert report["structures"]["liver"]["volume_ml"] > 100
    overlays = [case_dir / p for p in report["outputs"]["overlays"]]
    assert overlays and all(p.stat().st_size > 1000 for p in overlays)
    assert "| liver |" in (case_dir / "report.md").read_text()
    assert not list(out_dir.rglob("*.tmp*")), "temporary files left behind"


def test_cli_help_and_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("medseg ")
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    for command in ("demo", "info", "convert", "plan", "bench"):
        assert f"    {command}" in listed
