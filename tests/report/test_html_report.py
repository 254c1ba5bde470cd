"""HTML reports rendered in headless Chromium: pictures load, tables carry the JSON numbers, text escaped."""

from __future__ import annotations

import html
import json
import re
import shutil

import numpy as np
import PIL.Image
import pytest
from scipy import ndimage

from medseg.cli.main import main
from medseg.errors import GeometryError
from medseg.io.image import LabelMap, ScalarImage
from medseg.io.reader import read_image
from medseg.io.volume import write_volume
from medseg.report.html import BANNER
from medseg.report.study import write_study_report

HOSTILE_NAME = "posterior <script>alert(1)</script>"
CASES = ("015", "025", "038")


def _report_data(dom: str) -> dict:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', dom, re.S)
    return json.loads(match.group(1))


def _table_values(dom: str, table_id: str) -> dict[str, list[str]]:
    """Row label (data-class or data-case) -> the data-value attributes of its cells, in order."""
    body = re.search(rf'<table id="{table_id}">(.*?)</table>', dom, re.S).group(1)
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        label = re.search(r'data-(?:class|case)="([^"]*)"', row)
        if label:
            rows[html.unescape(label.group(1))] = re.findall(r'data-value="([^"]*)"', row)
    return rows


def _assert_images_loaded(dom: str) -> int:
    status = re.search(r'id="image-status"[^>]*data-loaded="(\d+)" data-total="(\d+)"', dom)
    assert status, "the status script did not run"
    loaded, total = int(status.group(1)), int(status.group(2))
    assert loaded == total == dom.count("<img ")
    return total


@pytest.fixture(scope="module")
def hippocampus_study(datasets_dir, tmp_path_factory):
    folder = datasets_dir / "msd_hippocampus"
    image = read_image(folder / "imagesTr" / "hippocampus_015.nii.gz", ScalarImage)
    reference = read_image(folder / "labelsTr" / "hippocampus_015.nii.gz", LabelMap)
    prediction = reference.with_array(np.roll(reference.array, 2, axis=1))
    disagreement = (prediction.array != reference.array).astype(np.float32)
    uncertainty = ScalarImage(ndimage.gaussian_filter(disagreement, 1.5), image.affine)
    path = tmp_path_factory.mktemp("study") / "study.html"
    write_study_report(
        path, image, prediction, {1: "anterior", 2: HOSTILE_NAME}, reference=reference,
        uncertainty=uncertainty, model_name="hippo <unet>", model_version="1.0", modality="MR",
    )  # fmt: skip
    return path, prediction, reference


@pytest.fixture(scope="module")
def study_dom(hippocampus_study, chromium) -> str:
    return chromium(hippocampus_study[0], "--dump-dom")


def test_study_page_renders_with_its_pictures_and_numbers(hippocampus_study, study_dom):
    _, prediction, reference = hippocampus_study
    dom = study_dom
    assert html.escape(BANNER) in dom or BANNER in dom
    assert _assert_images_loaded(dom) >= 4  # overlays and the same slices of the uncertainty map
    rows = dom.count('alt="AI mask, axial')  # per slice: AI mask, reference, disagreement
    assert rows >= 1 and dom.count('alt="reference, axial') == dom.count('alt="disagreement, axial') == rows
    assert dom.count('alt="axial') == rows  # the uncertainty map on the same slices
    data = _report_data(dom)
    metrics = _table_values(dom, "metrics")
    for name, entry in data["metrics"].items():
        assert [float(v) for v in metrics[name][:3]] == [entry["dice"], entry["iou"], entry["precision"]]
        label = entry["label"]
        dice = (
            2
            * np.sum((prediction.array == label) & (reference.array == label))
            / (np.sum(prediction.array == label) + np.sum(reference.array == label))
        )
        assert entry["dice"] == pytest.approx(dice)
    structures = _table_values(dom, "structures")
    for name, entry in data["structures"].items():
        voxels = int(np.sum(prediction.array == entry["label"]))
        assert float(structures[name][0]) == pytest.approx(voxels * np.prod(prediction.spacing) / 1000)
        assert int(structures[name][1]) == voxels == entry["voxels"]


def test_study_page_escapes_text(hippocampus_study, study_dom):
    source = hippocampus_study[0].read_text()
    assert HOSTILE_NAME not in source and "hippo <unet>" not in source
    dom = study_dom
    assert dom.count("<script") == 2  # the data block and the status script; no injected one
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


def test_study_page_screenshot_shows_the_banner(hippocampus_study, chromium, tmp_path):
    path, _, _ = hippocampus_study
    chromium(path, f"--screenshot={tmp_path / 'shot.png'}", "--window-size=1000,1400")
    shot = np.asarray(PIL.Image.open(tmp_path / "shot.png").convert("RGB")).astype(int)
    top = shot[5:30, 50:900]
    assert np.mean(np.all(np.abs(top - [176, 0, 32]) < 20, axis=-1)) > 0.5  # the red banner
    assert shot[:, :, 0].std() > 20  # not a blank page


