"""Each bundle trains one tiny epoch on real data (the phantom for CT) and segments a case, through both
entry points: MONAI's ``python -m monai.bundle run`` (or its Python twin `monai.bundle.run`) and the
medseg CLI (``medseg train --bundle``, ``medseg infer --model BUNDLE``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
import yaml
from bundle_cases import CXR_CASES, HIPPOCAMPUS_CASES, LGG_CASES, PHANTOM, TINY, TINY_NETWORKS, copy_bundle
from monai.bundle import ConfigParser
from monai.bundle import run as monai_run
from PIL import Image as PILImage

from medseg.checkpoint import load_checkpoint
from medseg.cli.main import main as medseg_main
from medseg.data.datasets import open_dataset
from medseg.data.loading import load_case
from medseg.data.phantom import PHANTOM_LABELS, write_phantom_dataset
from medseg.errors import ConfigError

#: MONAI warns that configs run code each time one is parsed: these are the repository's own.
pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")

#: Real-data cases segmented after training: the last case of each tiny dataset.
HIPPOCAMPUS_CASE = HIPPOCAMPUS_CASES[-1]


def monai_overrides(name: str) -> dict:
    """The tiny-run overrides as MONAI config ids."""
    return {f"training#{key}": value for key, value in TINY[name].items()}


def medseg_sets(name: str) -> list[str]:
    """The same overrides as ``medseg train --set KEY=VALUE`` arguments (JSON is YAML)."""
    return [item for key, value in TINY[name].items() for item in ("--set", f"{key}={json.dumps(value)}")]


def assert_network_def_loads(bundle: Path) -> None:
    """The published weights load strictly into the network the bundle's inference.json builds (as
    MONAI's own tools would build it)."""
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(load_checkpoint(bundle / "models" / "model.pt")["state_dict"], strict=True)


