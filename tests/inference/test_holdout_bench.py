"""`medseg bench holdout`: the held-out Dice it reports (through `medseg infer` and `medseg evaluate`)
equals a direct computation on the same cases, for chest X-rays whose anti-aliased 0-255 PNG masks
training binarises at > 127."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import PIL.Image
import pytest
import yaml

from medseg.cli.main import main

CASES = 10


def _tiny_cxr_dataset(source: Path, folder: Path) -> Path:
    """The first `CASES` image/mask pairs of the real chest X-ray set, linked into `folder`."""
    for name in ("images", "masks"):
        (folder / name).mkdir(parents=True)
    for image in sorted((source / "images").glob("*.png"))[:CASES]:
        (folder / "images" / image.name).symlink_to(image.resolve())
        (folder / "masks" / image.name).symlink_to((source / "masks" / image.name).resolve())
    return folder


def _direct_dice(prediction: Path, reference_png: Path) -> float:
    """Dice of the lung label read with nibabel against the PNG mask read with PIL (> 127)."""
    predicted = np.asarray(nib.load(prediction).dataobj).squeeze().T == 1  # NIfTI is (column, row)
    reference = np.asarray(PIL.Image.open(reference_png)) > 127
    return 2 * (predicted & reference).sum() / (predicted.sum() + reference.sum())


def test_holdout_dice_equals_a_direct_computation(datasets_dir, tmp_path):
    data = _tiny_cxr_dataset(datasets_dir / "cxr_lung_mc_shenzhen", tmp_path / "cxr")
    run = tmp_path / "runs" / "fold_0"
    config = {
        "dataset": str(data),
        "output": str(run),
        "modality": "XRAY",
        "target_spacing": [8.0, 8.0],  # 512² at 1 mm becomes 64²
        "patch_size": [64, 64],
        "model": "unet",
        "model_options": {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1},
        "batch_size": 4,
        "epochs": 4,
        "steps_per_epoch": 10,
        "learning_rate": 0.01,
        "progress": False,
        "seed": 0,
        "threads": 1,
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["train", str(config_path), "--no-progress"]) == 0

    result = tmp_path / "holdout.json"
    assert main(["bench", "holdout", str(run), "--device", "cpu", "--json", str(result)]) == 0
    rows = {row["tta"]: row for row in json.loads(result.read_text(encoding="utf-8"))["rows"]}

    val = json.loads((run.parent / "splits.json").read_text(encoding="utf-8"))[0]["val"]
    inputs = tmp_path / "val_images"
    inputs.mkdir()
    for case in val:
        (inputs / f"{case}.png").symlink_to((data / "images" / f"{case}.png").resolve())
    out = tmp_path / "masks"
    assert main(["infer", str(inputs), "--model", str(run / "best.pt"), "--out", str(out), "--device", "cpu",
                 "--no-seg", "--no-overlays", "--no-uncertainty"]) == 0  # fmt: skip
    items = json.loads((out / "summary.json").read_text(encoding="utf-8"))["items"]
    direct = [
        _direct_dice(out / item["output"] / "mask.nii.gz", data / "masks" / Path(item["input"]).name)
        for item in items
    ]
    assert len(direct) == len(val) >= 2
    assert np.mean(direct) > 0.3, "the tiny model must find the lungs, or the comparison proves nothing"
    assert rows[False]["label_1"] == pytest.approx(np.mean(direct), abs=1e-6)
    assert 0.0 <= rows[True]["label_1"] <= 1.0
