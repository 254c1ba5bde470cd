"""The shipped bundles give the same masks through the front door as before it existed.

`reference_masks/<run>/<job key>.nii.gz` were written by ``medseg infer`` at commit ce55e00 (the last
one with ``medseg/engine``), with ``--precision fp32 --no-seg --no-overlays --device cpu`` and each
bundle's folder as the model (so the X-ray bundle ran its inference.json zooms). Here the same inputs run
through today's ``medseg infer``, naming each bundle by name from another folder. Job keys hash the
input path relative to the input folder (files) or the SeriesInstanceUID (DICOM), so they match.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.cli.main import main
from medseg.io.image import LabelMap
from medseg.io.volume import read_volume

REFERENCES = Path(__file__).with_name("reference_masks")
HIPPOCAMPUS = ("hippocampus_001.nii.gz", "hippocampus_004.nii.gz")
#: fp32 convolutions may round differently on another CPU; a tie flipped there moves a voxel or two.
MIN_AGREEMENT = 0.9999


def _linked(folder: Path, sources: list[Path]) -> Path:
    folder.mkdir(parents=True)
    for source in sources:
        (folder / source.name).symlink_to(source)
    return folder


@pytest.fixture(scope="module")
def inputs(datasets_dir: Path, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("same_masks_inputs")
    hippocampus = _linked(
        root / "hippocampus", [datasets_dir / "msd_hippocampus" / "imagesTr" / n for n in HIPPOCAMPUS]
    )
    cxr = _linked(root / "cxr", [datasets_dir / "cxr_lung_mc_shenzhen" / "images" / "CHNCXR_0006_0.png"])
    return {
        "hippocampus_mri_3d_nifti": hippocampus,
        "hippocampus_mri_3d_dicom": datasets_dir / "brain_mri_dicom_hippocrop" / "Study1",
        "hippocampus_deeplab_3d": hippocampus,
        "lung_cxr_2d": cxr,
        "abdomen_ct_3d": datasets_dir / "dcmqi_ct3slice_seg" / "ct-3slice",
    }


@pytest.mark.parametrize("run", sorted(p.name for p in REFERENCES.iterdir()))
def test_bundle_masks_are_unchanged(run: str, inputs, tmp_path: Path, monkeypatch):
    bundle = run.removesuffix("_nifti").removesuffix("_dicom")
    monkeypatch.chdir(tmp_path)  # the bundle is found by name, not by a path into the checkout
    out = tmp_path / "out"
    argv = ["infer", str(inputs[run]), "-m", bundle, "-o", str(out), "--precision", "fp32"]
    assert main([*argv, "--no-seg", "--no-overlays", "--device", "cpu"]) == 0
    references = sorted((REFERENCES / run).glob("*.nii.gz"))
    assert references
    for reference in references:
        key = reference.name.removesuffix(".nii.gz")
        before = read_volume(reference, LabelMap)
        now = read_volume(out / key / "mask.nii.gz", LabelMap)
        assert now.shape == before.shape
        np.testing.assert_allclose(now.affine, before.affine, atol=1e-6)
        agreement = float(np.mean(now.array == before.array))
        assert agreement >= MIN_AGREEMENT, f"{run}/{key}: {agreement:.6f} of voxels agree"
        assert set(np.unique(now.array)) == set(np.unique(before.array))