def monai_cli(*args: str) -> None:
    """``python -m monai.bundle ARGS`` in a fresh process with one torch thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


def medseg_cli(*args: str) -> None:
    assert medseg_main([str(arg) for arg in args]) == 0


def only_mask(out_dir: Path) -> Path:
    (mask,) = out_dir.glob("*/mask.nii.gz")
    return mask


def same_weights(first: Path, second: Path) -> bool:
    a, b = load_checkpoint(first)["state_dict"], load_checkpoint(second)["state_dict"]
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


# ----- hippocampus: the full comparison, through MONAI's real command line ----------------------------------


@pytest.fixture(scope="module")
def hippocampus_bundles(tmp_path_factory, hippocampus_tiny: Path) -> tuple[Path, Path]:
    """The hippocampus bundle trained by ``python -m monai.bundle run`` and by ``medseg train --bundle``."""
    name, root = "hippocampus_mri_3d", tmp_path_factory.mktemp("hippocampus_bundles")
    by_monai, by_medseg = copy_bundle(name, root / "monai"), copy_bundle(name, root / "medseg")
    args_file = root / "tiny.json"
    args_file.write_text(json.dumps(monai_overrides(name)))
    monai_cli(
        "run",
        "--config_file",
        str(by_monai / "configs" / "train.json"),
        "--bundle_root",
        str(by_monai),
        "--dataset_dir",
        str(hippocampus_tiny),
        "--args_file",
        str(args_file),
    )
    medseg_cli(
        "train",
        "--trust-bundle",
        "--bundle",
        by_medseg,
        "--dataset_dir",
        hippocampus_tiny,
        *medseg_sets(name),
    )
    return by_monai, by_medseg


def test_both_entry_points_train_the_same_model(hippocampus_bundles, hippocampus_tiny: Path):
    by_monai, by_medseg = hippocampus_bundles
    published = [bundle / "models" / "model.pt" for bundle in hippocampus_bundles]
    state = load_checkpoint(published[0])
    assert state["training"]["config"]["dataset"] == str(hippocampus_tiny)
    assert state["training"]["step"] == TINY["hippocampus_mri_3d"]["steps_per_epoch"]
    assert state["model"]["options"] == TINY_NETWORKS["hippocampus_mri_3d"]
    assert state["class_names"] == {0: "background", 1: "Anterior", 2: "Posterior"}
    # Deterministic mode and one implementation: the two commands give bit-identical weights.
    assert same_weights(*published)
    assert_network_def_loads(by_medseg)
    validations = [
        json.loads((b / "runs" / "fold_0" / "validation.json").read_text()) for b in (by_monai, by_medseg)
    ]
    assert validations[0]["dice"] == validations[1]["dice"]
    assert same_weights(published[1], by_medseg / "runs" / "fold_0" / "best.pt")


def test_both_entry_points_segment_the_same(hippocampus_bundles, hippocampus_tiny: Path, tmp_path: Path):
    by_monai, by_medseg = hippocampus_bundles
    image = hippocampus_tiny / "imagesTr" / f"{HIPPOCAMPUS_CASE}.nii.gz"
    monai_cli(
        "run",
        "--config_file",
        str(by_monai / "configs" / "inference.json"),
        "--bundle_root",
        str(by_monai),
        "--dataset_dir",
        str(image),
        "--output_dir",
        str(tmp_path / "monai"),
    )
    medseg_cli("infer", image, "--trust-bundle", "--model", by_medseg, "--out", tmp_path / "medseg")
    source = nib.load(image)
    masks = [nib.load(only_mask(tmp_path / entry)) for entry in ("monai", "medseg")]
    for mask in masks:
        assert mask.shape == source.shape
        np.testing.assert_allclose(mask.affine, source.affine, atol=1e-4)
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2}
    np.testing.assert_array_equal(np.asarray(masks[0].dataobj), np.asarray(masks[1].dataobj))


def test_evaluate_config_reproduces_the_validation(hippocampus_bundles, hippocampus_tiny: Path):
    """evaluate.json (merged onto train.json) scores the model on the fold as training validated it."""
    by_medseg = hippocampus_bundles[1]
    configs = by_medseg / "configs"
    monai_run(
        config_file=[str(configs / "train.json"), str(configs / "evaluate.json")],
        bundle_root=str(by_medseg),
        dataset_dir=str(hippocampus_tiny),
        **monai_overrides("hippocampus_mri_3d"),
    )
    evaluation = json.loads((by_medseg / "runs" / "evaluation.json").read_text())
    validation = json.loads((by_medseg / "runs" / "fold_0" / "validation.json").read_text())
    assert evaluation["case_ids"] and len(evaluation["cases"]) == len(evaluation["case_ids"]) == 1
    assert evaluation["dice"] == pytest.approx(validation["dice"], abs=1e-6)


def test_train_bundle_errors_are_one_line(hippocampus_tiny: Path, tmp_path: Path, capsys):
    bundle = copy_bundle("hippocampus_mri_3d", tmp_path)
    trusted = ["train", "--trust-bundle", "--bundle", str(bundle)]
    missing = tmp_path / "no_such_dataset"
    assert medseg_main([*trusted, "--dataset_dir", str(missing), "--check"]) != 0
    assert str(missing) in capsys.readouterr().err
    assert medseg_main([*trusted, "--set", "epoch=1", "--check"]) != 0
    assert "did you mean 'epochs'" in capsys.readouterr().err
    # The network is the bundle's: weights trained on another would not load into network_def's.
    data = ["--dataset_dir", str(hippocampus_tiny), *medseg_sets("hippocampus_mri_3d")]
    assert medseg_main([*trusted, *data, "--check"]) == 0
    assert medseg_main([*trusted, *data, "--context-slices", "0", "--dims", "3", "--check"]) == 0
    capsys.readouterr()
    wider = "model_options={kernel_size: [3, 3, 3, 3], strides: [1, 2, 2, 2], filters: [8, 16, 32, 32]}"
    slices = ["--dims", "2", "--set", "patch_size=[1, 32, 24]"]
    for change in (["--set", wider], slices, [*slices, "--context-slices", "1"]):
        assert medseg_main([*trusted, *data, *change, "--check"]) != 0
        error = capsys.readouterr().err
        assert "another network than the bundle's network_def" in error and len(error.splitlines()) == 1
    # MONAI's runner, with the training keys changed behind network_def's back, is refused the same way.
    with pytest.raises(RuntimeError) as raised:  # MONAI wraps what its components raise
        monai_run(
            config_file=str(bundle / "configs" / "train.json"),
            bundle_root=str(bundle),
            dataset_dir=str(hippocampus_tiny),
            **monai_overrides("hippocampus_mri_3d"),
            **{"training#model_options": yaml.safe_load(wider.partition("=")[2])},
        )
    assert isinstance(raised.value.__cause__, ConfigError)
    assert "another network than the bundle's network_def" in str(raised.value.__cause__)
    assert not (bundle / "models" / "model.pt").exists()
    assert medseg_main(["train", "--trust-bundle", "--bundle", str(tmp_path)]) != 0
    assert "configs/train.json" in capsys.readouterr().err
    assert medseg_main(["train", str(bundle / "configs" / "train.json"), "--bundle", str(bundle)]) != 0
    assert "either a CONFIG file or --bundle" in capsys.readouterr().err


def test_multi_gpu_config_trains_under_torchrun(hippocampus_tiny: Path, tmp_path: Path):
    """``torchrun -m monai.bundle run`` with multi_gpu_train.json merged on, as docs/bundles.md shows,
    with its CUDA device and loader workers overridden for this CPU: two gloo processes train one epoch
    and rank 0 alone validates and publishes the weights."""
    name = "hippocampus_mri_3d"
    bundle = copy_bundle(name, tmp_path)
    args_file = tmp_path / "cpu.json"
    overrides = {**monai_overrides(name), "training#device": "cpu", "training#num_workers": 0}
    args_file.write_text(json.dumps(overrides))
    configs = [str(bundle / "configs" / file) for file in ("train.json", "multi_gpu_train.json")]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "monai.bundle", "run", "--config_file", str(configs), "--bundle_root", str(bundle),
               "--dataset_dir", str(hippocampus_tiny), "--args_file", str(args_file)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_checkpoint(bundle / "models" / "model.pt")
    assert state["training"]["step"] == TINY[name]["steps_per_epoch"]
    assert state["training"]["config"]["device"] == "cpu"
    assert sorted(path.name for path in (bundle / "runs").glob("fold_*/best.pt")) == ["best.pt"]
    assert json.loads((bundle / "runs" / "fold_0" / "validation.json").read_text())["dice"]


# ----- the other bundles: trained and segmenting through both entry points --------------------------------


def train_and_segment(name: str, dataset: Path, image: Path, root: Path) -> tuple[Path, list[Path]]:
    """Train bundle `name` for one tiny epoch with its train.json through `monai.bundle.run` (the Python
    twin of ``python -m monai.bundle run``) and with ``medseg train --bundle``, check that both give the
    same weights, then segment `image` with inference.json (`monai.bundle.run`) and with ``medseg infer``
    (which runs inference.json's test-time zooms too); return the case outputs."""
    by_monai, bundle = copy_bundle(name, root / "monai"), copy_bundle(name, root / "medseg")
    monai_run(
        config_file=str(by_monai / "configs" / "train.json"),
        bundle_root=str(by_monai),
        dataset_dir=str(dataset),
        **monai_overrides(name),
    )
    medseg_cli("train", "--trust-bundle", "--bundle", bundle, "--dataset_dir", dataset, *medseg_sets(name))
    assert same_weights(by_monai / "models" / "model.pt", bundle / "models" / "model.pt")
    assert_network_def_loads(bundle)
    monai_run(
        config_file=str(bundle / "configs" / "inference.json"),
        bundle_root=str(bundle),
        dataset_dir=str(image),
        output_dir=str(root / "by_monai"),
    )
    medseg_cli("infer", image, "--trust-bundle", "--model", bundle, "--out", root / "by_medseg")
    return bundle, [only_mask(root / entry).parent for entry in ("by_monai", "by_medseg")]


def assert_same_masks(outputs: list[Path]) -> np.ndarray:
    masks = [np.asarray(nib.load(folder / "mask.nii.gz").dataobj) for folder in outputs]
    np.testing.assert_array_equal(masks[0], masks[1])
    return masks[0]


def test_deeplab_bundle(hippocampus_tiny: Path, tmp_path: Path):
    image = hippocampus_tiny / "imagesTr" / f"{HIPPOCAMPUS_CASE}.nii.gz"
    bundle, outputs = train_and_segment("hippocampus_deeplab_3d", hippocampus_tiny, image, tmp_path)
    assert load_checkpoint(bundle / "models" / "model.pt")["model"]["name"] == "deeplabv3"
    mask = assert_same_masks(outputs)
    assert mask.shape == nib.load(image).shape and set(np.unique(mask)) <= {0, 1, 2}


def test_lung_cxr_bundle(cxr_tiny: Path, tmp_path: Path):
    image = cxr_tiny / "images" / f"{CXR_CASES[-1]}.png"
    bundle, outputs = train_and_segment("lung_cxr_2d", cxr_tiny, image, tmp_path)
    state = load_checkpoint(bundle / "models" / "model.pt")
    assert state["plan"]["target_spacing"] == [2.0, 2.0] and state["plan"]["dim"] == 2
    # Inference windows are the training patches (the checkpoint's plan), not the dataset plan's 256².
    assert state["plan"]["patch_size"] == TINY["lung_cxr_2d"]["patch_size"]
    mask = assert_same_masks(outputs)
    for folder in outputs:  # both ran inference.json's test-time zooms
        settings = json.loads((folder / "result.json").read_text())["settings"]
        assert settings["zooms"] == [0.9, 0.95, 1.0, 1.05, 1.1]
    plain = tmp_path / "plain"  # --tta-zooms 1 turns the bundle's zooms off
    medseg_cli("infer", image, "--trust-bundle", "--model", bundle, "--out", plain, "--tta-zooms", "1")
    assert json.loads((only_mask(plain).parent / "result.json").read_text())["settings"]["zooms"] == [1.0]
    width, height = PILImage.open(image).size
    assert mask.shape[:2] == (width, height) and set(np.unique(mask)) <= {0, 1}


@pytest.mark.parametrize(("name", "network"), [("lgg_flair_2d", "dynunet"), ("lgg_flair_fcn8s_2d", "fcn8s")])
def test_lgg_tumour_bundles_train_on_slices_and_segment_volumes(
    name: str, network: str, lgg_tiny: Path, tmp_path: Path
):
    image = lgg_tiny / "imagesTr" / f"{LGG_CASES[-1]}.nii.gz"
    bundle, outputs = train_and_segment(name, lgg_tiny, image, tmp_path)
    state = load_checkpoint(bundle / "models" / "model.pt")
    assert state["model"]["name"] == network
    assert state["model"]["slice_axis"] == 2 and state["plan"]["slice_axis"] == 2
    mask = assert_same_masks(outputs)
    assert mask.shape == nib.load(image).shape and set(np.unique(mask)) <= {0, 1}
    version = json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
    for (
        folder
    ) in outputs:  # inference.json keeps the largest tumour component; outputs name the bundle's version
        result = json.loads((folder / "result.json").read_text())
        assert result["postprocessing"]["largest_component"] == [1]
        assert result["model"]["version"] == version
        assert f"(version {version})" in (folder / "report.html").read_text()


def test_abdomen_ct_bundle_on_dicom(phantom_tiny: Path, tmp_path: Path):
    series = phantom_tiny.parent / "phantom_002" / "dicom"
    bundle, outputs = train_and_segment("abdomen_ct_3d", phantom_tiny, series, tmp_path)
    state = load_checkpoint(bundle / "models" / "model.pt")
    assert state["class_names"] == {0: "background", 1: "liver", 2: "spleen", 3: "kidney", 4: "tumour"}
    mask = assert_same_masks(outputs)
    reference = sitk.ReadImage(sorted(str(p) for p in series.glob("*.dcm")))
    assert mask.shape == reference.GetSize()
    assert set(np.unique(mask)) <= set(range(5))
    for folder in outputs:
        assert (folder / "seg.dcm").is_file()


def test_phantom_manifest_moves_with_its_folder(tmp_path: Path):
    """write_phantom_dataset writes paths relative to its manifest, so the folder can be moved or shared."""
    write_phantom_dataset(tmp_path / "written", 1, config=PHANTOM)
    moved = (tmp_path / "written").rename(tmp_path / "moved")
    data = open_dataset(moved / "manifest.json")
    assert data.label_names == PHANTOM_LABELS and data.modalities == ["CT"]
    image, label = load_case(data.cases[0])
    assert image.shape == label.shape == PHANTOM.shape
    assert set(np.unique(label.array)) <= set(PHANTOM_LABELS)
