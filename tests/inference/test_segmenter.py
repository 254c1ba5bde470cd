"""`Segmenter`, the front door: what it loads, what it remembers, and what a rerun into the same output
redoes."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import ct_image, write_series
from infer_models import THRESHOLD_HU, save_threshold_checkpoint

from medseg import LabelMap, ScalarImage, Segmenter, read_image, write_image
from medseg.bundles import SHIPPED_DIR
from medseg.cli.main import main
from medseg.errors import InputError
from medseg.io.volume import write_volume

SHAPE = (40, 36, 20)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_threshold_checkpoint(
        tmp_path_factory.mktemp("model") / "m.pt", 3, [1.0, 1.0, 2.5], [16, 16, 8]
    )


def two_blobs() -> ScalarImage:
    """A CT with a large and a small bright block, on a 1 x 1 x 2.5 mm grid."""
    image = ct_image(SHAPE, seed=3)
    image.array[...] = np.minimum(image.array, THRESHOLD_HU - 100)
    image.array[5:20, 5:20, 4:12] = THRESHOLD_HU + 300
    image.array[28:32, 28:32, 14:16] = THRESHOLD_HU + 300
    return image


def test_a_shipped_bundle_loads_by_name_from_any_folder_with_its_inference_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    segmenter = Segmenter.load("lung_cxr_2d")
    assert segmenter.device == "cpu"  # auto on a machine without CUDA
    assert segmenter.settings.zooms == (0.9, 0.95, 1.0, 1.05, 1.1)  # inference.json's tta_zooms
    assert [path.name for path in segmenter.ensemble.sources] == ["model.pt", "model_dynunet.pt"]
    assert segmenter.class_names == {0: "background", 1: "lung"}  # the card names the generic class
    assert Segmenter.load("lung_cxr_2d", tta_zooms=[1]).settings.zooms == (1.0,)  # turned off
    assert Segmenter.load(SHIPPED_DIR / "lung_cxr_2d").model_digest == segmenter.model_digest


def test_a_path_given_as_a_string_is_one_model(checkpoint):
    segmenter = Segmenter.load(str(checkpoint))
    assert segmenter.ensemble.sources == [checkpoint] and len(segmenter.ensemble.networks) == 1


def test_an_unknown_model_names_the_shipped_bundles():
    with pytest.raises(
        InputError, match=r"no_such_model: no such .* \(shipped: abdomen_ct_3d, .*lung_cxr_2d\)"
    ):
        Segmenter.load("no_such_model")


def test_a_run_folder_gives_its_best_checkpoint_only(tmp_path, checkpoint):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(checkpoint, run / "last.pt")
    with pytest.raises(InputError, match=r"a training run without best\.pt yet"):
        Segmenter.load(run)
    shutil.copy(checkpoint, run / "best.pt")
    assert Segmenter.load(run).ensemble.sources == [run / "best.pt"]


def test_predict_reads_paths_applies_post_processing_and_writes_through_the_api(tmp_path, checkpoint):
    image = two_blobs()
    path = write_volume(image, tmp_path / "ct.nii.gz")
    plain = Segmenter.load(checkpoint, "cpu", precision="fp32")
    labels = plain.predict(read_image(path))
    assert isinstance(labels, LabelMap) and labels.shape == SHAPE
    np.testing.assert_allclose(labels.affine, read_image(path).affine)
    assert labels.array[10, 10, 8] == 1 and labels.array[30, 30, 15] == 1
    np.testing.assert_array_equal(plain.predict(path).array, labels.array)  # a path is read the same way
    cleaned = Segmenter.load(checkpoint, "cpu", precision="fp32", largest_component=["bright lesion"])
    kept = cleaned.predict(image)
    assert kept.array[10, 10, 8] == 1 and kept.array[30, 30, 15] == 0
    assert plain.postprocessing.notes(plain.class_names) == []
    [note] = cleaned.postprocessing.notes(cleaned.class_names)  # shown in report.html and result.json
    assert note.startswith("Post-processing kept only the largest connected region of bright lesion")
    write_image(kept, tmp_path / "mask.nii.gz")
    np.testing.assert_array_equal(read_image(tmp_path / "mask.nii.gz", LabelMap).array, kept.array)


def test_uncertainty_comes_with_the_same_labels(checkpoint):
    segmenter = Segmenter.load(checkpoint, "cpu", precision="fp32", tta=True)
    labels, uncertainty = segmenter.predict_with_uncertainty(two_blobs())
    np.testing.assert_array_equal(labels.array, segmenter.predict(two_blobs()).array)
    assert uncertainty.shape == SHAPE and 0 <= uncertainty.array.min() <= uncertainty.array.max() <= 1


def test_a_rerun_redoes_what_another_model_or_other_settings_made(tmp_path, checkpoint, caplog):
    """Results are reused only when the same model files and settings made them, and the log says why not."""
    studies = tmp_path / "studies"
    write_series(two_blobs(), studies / "a")
    other = tmp_path / "other" / checkpoint.name  # same file name, other weights
    other.parent.mkdir()
    save_threshold_checkpoint(other, 3, [1.0, 1.0, 2.5], [16, 16, 8], threshold=0.9)
    out = tmp_path / "out"

    def infer(model: Path, *extra: str) -> dict:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert (
                main(["infer", str(studies), "-m", str(model), "-o", str(out), "--no-overlays", *extra]) == 0
            )
        [item] = [i for i in json.loads((out / "summary.json").read_text())["items"] if "output" in i]
        return item

    assert infer(checkpoint)["status"] == "done"
    assert infer(checkpoint)["status"] == "skipped"
    assert infer(other)["status"] == "done"
    assert "redoing: it was made by another model (same file names, other weights)" in caplog.text
    [result] = out.glob("*/result.json")
    assert json.loads(result.read_text())["model"]["digest"] == Segmenter.load(other).model_digest
    assert infer(other, "--overlap", "0.25")["status"] == "done"
    assert "redoing: it was made with other settings (settings.overlap)" in caplog.text
    assert (result.parent / "seg.dcm").is_file()
    assert infer(other, "--overlap", "0.25", "--no-seg")["status"] == "done"
    assert "redoing: it was made with other outputs" in caplog.text
    assert not (result.parent / "seg.dcm").exists()  # the earlier run's outputs do not stay behind
    assert infer(other, "--overlap", "0.25", "--no-seg")["status"] == "skipped"
