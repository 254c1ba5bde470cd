"""2D networks on 3D volumes (nnU-Net's "2d"): the planner's choice, the slice-wise network, and training,
validation and inference back to a 3D mask on the source grid, on the shared LGG and hippocampus data."""

from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from train_fixtures import hippocampus_manifest, tiny_config

from medseg import read_image
from medseg.checkpoint import load_checkpoint
from medseg.cli.main import main
from medseg.data.planner import Planner, plan_from_dict
from medseg.errors import ConfigError, InputError
from medseg.inference.ensemble import load_ensemble
from medseg.inference.segmenter import Segmenter
from medseg.models import create_model
from medseg.models.slicewise import SliceWise
from medseg.training.config import config_from_dict
from medseg.training.trainer import fit

LGG = "lgg_flair_mri"


def fingerprint(spacing, shape, cases=10):
    """A fingerprint of `cases` MR volumes of one spacing and shape (as `compute_fingerprint` writes)."""
    return {
        "dim": 3,
        "spacings": [list(spacing)] * cases,
        "shapes": [list(shape)] * cases,
        "intensity": [{"channel": 0, "modality": "MR"}],
        "classes": {"1": {}},
    }


def test_the_planner_proposes_slices_for_thick_slices_and_dims_forces_or_forbids_them():
    thick = Planner(fingerprint((0.8, 0.8, 6.0), (320, 320, 24)))
    plan = thick.plan({"name": "thick"})
    assert plan.slice_axis == 2 and plan.network_dims == 2 and "7.5x coarser" in plan.slice_reason
    assert plan.patch_size[2] == 1 and plan.pool_counts[2] == 0 and plan.patch_size[:2] == [320, 320]
    assert plan.mirror_axes == [0, 1] and plan.target_spacing == [0.8, 0.8, 6.0]  # slices left as they are
    assert dataclasses.replace(plan, mirror_axes=None).mirroring == (0, 1)  # never along the slices
    assert plan_from_dict(json.loads(json.dumps(plan.__dict__))).slice_axis == 2  # plans.json round trip
    assert thick.plan({"name": "thick"}, dims=3).slice_axis is None
    iso = Planner(fingerprint((1.0, 1.0, 1.0), (60, 40, 50)))
    assert iso.plan({"name": "iso"}).slice_axis is None
    forced = iso.plan({"name": "iso"}, dims=2)
    assert forced.slice_axis == 1 and "fewest voxels" in forced.slice_reason and forced.patch_size[1] == 1
    flat = Planner({**fingerprint((1.0, 1.0), (256, 256)), "dim": 2})
    assert flat.plan({"name": "xray"}, dims=2).slice_axis is None
    with pytest.raises(ConfigError, match="dims 3 asked for a 2D dataset"):
        flat.plan({"name": "xray"}, dims=3)
    broken = {**plan.__dict__, "patch_size": [320, 320, 2], "pool_counts": [5, 5, 1]}
    with pytest.raises(InputError, match="slice_axis 2 needs a 3D plan whose patch_size is 1"):
        plan_from_dict(broken, "plans.json")
    with pytest.raises(InputError, match="context_slices needs a slice plan"):
        plan_from_dict({**iso.plan({"name": "iso"}).__dict__, "context_slices": 1}, "plans.json")


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_slice_wise_network_is_its_2d_network_on_every_slice(axis):
    torch.manual_seed(0)
    network = create_model("unet", 2, 1, 3, channels=[4, 8, 16], strides=[2, 2], num_res_units=0).eval()
    volume = torch.randn(2, 1, 16, 24, 8)
    with torch.no_grad():
        output = SliceWise(network, axis)(volume)
        expected = torch.stack(
            [network(volume.select(axis + 2, k)) for k in range(volume.shape[axis + 2])], dim=axis + 2
        )
    assert output.shape == (2, 3, 16, 24, 8)
    torch.testing.assert_close(output, expected)


