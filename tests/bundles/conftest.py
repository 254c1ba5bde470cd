"""Bundle fixtures: tiny real datasets, linked (not copied) into tmp folders, or phantom CTs written there,
so that one training epoch of a tiny network takes seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from bundle_cases import CXR_CASES, HIPPOCAMPUS_CASES, LGG_CASES, PHANTOM, PHANTOM_CASES

from medseg.data.phantom import write_phantom_dataset


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Training and inference in this process use one torch thread (2 shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source)


def _msd_subset(source: Path, cases: tuple[str, ...], root: Path) -> Path:
    """An MSD-layout dataset at `root` with `cases` of the one at `source`, linked."""
    description = json.loads((source / "dataset.json").read_text())
    pairs = [{"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"} for case in cases]
    for pair in pairs:
        for path in pair.values():
            _link(source / path, root / path)
    description.update(training=pairs, numTraining=len(pairs))
    (root / "dataset.json").write_text(json.dumps(description))
    return root


@pytest.fixture(scope="session")
def hippocampus_tiny(datasets_dir: Path, tmp_path_factory) -> Path:
    """MSD layout with four real hippocampus cases."""
    return _msd_subset(datasets_dir / "msd_hippocampus", HIPPOCAMPUS_CASES, tmp_path_factory.mktemp("hippo"))


@pytest.fixture(scope="session")
def cxr_tiny(datasets_dir: Path, tmp_path_factory) -> Path:
    """images/ + masks/ with four real chest X-rays (two Shenzhen, two Montgomery)."""
    source = datasets_dir / "cxr_lung_mc_shenzhen"
    root = tmp_path_factory.mktemp("cxr_tiny")
    for case in CXR_CASES:
        for folder in ("images", "masks"):
            _link(source / folder / f"{case}.png", root / folder / f"{case}.png")
    return root


@pytest.fixture(scope="session")
def lgg_tiny(datasets_dir: Path, tmp_path_factory) -> Path:
    """MSD layout with four real LGG FLAIR volumes."""
    return _msd_subset(datasets_dir / "lgg_flair_mri", LGG_CASES, tmp_path_factory.mktemp("lgg_tiny"))


@pytest.fixture(scope="session")
def phantom_tiny(tmp_path_factory) -> Path:
    """The manifest of three small phantom CTs (DICOM series + NIfTI labels)."""
    return write_phantom_dataset(
        tmp_path_factory.mktemp("phantom_tiny"), PHANTOM_CASES, seed=3, config=PHANTOM
    )
