"""Small real-data training set-ups shared by the training tests: a manifest of hippocampus cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HIPPOCAMPUS = "msd_hippocampus"
LABELS = {"0": "background", "1": "Anterior", "2": "Posterior"}
#: A tiny 3-level U-Net: cheap enough for a few dozen steps on a shared 2-core CPU.
TINY_UNET = {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}


def hippocampus_manifest(datasets_dir: Path, folder: Path, train: int, val: int) -> Path:
    """A JSON manifest of the first `train` + `val` hippocampus cases with declared train/val splits."""
    root = datasets_dir.resolve() / HIPPOCAMPUS
    labels = sorted((root / "labelsTr").glob("hippocampus_*.nii.gz"))[: train + val]
    cases = [
        {
            "image": str(root / "imagesTr" / label.name),
            "label": str(label),
            "split": "train" if number < train else "val",
        }
        for number, label in enumerate(labels)
    ]
    manifest = {"name": "hippocampus-subset", "labels": LABELS, "modalities": ["MRI"], "cases": cases}
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return path


def tiny_config(manifest: Path, output: Path, **changes: Any) -> dict[str, Any]:
    """A config dict for a few CPU steps on 24×32×24 patches."""
    config = {
        "dataset": str(manifest),
        "output": str(output),
        "model": "unet",
        "model_options": TINY_UNET,
        "patch_size": [24, 32, 24],
        "batch_size": 2,
        "epochs": 2,
        "steps_per_epoch": 3,
        "precision": "auto",
        "progress": False,
        "seed": 3,
        "threads": 1,
    }
    config.update(changes)
    return config
