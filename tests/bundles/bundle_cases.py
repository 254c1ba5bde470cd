"""Shared constants and helpers of the bundle tests: bundle names, tiny-run overrides, bundle copies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from medseg.bundles import SHIPPED_DIR
from medseg.data.phantom import PhantomConfig

BUNDLES_DIR = SHIPPED_DIR
BUNDLE_NAMES = (
    "hippocampus_mri_3d",
    "hippocampus_deeplab_3d",
    "lung_cxr_2d",
    "abdomen_ct_3d",
    "lgg_flair_2d",
    "lgg_flair_fcn8s_2d",
)
#: Real cases linked into the tiny datasets.
HIPPOCAMPUS_CASES = ("hippocampus_001", "hippocampus_003", "hippocampus_004", "hippocampus_006")
CXR_CASES = ("CHNCXR_0006_0", "CHNCXR_0007_0", "MCUCXR_0001_0", "MCUCXR_0002_0")
LGG_CASES = (
    "TCGA_CS_4941_19960909",
    "TCGA_CS_4942_19970222",
    "TCGA_CS_4943_20000902",
    "TCGA_CS_4944_20010208",
)
#: Phantom at a quarter of the default voxel count (same field of view), three cases.
PHANTOM = PhantomConfig(shape=(48, 48, 20), spacing=(7.0, 7.0, 10.0))
PHANTOM_CASES = 3

#: One short, deterministic epoch on two training cases, validated on one (RunConfig keys).
SHORT_RUN = {
    "epochs": 1,
    "steps_per_epoch": 2,
    "batch_size": 2,
    "folds": 2,
    "max_val_cases": 1,
    "deterministic": True,
    "threads": 1,
    "compile": False,  # tested in tests/training/test_train_run.py; compiling would dominate these runs
    "progress": False,
}
TINY_UNET = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 0}
TINY_DYNUNET = {"kernel_size": [3, 3, 3, 3], "strides": [1, 2, 2, 2], "filters": [4, 8, 8, 16]}
#: Per bundle: a tiny network, written into the copy's own configs (`copy_bundle`), so that its
#: ``network_def`` describes the weights it publishes.
TINY_NETWORKS = {
    "hippocampus_mri_3d": TINY_DYNUNET,
    "hippocampus_deeplab_3d": {
        "depth": 18,
        "width": 4,
        "aspp_channels": 8,
        "strides": [2, 1, 2, 1, 1],
        "output_stride": 8,
        "atrous_rates": [2, 4, 6],
    },
    "lung_cxr_2d": TINY_UNET,
    "abdomen_ct_3d": TINY_UNET,
    "lgg_flair_2d": {
        "kernel_size": [3, 3, 3, 3],
        "strides": [[1, 1], [2, 2], [2, 2], [2, 2]],
        "filters": [4, 8, 16, 16],
    },
    "lgg_flair_fcn8s_2d": {"depth": 18, "width": 4, "strides": [2, 1, 2, 2, 2]},
}
#: Per bundle: RunConfig overrides that keep the run and its patches small.
TINY = {
    "hippocampus_mri_3d": {**SHORT_RUN, "patch_size": [24, 32, 24]},
    "hippocampus_deeplab_3d": {**SHORT_RUN, "patch_size": [24, 32, 24]},
    "lung_cxr_2d": {**SHORT_RUN, "patch_size": [128, 128]},
    "abdomen_ct_3d": {**SHORT_RUN, "patch_size": [32, 32, 16]},
    "lgg_flair_2d": {**SHORT_RUN, "target_spacing": [4.0, 4.0, 1.0], "patch_size": [64, 64, 1]},
    "lgg_flair_fcn8s_2d": {**SHORT_RUN, "target_spacing": [4.0, 4.0, 1.0], "patch_size": [64, 64, 1]},
}


def copy_bundle(name: str, destination: Path) -> Path:
    """A copy of bundle `name` without its weights and runs, to train into, with its network made tiny
    (`TINY_NETWORKS`) in train.json and inference.json alike."""
    target = destination / name
    shutil.copytree(BUNDLES_DIR / name, target, ignore=shutil.ignore_patterns("models", "runs", "eval"))
    for config in ("train.json", "inference.json"):
        path = target / "configs" / config
        content = json.loads(path.read_text())
        content["model_options"] = TINY_NETWORKS[name]
        path.write_text(json.dumps(content, indent=4) + "\n")
    return target
