"""Real masks with perturbations, shared by the metric tests."""

from __future__ import annotations

import json

import pytest

from medseg.io.image import LabelMap
from medseg.io.png import binarize_mask, read_png
from medseg.io.reader import read_image

#: Hippocampus cases used by the metric tests (small 3D label maps, 1 mm).
HIPPOCAMPUS_CASES = ("015", "025", "038")


@pytest.fixture(scope="session")
def hippocampus_labels(datasets_dir) -> dict[str, LabelMap]:
    folder = datasets_dir / "msd_hippocampus" / "labelsTr"
    return {case: read_image(folder / f"hippocampus_{case}.nii.gz", LabelMap) for case in HIPPOCAMPUS_CASES}


@pytest.fixture(scope="session")
def chest_mask(datasets_dir) -> LabelMap:
    path = datasets_dir / "cxr_lung_mc_shenzhen" / "masks" / "MCUCXR_0016_0.png"
    return binarize_mask(read_png(path, spacing=(0.6, 0.9)))  # anisotropic pixels


@pytest.fixture(scope="session")
def tumour_mask(datasets_dir) -> LabelMap:
    """brain1: 0.78 x 0.78 x 6.5 mm voxels, one tumour in two connected components."""
    return read_image(datasets_dir / "pyradiomics_tumor_mri" / "brain1_label.nrrd", LabelMap)


@pytest.fixture(scope="session")
def totalseg(datasets_dir) -> tuple[LabelMap, dict[int, str]]:
    folder = datasets_dir / "totalseg_ct_mr_examples"
    names = json.loads((folder / "class_map_total_and_total_mr.json").read_text())["total"]
    return read_image(folder / "example_seg.nii.gz", LabelMap), {int(k): v for k, v in names.items()}
