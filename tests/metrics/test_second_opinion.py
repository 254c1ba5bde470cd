"""The second opinion is right by construction: `medseg infer X.png ... && medseg report OUT --image X.png
--reference X_mask.png` gives the AI's real Dice whatever form the clinician's PNG mask takes (0/1, 0/255,
anti-aliased), `--threshold` never touches the AI's mask, and `medseg evaluate` pairs an infer output
folder with references by the input each result records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from scipy import ndimage

from medseg.cli.main import main
from medseg.io.image import LabelMap
from medseg.io.volume import read_volume, write_volume
from medseg.metrics.overlap import overlap

CASE = "CHNCXR_0006_0"


def _page_data(path: Path) -> dict:
    match = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', path.read_text(), re.S
    )
    assert match
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def inferred(datasets_dir: Path, tmp_path_factory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """(the X-ray, the infer output folder, the AI mask in PNG orientation, the clinician's 0/1 mask)."""
    root = tmp_path_factory.mktemp("second_opinion")
    image = datasets_dir / "cxr_lung_mc_shenzhen" / "images" / f"{CASE}.png"
    out = root / "out"
    assert (
        main(["infer", str(image), "-m", "lung_cxr_2d", "-o", str(out), "--tta-zooms", "1", "--no-seg"]) == 0
    )
    [result] = out.glob("*/result.json")
    ai = read_volume(result.parent / "mask.nii.gz", LabelMap).array.T  # NIfTI (i, j) -> PNG rows, columns
    png = np.asarray(PIL.Image.open(result.parent / "mask.png"))  # written in the picture's orientation
    np.testing.assert_array_equal(png, ai)
    truth = np.asarray(
        PIL.Image.open(datasets_dir / "cxr_lung_mc_shenzhen" / "masks" / f"{CASE}.png").convert("L")
    )
    return image, out, ai, (truth > 127).astype(np.uint8)


def _reference(folder: Path, form: str, truth: np.ndarray, shipped: Path) -> Path:
    """The clinician's mask as a PNG of the given form; ``as_shipped`` is the dataset's own (anti-aliased)."""
    if form == "as_shipped":
        return shipped
    pixels = {
        "0_1": truth,
        "0_255": truth * 255,
        "anti_aliased": np.clip(ndimage.gaussian_filter(truth.astype(np.float32) * 255, 1.5), 0, 255).round(),
    }[form].astype(np.uint8)
    path = folder / form / f"{CASE}_mask.png"
    path.parent.mkdir(parents=True)
    PIL.Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("form", ["0_1", "0_255", "anti_aliased", "as_shipped"])
def test_report_gives_the_real_dice_for_every_form_of_png_reference(inferred, form, tmp_path):
    image, out, ai, truth = inferred
    expected = overlap(ai == 1, truth == 1)["dice"]
    assert expected > 0.9
    reference = _reference(tmp_path, form, truth, image.parents[1] / "masks" / f"{CASE}.png")
    for extra in ([], ["--threshold", "127"]):  # the threshold is the reference's only
        pages = tmp_path / f"report{len(extra)}"
        argv = ["report", str(out), "--image", str(image), "--reference", str(reference), "--out", str(pages)]
        assert main([*argv, *extra]) == 0
        data = _page_data(pages / "study_001.html")
        assert data["model"]["name"] == "medseg cxr_lung_mc_shenzhen"  # the infer result's model...
        [scores] = data["metrics"].values()
        assert list(data["metrics"]) == ["lung"]  # ...and its class names
        assert scores["dice"] == pytest.approx(expected, abs=0.005), (form, extra)
        title = re.search(r"<title>(.*?)</title>", (pages / "study_001.html").read_text()).group(1)
        assert CASE in title and "mask" not in title.lower()
        if form != "0_1" and not extra:
            assert any("0/255" in note or "anti-aliased" in note for note in data["notes"])


def test_evaluate_pairs_an_infer_output_folder_by_its_recorded_input(inferred, tmp_path):
    _, out, ai, truth = inferred
    references = tmp_path / "references"
    references.mkdir()
    PIL.Image.fromarray(truth * 255).save(references / f"{CASE}.png")
    assert (
        main(["evaluate", str(out), str(references), "--out", str(tmp_path / "eval"), "--bootstrap", "20"])
        == 0
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    [scores] = metrics["cases"][CASE].values()
    assert scores["dice"] == pytest.approx(overlap(ai == 1, truth == 1)["dice"], abs=0.005)
    assert metrics["notes"][CASE] == ["reference: 0/255 mask read as 0/1"]


def test_map_translates_reference_values_and_seg_labels_onto_the_models_classes(datasets_dir, tmp_path):
    """A two-class clinician label scored against a one-class model, and a SEG's "Liver" segment scored
    against a model whose liver is class 2: --map says which reference label is which model class."""
    labels = datasets_dir / "msd_hippocampus" / "labelsTr" / "hippocampus_001.nii.gz"
    union = read_volume(labels, LabelMap)
    write_volume(union.with_array((union.array > 0).astype(np.uint8)), tmp_path / "hippocampus_001.nii.gz")
    out = tmp_path / "eval"
    argv = [
        "evaluate",
        str(tmp_path / "hippocampus_001.nii.gz"),
        str(labels),
        "--out",
        str(out),
        "--bootstrap",
        "5",
    ]
    assert main([*argv, "--map", '{"1": 1, "2": 1}']) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [scores["dice"] for scores in metrics["cases"]["hippocampus_001"].values()] == [1.0]
    seg = datasets_dir / "dcmqi_ct3slice_seg" / "liver.dcm"
    nrrd = read_volume(datasets_dir / "dcmqi_ct3slice_seg" / "liver_seg.nrrd", LabelMap)
    write_volume(nrrd.with_array((nrrd.array > 0).astype(np.uint8) * 2), tmp_path / "liver_ai.nii.gz")
    argv = [
        "evaluate",
        str(tmp_path / "liver_ai.nii.gz"),
        str(seg),
        "--out",
        str(tmp_path / "liver"),
        "--bootstrap",
        "5",
    ]
    assert main([*argv, "--map", '{"liver": 2}']) == 0
    metrics = json.loads((tmp_path / "liver" / "metrics.json").read_text())
    [scores] = metrics["cases"]["liver"].values()
    assert scores["dice"] == 1.0 and "labels mapped onto the model's classes" in metrics["notes"]["liver"][0]
    assert main([*argv, "--map", '{"spleen": 2}']) == 2  # a name the SEG does not hold is refused
