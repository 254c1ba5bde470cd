"""No silent "done" on a wrong input: every shipped bundle over a folder mixing a brain MRI DICOM series, a
real CT series, a chest X-ray and a NIfTI volume skips what it was not trained for, with the reason, and
flags every output in result.json, summary.json, report.html and the SEG's series description."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseg.cli.main import main
from medseg.data.planner import Plan
from medseg.inference.domain import CAUTION, OK, OUT_OF_DOMAIN, check_domain
from medseg.io.image import ScalarImage

#: Per bundle, the inputs it must refuse as out of domain (the rest are segmented).
REFUSED = {
    "hippocampus_mri_3d": {"ct", "xray"},
    "hippocampus_deeplab_3d": {"ct", "xray"},
    "lung_cxr_2d": {"mri", "ct", "nifti"},
    "abdomen_ct_3d": {"mri", "xray"},
}


@pytest.fixture(scope="module")
def mixed_folder(datasets_dir: Path, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mixed")
    shutil.copytree(datasets_dir / "brain_mri_dicom_hippocrop" / "Study1", folder / "mri")  # scans skip links
    shutil.copytree(datasets_dir / "totalseg_ct_mr_examples" / "example_ct_dicom", folder / "ct")
    (folder / "xray").mkdir()
    (folder / "xray" / "CHNCXR_0006_0.png").symlink_to(
        datasets_dir / "cxr_lung_mc_shenzhen" / "images" / "CHNCXR_0006_0.png"
    )
    (folder / "nifti").mkdir()
    (folder / "nifti" / "hippocampus_001.nii.gz").symlink_to(
        datasets_dir / "msd_hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
    )
    return folder


@pytest.mark.parametrize("bundle", sorted(REFUSED))
def test_every_bundle_skips_inputs_outside_its_domain_and_flags_the_rest(bundle, mixed_folder, tmp_path):
    out = tmp_path / "out"
    assert (
        main(["infer", str(mixed_folder), "-m", bundle, "-o", str(out), "--no-overlays", "--tta-zooms", "1"])
        == 0
    )
    items = json.loads((out / "summary.json").read_text())["items"]
    by_source = {item["input"].split("/")[0]: item for item in items if "kind" in item}
    assert set(by_source) == {"mri", "ct", "xray", "nifti"}
    for source, item in by_source.items():
        if source in REFUSED[bundle]:
            assert item["status"] == "skipped" and item["domain"] == OUT_OF_DOMAIN, (source, item)
            assert "output" not in item  # nothing was written for it
            assert item["reason"].split(": ", 1)[1].startswith("out of domain: ")
        else:
            assert item["status"] == "done", (source, item)
            result = json.loads((out / item["output"] / "result.json").read_text())
            assert result["domain"]["flag"] == item["domain"] in (OK, CAUTION)
    if bundle == "abdomen_ct_3d":  # the phantom model says on every output that it never saw a real CT
        result = json.loads((out / by_source["ct"]["output"] / "result.json").read_text())
        assert result["domain"]["flag"] == CAUTION
        assert any("synthetic CT phantom" in reason for reason in result["domain"]["reasons"])
        seg = pydicom.dcmread(out / by_source["ct"]["output"] / "seg.dcm", stop_before_pixels=True)
        assert seg.SeriesDescription.endswith("[caution]")


def test_force_domain_segments_and_keeps_the_flag(mixed_folder, tmp_path):
    out = tmp_path / "out"
    argv = ["infer", str(mixed_folder / "mri"), "-m", "abdomen_ct_3d", "-o", str(out), "--no-overlays"]
    assert main([*argv, "--force-domain"]) == 0
    [result] = out.glob("*/result.json")
    domain = json.loads(result.read_text())["domain"]
    assert domain["flag"] == OUT_OF_DOMAIN and "trained on CT, the input is MR" in domain["reasons"][0]


def _plan(modality: str, spacing: list[float], shape: list[float], low: float, high: float) -> Plan:
    intensity = {"min": low, "percentile_00_5": low, "percentile_99_5": high}
    return Plan(
        dataset={"name": "t"}, dim=3, orientation="RAS", target_spacing=spacing, patch_size=[16] * 3,
        batch_size=2, pool_counts=[0] * 3, normalization=[{"modality": modality, "scheme": "zscore"}],
        fingerprint={"median_spacing": spacing, "median_shape": shape, "intensity": [intensity]},
    )  # fmt: skip


def test_the_checks_that_need_no_header():
    """Spacing, field of view and intensity speak for NIfTI inputs, which carry no modality."""
    mr_model = _plan("MRI", [1.0, 1.0, 1.0], [40, 50, 40], 10.0, 900.0)
    crop = ScalarImage(np.full((40, 50, 40), 300.0, np.float32), np.eye(4))
    assert check_domain(crop, mr_model).flag == OK
    whole_body_ct = ScalarImage(np.full((100, 100, 60), -1000.0, np.float32), np.diag([4.0, 4.0, 5.0, 1.0]))
    check = check_domain(whole_body_ct, mr_model)
    assert check.flag == OUT_OF_DOMAIN
    assert any("spacing" in r for r in check.reasons) and any("below -500" in r for r in check.reasons)
    ct_model = _plan("CT", [1.0, 1.0, 1.0], [40, 50, 40], 20.0, 200.0)
    bright = ScalarImage(np.full((40, 50, 40), 3000.0, np.float32), np.eye(4))
    assert check_domain(bright, ct_model).flag == CAUTION