@pytest.fixture(scope="module")
def cohort(datasets_dir, tmp_path_factory):
    """`medseg report` on three hippocampus cases: images, references and worse and worse predictions."""
    root = tmp_path_factory.mktemp("cohort")
    for name in ("images", "masks", "refs"):
        (root / name).mkdir()
    for shift, case in enumerate(CASES):
        label = read_image(
            datasets_dir / "msd_hippocampus" / "labelsTr" / f"hippocampus_{case}.nii.gz", LabelMap
        )
        source = datasets_dir / "msd_hippocampus" / "imagesTr" / f"hippocampus_{case}.nii.gz"
        shutil.copy(source, root / "images" / f"hippocampus_{case}_0000.nii.gz")
        write_volume(
            label.with_array(label.array.astype(np.uint8)), root / "refs" / f"hippocampus_{case}.nii.gz"
        )
        moved = label.with_array(np.roll(label.array, shift, axis=0).astype(np.uint8))
        write_volume(moved, root / "masks" / f"hippocampus_{case}.nii.gz")
    labels = root / "labels.json"
    labels.write_text(json.dumps({"1": "anterior", "2": "posterior"}))
    arguments = ["--reference", str(root / "refs"), "--labels", str(labels), "--bootstrap", "100"]
    code = main(
        [
            "report",
            str(root / "masks"),
            "--image",
            str(root / "images"),
            "--out",
            str(root / "out"),
            *arguments,
        ]
    )
    assert code == 0
    return root / "out"


def test_cohort_page_renders_worst_case_first_with_links(cohort, chromium):
    dom = chromium(cohort / "index.html", "--dump-dom")
    data = _report_data(dom)
    assert dom.count("<svg") == 3
    summary = _table_values(dom, "summary")
    for name in ("anterior", "posterior"):
        assert float(summary[name][0]) == data["summary"][name]["dice"]["mean"]
        dice = [data["cases"][case][name]["dice"] for case in data["cases"]]
        median = re.search(rf'data-group="{name}" data-median="([^"]+)"', dom).group(1)
        assert float(median) == pytest.approx(np.median(dice), rel=1e-5)
    order = re.findall(r'data-case="([^"]+)"', dom)
    mean_dice = {case: np.mean([e["dice"] for e in per.values()]) for case, per in data["cases"].items()}
    assert order == sorted(mean_dice, key=mean_dice.get)
    assert order[0] == "hippocampus_038"  # shifted furthest
    links = re.findall(r'<a href="(study_\d{3}\.html)">', dom)
    assert len(links) == len(CASES) and all((cohort / link).is_file() for link in links)


def test_each_study_page_of_the_cohort_loads(cohort, chromium):
    for page in sorted(cohort.glob("study_*.html")):
        dom = chromium(page, "--dump-dom")
        assert _assert_images_loaded(dom) >= 1
        assert "hippocampus_" in dom and "Agreement with the reference" in dom


def test_chest_xray_report_without_reference(datasets_dir, tmp_path, chromium):
    folder = datasets_dir / "cxr_lung_mc_shenzhen"
    mask, image = folder / "masks" / "CHNCXR_0006_0.png", folder / "images" / "CHNCXR_0006_0.png"
    code = main(["report", str(mask), "--image", str(image), "--threshold", "127", "--out", str(tmp_path)])
    assert code == 0
    dom = chromium(tmp_path / "study_001.html", "--dump-dom")
    assert _assert_images_loaded(dom) == 1
    data = _report_data(dom)
    assert data["structures"]["label_1"]["lesions"] == 2 and "area_cm2" in data["structures"]["label_1"]
    assert "metrics" not in data and 'id="metrics"' not in dom


def test_study_report_refuses_a_reference_on_another_grid(hippocampus_study, tmp_path):
    _, prediction, reference = hippocampus_study
    image = ScalarImage(np.zeros(prediction.shape, np.float32), prediction.affine)
    moved = LabelMap(reference.array, reference.affine + _translation(2.0))
    with pytest.raises(GeometryError, match="reference"):
        write_study_report(tmp_path / "s.html", image, prediction, {1: "a"}, reference=moved)
    assert not list(tmp_path.iterdir())  # nothing half-written


def _translation(mm: float) -> np.ndarray:
    shift = np.zeros((4, 4))
    shift[:3, 3] = mm
    return shift


def test_report_command_with_an_uncertainty_map(datasets_dir, tmp_path, chromium):
    folder = datasets_dir / "msd_hippocampus"
    label = read_image(folder / "labelsTr" / "hippocampus_038.nii.gz", LabelMap)
    entropy = ndimage.gaussian_filter((label.array > 0).astype(np.float32), 2.0)
    write_volume(ScalarImage(entropy, label.affine), tmp_path / "entropy.nii.gz")
    image = folder / "imagesTr" / "hippocampus_038.nii.gz"
    mask = folder / "labelsTr" / "hippocampus_038.nii.gz"
    arguments = [
        "--uncertainty",
        str(tmp_path / "entropy.nii.gz"),
        "--model-name",
        "m",
        "--model-version",
        "2",
    ]
    assert main(["report", str(mask), "--image", str(image), "--out", str(tmp_path / "out"), *arguments]) == 0
    dom = chromium(tmp_path / "out" / "study_001.html", "--dump-dom")
    total = _assert_images_loaded(dom)
    assert "<h2>Uncertainty</h2>" in dom and total % 2 == 0 and total >= 2  # the map on every overlay slice
    assert _report_data(dom)["model"] == {"name": "m", "version": "2"}
    assert 'href="study_001.html"' in (tmp_path / "out" / "index.html").read_text()