@pytest.mark.parametrize("context", [0, 2], ids=["one_slice", "with_neighbours"])
def test_lgg_trains_on_slices_and_segments_its_volumes_on_their_own_grid(datasets_dir, tmp_path, context):
    root = datasets_dir / LGG
    names = sorted(path.name for path in (root / "labelsTr").glob("*.nii.gz"))[:3]
    cases = [
        {"image": str(root / "imagesTr" / n), "label": str(root / "labelsTr" / n), "split": s}
        for n, s in zip(names, ["train", "train", "val"], strict=True)
    ]
    manifest = tmp_path / "manifest.json"
    description = {"name": "lgg", "labels": {"1": "tumour"}, "modalities": ["FLAIR"], "cases": cases}
    manifest.write_text(json.dumps(description))
    config = tiny_config(
        manifest,
        tmp_path / "run",
        dims=2,
        model="deeplabv3plus",
        model_options={},
        target_spacing=[8.0, 8.0, 1.0],
        patch_size=[32, 32, 1],
        batch_size=4,
        context_slices=context,
    )
    summary = fit(config_from_dict(config))
    assert summary["steps"] == 6 and 0.0 <= summary["best_mean_dice"] <= 1.0
    state = load_checkpoint(tmp_path / "run" / "best.pt")
    assert state["model"]["spatial_dims"] == 2 and state["model"]["slice_axis"] == 2
    assert state["plan"]["slice_axis"] == 2 and "dims 2" in state["plan"]["slice_reason"]
    assert state["plan"]["context_slices"] == context and state["model"]["in_channels"] == 2 * context + 1

    # a plan written before context_slices existed is the same plan; a plan that contradicts the network
    # is refused by name
    older = {**state, "plan": {k: v for k, v in state["plan"].items() if k != "context_slices"}}
    torch.save(older, tmp_path / "older.pt")
    contradicting = {**state, "plan": {**state["plan"], "context_slices": context + 1}}
    torch.save(contradicting, tmp_path / "contradicting.pt")
    if context == 0:
        assert len(load_ensemble([tmp_path / "run" / "best.pt", tmp_path / "older.pt"]).networks) == 2
    with pytest.raises(InputError, match=r"contradicting.pt: its network \(spatial_dims, slice_axis, input"):
        load_ensemble(tmp_path / "contradicting.pt")
    sliced_elsewhere = {**state, "model": {**state["model"], "slice_axis": 0}}
    torch.save(sliced_elsewhere, tmp_path / "elsewhere.pt")
    with pytest.raises(InputError, match=r"is \(2, 0, \d+\) but its plan gives \(2, 2, \d+\)"):
        load_checkpoint(tmp_path / "elsewhere.pt")  # every loader checks it: bundles, fine-tuning

    source = root / "imagesTr" / names[2]
    segmenter = Segmenter.load(tmp_path / "run", device="cpu")
    labels_map = segmenter.predict(read_image(source))
    reference = nib.load(source)  # an independent reader: the mask lies on the source's own grid
    assert labels_map.array.shape == reference.shape
    np.testing.assert_allclose(labels_map.affine, reference.affine, atol=1e-6)
    assert set(np.unique(labels_map.array)) <= {0, 1}


def test_train_dims_2_on_hippocampus_from_the_command_line(datasets_dir, tmp_path, capsys):
    manifest = hippocampus_manifest(datasets_dir, tmp_path, train=3, val=1)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(manifest, tmp_path / "run", patch_size=None)))
    assert main(["train", str(config), "--dims", "2", "--check"]) == 0
    assert "unet 2D on slices along axis" in capsys.readouterr().out
    assert main(["train", str(config), "--dims", "2", "--context-slices", "2", "--check"]) == 0
    assert "with 2 neighbouring slice(s) either side" in capsys.readouterr().out
    assert main(["train", str(config), "--dims", "3", "--context-slices", "2", "--check"]) != 0
    assert "context_slices 2 needs a 2D network on slices" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", str(config), "--dims", "4", "--check"])
