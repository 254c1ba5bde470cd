"""A built wheel works on its own: installed into a fresh virtual environment and run from a folder outside
the checkout, it ships the bundles, finds them by name, trusts them by content and runs the three-line API.

The fresh environment gets medseg from the wheel only; its dependencies (torch, MONAI, ...) come from the
test environment's site-packages through a ``.pth`` line, which adds that folder but does not run its
``.pth`` files, so the checkout's editable install stays out of it.
"""

from __future__ import annotations

import json
import site
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest

from medseg.io.image import LabelMap
from medseg.io.volume import read_volume

REPO_ROOT = Path(__file__).resolve().parents[1]
CASE = "hippocampus_001.nii.gz"
REFERENCE_MASK = (
    Path(__file__).parent
    / "bundles"
    / "reference_masks"
    / "hippocampus_mri_3d_nifti"
    / "edad2c8a349861f8.nii.gz"
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory) -> Path:
    """A virtual environment with the wheel of this checkout installed (and nothing else of medseg)."""
    root = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", str(REPO_ROOT), "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-w", str(root / "dist"), "-q"], check=True, cwd=root)
    [wheel] = (root / "dist").glob("medseg-*.whl")
    environment = root / "env"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True)
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return environment


def _run(environment: Path, cwd: Path, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(environment / "bin" / command[0]), *command[1:]], cwd=cwd, capture_output=True, text=True
    )


def test_the_three_line_api_runs_a_bundle_by_name_from_a_wheel(fresh_env, datasets_dir, tmp_path):
    case = datasets_dir / "msd_hippocampus" / "imagesTr" / CASE
    code = (
        "import medseg\n"
        "from medseg import Segmenter, read_image, write_image\n"
        f"image = read_image({str(case)!r})\n"
        "write_image(Segmenter.load('hippocampus_mri_3d').predict(image), 'mask.nii.gz')\n"
        "print(medseg.__file__)\n"
    )
    done = _run(fresh_env, tmp_path, "python", "-c", code)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(fresh_env)  # the wheel's medseg, not the checkout's
    mask = read_volume(tmp_path / "mask.nii.gz", LabelMap)
    reference = read_volume(REFERENCE_MASK, LabelMap)  # medseg infer's mask of the same case
    assert mask.shape == reference.shape and np.mean(mask.array == reference.array) > 0.999


def test_the_installed_command_lists_and_runs_the_shipped_bundles(fresh_env, datasets_dir, tmp_path):
    listing = _run(fresh_env, tmp_path, "medseg", "models", "--json")
    assert listing.returncode == 0, listing.stderr
    names = sorted(card["name"] for card in json.loads(listing.stdout)["bundles"])
    assert names == [
        "abdomen_ct_3d",
        "hippocampus_deeplab_3d",
        "hippocampus_mri_3d",
        "lgg_flair_2d",
        "lgg_flair_fcn8s_2d",
        "lung_cxr_2d",
    ]
    case = datasets_dir / "msd_hippocampus" / "imagesTr" / CASE
    infer = _run(fresh_env, tmp_path, "medseg", "infer", str(case), "-m", "hippocampus_mri_3d", "-o", "out")
    assert infer.returncode == 0, infer.stderr  # a shipped bundle needs no --trust-bundle when installed
    [result] = (tmp_path / "out").glob("*/result.json")
    assert json.loads(result.read_text())["model"]["checkpoints"] == ["model.pt"]
