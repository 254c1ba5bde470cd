"""FCN, DeepLab and PSPNet fitted to a plan (`backbone_options`), and the architecture table's rows
(`medseg bench zoo`): comparable widths per task, and the markdown table docs/benchmarks.md quotes."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from medseg.data.planner import Planner
from medseg.models import count_parameters, create_model
from medseg.models.backbone import DilatedResNet
from medseg.models.registry import get_spec
from medseg.training.experiment import BACKBONE_DEPTH, backbone_options, planned_model_options

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import zoo  # benchmarks/zoo.py, as `medseg bench zoo` loads it

SEED_ARCHITECTURES = ("fcn8s", "deeplabv3", "deeplabv3plus", "pspnet")


def plan_of(spacing, shape, dims=None):
    fingerprint = {
        "dim": len(shape),
        "spacings": [list(spacing)] * 10,
        "shapes": [list(shape)] * 10,
        "intensity": [{"channel": 0, "modality": "MR"}],
        "classes": {"1": {}},
    }
    return Planner(fingerprint).plan({"name": "test"}, dims=dims)


def deepest_map(options: dict, spatial_dims: int, patch: list[int]) -> list[int]:
    trunk = DilatedResNet(
        spatial_dims, 1, options["depth"], 4, options["strides"], options.get("output_stride", 32)
    )
    return [size // stride for size, stride in zip(patch, trunk.total_strides[-1], strict=True)]


def test_a_small_3d_patch_keeps_full_resolution_early_and_a_usable_deepest_map():
    plan = plan_of((1.0, 1.0, 1.0), (36, 50, 36))  # MSD hippocampus: the median case
    patch = plan.patch_size
    assert max(plan.pool_counts) < 5  # fewer halvings than the photograph layout's five
    fcn = backbone_options(plan, patch, get_spec("fcn8s").defaults, {})
    assert fcn["depth"] == BACKBONE_DEPTH and fcn["strides"][0] == [1, 1, 1]  # the stem keeps every voxel
    assert min(deepest_map(fcn, 3, patch)) >= 4  # the photograph strides would leave a 1-2 voxel map
    deeplab = backbone_options(plan, patch, get_spec("deeplabv3").defaults, {})
    extent = min(deepest_map(deeplab, 3, patch))
    assert deeplab["output_stride"] == 4  # two dilated stages would leave output stride 2: twice the cost
    assert extent >= 8 and max(deeplab["atrous_rates"]) < extent  # no rate only samples the padding
    network = create_model(
        "deeplabv3plus",
        3,
        1,
        3,
        **backbone_options(plan, patch, get_spec("deeplabv3plus").defaults, {"width": 4}),
    )
    network.eval()
    assert network(torch.zeros(1, 1, *patch)).shape == (1, 3, *patch)


def test_slice_plans_get_the_papers_layout_and_config_options_win():
    plan = plan_of((0.5, 0.5, 3.0), (512, 512, 40), dims=2)
    assert plan.slice_axis == 2
    options = backbone_options(plan, plan.patch_size, get_spec("pspnet").defaults, {})
    assert options["strides"] == [[2, 2]] * 5 and options["output_stride"] == 8  # PSPNet's own numbers
    chosen = {"depth": 50, "strides": [2, 2, 2, 1, 1], "output_stride": 16, "atrous_rates": [6, 12, 18]}
    assert (
        backbone_options(plan, plan.patch_size, get_spec("deeplabv3").defaults, chosen).items()
        >= chosen.items()
    )
    assert "atrous_rates" not in backbone_options(plan, plan.patch_size, get_spec("fcn8s").defaults, {})


@pytest.mark.parametrize("task", sorted(zoo.TASKS))
def test_every_zoo_row_of_a_task_has_comparable_size(task):
    """No family wins a row by size alone: parameters within 4x of the task's U-Net (dynunet)."""
    config = zoo.row_config(task, "dynunet", 10, Path("/nonexistent"), 1)
    dims = zoo.TASKS[task][1]
    patch = [size for size in config["patch_size"] if size != 1]
    plan = dataclasses.replace(
        plan_of([1.0] * dims, patch),
        patch_size=patch,
        pool_counts=[min(5, (s // 4).bit_length() - 1) for s in patch],
    )
    counts = {}
    for architecture in ("dynunet", "unet", "segresnet", "attention_unet", *SEED_ARCHITECTURES):
        options = planned_model_options(
            architecture, plan, patch, zoo.comparable_options(architecture, zoo.TASKS[task][2])
        )
        with torch.device("meta"):
            counts[architecture] = count_parameters(create_model(architecture, dims, 1, 2, **options))
    reference = counts["dynunet"]
    assert all(reference / 4 <= count <= reference * 4 for count in counts.values()), counts


def test_the_table_lists_rows_by_task_in_the_zoo_order_with_failures_kept():
    row = {
        "task": "lgg",
        "architecture": "pspnet",
        "dims": 2,
        "parameters": 3_190_000,
        "steps": 812,
        "val_dice": {"tumour": 0.71234},
        "val_mean_dice": 0.71234,
        "seconds_per_case": 1.234,
        "machine": {"date": "2026-12-07"},
    }
    failed = {"task": "lgg", "architecture": "unetr", "dims": 2, "error": "unetr has no 2D form"}
    table = zoo.markdown([failed, row, {**row, "architecture": "dynunet", "val_mean_dice": 0.8}]).splitlines()
    assert [line.split(" | ")[1] for line in table[2:]] == ["dynunet", "pspnet", "unetr"]
    assert table[3] == "| lgg | pspnet | 2D | 3.19M | 812 | tumour 0.712 | 0.712 | 1.23 | 2026-12-07 |"
    assert "unetr has no 2D form" in table[4]
