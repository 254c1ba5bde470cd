"""Resolve a `RunConfig` into everything a run needs, checking it all before any data is preprocessed.

`prepare` opens the dataset, reads (or computes) the plan, picks the fold's cases from the saved
splits, checks channel counts, and builds the model once, so that a bad config (unknown model or
option, wrong channel count, missing data, a fold that names unknown cases) fails in seconds with a
one-line message.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import torch

from medseg.checkpoint import ModelConfig, checkpoint_paths, load_checkpoint
from medseg.data.datasets import Dataset, open_dataset
from medseg.data.fingerprint import compute_fingerprint
from medseg.data.loading import channel_paths
from medseg.data.planner import Plan, Planner, load_plan
from medseg.data.splits import (
    Fold,
    kfold_splits,
    load_splits,
    save_splits,
    splits_from_records,
    trainable_ids,
)
from medseg.errors import ConfigError
from medseg.models.backbone import BOTTLENECK_EXPANSION, DEPTHS
from medseg.models.registry import build_cheaply, get_spec
from medseg.training.config import ALL_CASES, RunConfig

log = logging.getLogger(__name__)

#: Feature maps of the first level of a plan-derived DynUNet, doubled per level up to the maximum (nnU-Net).
BASE_FILTERS = 32
MAX_FILTERS = 320

# The ResNet-trunk families (FCN, DeepLab, PSPNet) were designed for 500-pixel photographs and an
# ImageNet-pretrained ResNet-50; `backbone_options` fits them to a plan the way `dynunet_options` fits
# DynUNet. Each heuristic below is one named choice.
#: Families whose models are a `DilatedResNet` trunk plus a head (medseg.models.heads).
BACKBONE_FAMILIES = ("FCN", "DeepLab", "PSPNet")
#: ResNet-18 (basic blocks): medical training sets are small and trained from scratch here; ResNet-50's
#: 23.5M-parameter trunk (114M parameters for a 3D PSPNet) costs 5-10x a U-Net per step for no gain.
BACKBONE_DEPTH = 18
#: Stem width; the stages then have 32-256 channels, the widths of the plan-derived U-Nets.
BACKBONE_WIDTH = 32
#: Stages that can halve the input: the stem convolution, the max-pool and layers 2-4.
BACKBONE_STAGES = 5
#: Dilated models (DeepLab, PSPNet) replace the strides of their last two stages by dilation, as the
#: papers' output stride 8 does for the five strides of a photograph-sized input...
DILATED_STAGES = 2
#: ...but keep an output stride of at least 4: on a plan that halves only three times, output stride 2
#: ran the dilated 3D stages on a 16x24x16 map at 2x the step cost, and lost (hippocampus, 10 CPU
#: minutes: DeepLabV3 0.838 and PSPNet 0.836 at output stride 2, 0.851 and 0.847 at 4).
MIN_OUTPUT_STRIDE = 4
#: DeepLab's ASPP width relative to the trunk's last stage (256 of ResNet-50's 2048 in the paper; a
#: ResNet-18 stage is 8 times narrower, so half its width keeps the head affordable but not starved).
ASPP_FRACTION = 1 / 2
#: DeepLab's atrous rates relative to the smallest extent of the deepest feature map: the paper's
#: rates 6, 12, 18 on the 33-pixel map of a 513-pixel crop at output stride 16.
ATROUS_FRACTIONS = (6 / 33, 12 / 33, 18 / 33)


@dataclass
class Experiment:
    """A checked, resolved run: data, plan, fold, model description and sizes."""

    config: RunConfig
    dataset: Dataset
    plan: Plan
    fold: Fold
    train_records: list[dict]
    val_records: list[dict]
    class_names: dict[int, str]
    model_config: ModelConfig
    patch_size: list[int]
    batch_size: int
    steps_per_epoch: int
    #: Network weights to start from (`RunConfig.init_weights`), checked against `model_config`.
    initial_weights: dict[str, torch.Tensor] | None = None


def plan_for(config: RunConfig, dataset: Dataset) -> Plan:
    """The configured plans.json, or a plan computed from the dataset now; `target_spacing` and
    `patch_size` override it, and ``augmentation.flip: false`` empties its `mirror_axes`."""
    if config.plan:
        plan = load_plan(config.plan)
        if config.dims is not None and config.dims != plan.network_dims:
            raise ConfigError(
                f"dims {config.dims} contradicts the plan {config.plan} ({plan.network_dims}D network); "
                "re-plan with --dims or leave dims out"
            )
    else:
        log.info("no plan given: fingerprinting %d cases", len(dataset.cases))
        fingerprint = compute_fingerprint(dataset, progress=False)
        for kind, count in fingerprint["label_interpretation"].items():
            log.info("%d label file(s) read as %s masks and binarised", count, kind)
        for warning in fingerprint["warnings"]:
            log.warning("dataset: %s", warning)
        plan = Planner(fingerprint).plan(dataset.describe(config.dataset), dims=config.dims)
        if plan.slice_reason:
            log.info("plan: %s", plan.slice_reason)
    if config.target_spacing is not None:
        if len(config.target_spacing) != plan.dim:
            raise ConfigError(f"target_spacing needs {plan.dim} values for this {plan.dim}D plan")
        plan = dataclasses.replace(plan, target_spacing=[float(s) for s in config.target_spacing])
    if config.patch_size is not None:  # checkpoints carry the plan: inference windows = training patches
        plan = dataclasses.replace(plan, patch_size=[int(s) for s in config.patch_size])
    if not config.augmentation.flip:  # nor may test-time augmentation mirror a model never trained so
        plan = dataclasses.replace(plan, mirror_axes=[])
    if config.context_slices is not None:
        if config.context_slices and plan.slice_axis is None:
            raise ConfigError(
                f"context_slices {config.context_slices} needs a 2D network on slices of 3D volumes "
                f"(plan with dims 2); {config.plan or 'this plan'} has a {plan.network_dims}D network "
                f"on {plan.dim}D data"
            )
        plan = dataclasses.replace(plan, context_slices=config.context_slices)
    return plan


def dynunet_options(plan: Plan, options: dict) -> dict:
    """DynUNet strides and kernels from the plan's pool counts, unless the config sets them."""
    if "strides" in options or "kernel_size" in options:
        return options
    pool_counts = [
        count for axis, count in enumerate(plan.pool_counts) if axis != plan.slice_axis
    ]  # a slice plan's network sees the other axes only
    levels = max(pool_counts)
    strides = [[1] * plan.network_dims] + [
        [2 if level <= count else 1 for count in pool_counts] for level in range(1, levels + 1)
    ]
    filters = [min(BASE_FILTERS * 2**level, MAX_FILTERS) for level in range(levels + 1)]
    return {"kernel_size": [3] * (levels + 1), "strides": strides, "filters": filters, **options}


def planned_model_options(model: str, plan: Plan, patch_size: list[int], options: dict) -> dict:
    """`options` completed from the plan for the models whose layout depends on it (DynUNet and the
    ResNet-trunk families); the config's own options always win."""
    if model == "dynunet":
        return dynunet_options(plan, options)
    spec = get_spec(model)
    if spec.family in BACKBONE_FAMILIES:
        return backbone_options(plan, patch_size, spec.defaults, options)
    return options


def backbone_options(plan: Plan, patch_size: list[int], defaults: dict, options: dict) -> dict:
    """Trunk depth, width and per-axis strides of an FCN, DeepLab or PSPNet from the plan (see the
    constants above), unless the config sets them; `defaults` are the model's own options.

    An axis the plan halves ``p`` times is strided by the last ``p`` of the five stages, so a small
    patch keeps its early stages at full resolution instead of reaching a 1-voxel map; dilated models
    then cap the output stride two stages earlier (not below 4), and DeepLab's atrous rates scale to the
    map they see.
    """
    pool_counts = [
        min(count, BACKBONE_STAGES) for axis, count in enumerate(plan.pool_counts) if axis != plan.slice_axis
    ]
    sizes = [size for axis, size in enumerate(patch_size) if axis != plan.slice_axis]
    strides = [
        [2 if stage >= BACKBONE_STAGES - count else 1 for count in pool_counts]
        for stage in range(BACKBONE_STAGES)
    ]
    planned: dict = {"depth": BACKBONE_DEPTH, "width": BACKBONE_WIDTH, "strides": strides}
    if "output_stride" in defaults:
        most = 2 ** max(pool_counts)
        planned["output_stride"] = max(min(most, MIN_OUTPUT_STRIDE), most // 2**DILATED_STAGES)
    if "aspp_channels" in defaults:
        blocks, bottleneck = DEPTHS[options.get("depth", BACKBONE_DEPTH)]
        expansion = BOTTLENECK_EXPANSION if bottleneck else 1
        trunk_width = options.get("width", BACKBONE_WIDTH) * 2 ** (len(blocks) - 1) * expansion
        planned["aspp_channels"] = round(trunk_width * ASPP_FRACTION)
    if "atrous_rates" in defaults and "atrous_rates" not in options:
        stride = options.get("output_stride", planned["output_stride"])
        extent = min(size // min(stride, 2**count) for size, count in zip(sizes, pool_counts, strict=True))
        rates = sorted({max(1, round(fraction * extent)) for fraction in ATROUS_FRACTIONS})
        planned["atrous_rates"] = rates
    return {**planned, **options}


def fold_of(config: RunConfig, dataset: Dataset) -> Fold:
    """The cases to train and validate on.

    Rows a manifest marks ``split: test`` never train nor validate. Fold ``all`` trains on every other
    case (only those of the splits file when `config.splits` names one) and validates on none. A
    manifest with ``split: val`` rows is used as it declares (unless a splits file is configured);
    otherwise fold `config.fold` of the splits file, written first (deterministic k-fold over the
    trainable cases) if it does not exist yet.
    """
    trainable = trainable_ids(dataset.cases)
    declared = splits_from_records(dataset.cases)
    if config.fold == ALL_CASES:
        if config.splits is not None:
            listed = {i for fold in _read_folds(config, trainable) for i in fold["train"] + fold["val"]}
            trainable = [i for i in trainable if i in listed]
        fold = {"train": trainable, "val": []}
    elif declared and config.splits is None:
        fold = declared
    else:
        folds = _read_folds(config, trainable)
        if config.fold >= len(folds):
            raise ConfigError(
                f"fold {config.fold} does not exist: {config.splits_path} has {len(folds)} folds"
            )
        fold = folds[config.fold]
        if not fold["val"]:
            raise ConfigError(
                f"{config.splits_path}: fold {config.fold} has no validation cases (train on every case "
                "with fold 'all')"
            )
    if not fold["train"]:
        raise ConfigError(f"fold {config.fold} has no training cases in {config.dataset}")
    return fold


def _read_folds(config: RunConfig, trainable: list[str]) -> list[Fold]:
    """The splits file's folds, written first (k-fold of `trainable`) if it does not exist yet."""
    path = config.splits_path
    if path.is_file():
        folds = load_splits(path)
    else:
        folds = kfold_splits(trainable, config.folds, config.split_seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_splits(folds, path)
        log.info("wrote %d-fold splits to %s", config.folds, path)
    for number, fold in enumerate(folds):
        unknown = sorted(set(fold["train"] + fold["val"]) - set(trainable))
        if unknown:
            raise ConfigError(
                f"{path}: fold {number} names {len(unknown)} case(s) not in the dataset or marked split: test"
            )
    return folds


def prepare(config: RunConfig) -> Experiment:
    """Check `config` against the data and resolve every size (see the module docstring)."""
    dataset = open_dataset(
        config.dataset, config.modality, config.labels, config.mask_suffix, config.mask_threshold
    )
    plan = plan_for(config, dataset)
    channels = {len(channel_paths(record)) for record in dataset.cases}
    if channels != {len(plan.normalization)}:
        raise ConfigError(
            f"the plan normalises {len(plan.normalization)} channel(s) but the dataset's cases have "
            f"{sorted(channels)}; re-run 'medseg plan' on this dataset"
        )
    class_names = plan.label_names or dataset.label_names or {0: "background", 1: "foreground"}
    patch_size = list(config.patch_size or plan.patch_size)
    if len(patch_size) != plan.dim:
        raise ConfigError(
            f"patch_size needs {plan.dim} values for this {plan.dim}D dataset, got {patch_size}"
        )
    if plan.slice_axis is not None and patch_size[plan.slice_axis] != 1:
        raise ConfigError(
            f"patch_size {patch_size}: a 2D network on slices along axis {plan.slice_axis} needs 1 there"
        )
    options = planned_model_options(config.model, plan, patch_size, dict(config.model_options))
    model_config = ModelConfig(
        config.model,
        plan.network_dims,
        plan.network_in_channels,
        max(class_names) + 1,
        options,
        slice_axis=plan.slice_axis,
    )
    build_cheaply(model_config.build)  # unknown model or options fail here, before any data is read
    initial_weights = None
    if config.init_weights:
        initial_weights = weights_to_fine_tune(config.init_weights, model_config, plan, class_names)
    fold = fold_of(config, dataset)
    by_id = {record["id"]: record for record in dataset.cases}
    train_records = [by_id[i] for i in fold["train"]]
    val_records = [by_id[i] for i in fold["val"]][: config.max_val_cases]
    batch_size = config.batch_size or plan.batch_size
    steps = config.steps_per_epoch or max(1, math.floor(len(train_records) / batch_size))
    return Experiment(
        config,
        dataset,
        plan,
        fold,
        train_records,
        val_records,
        class_names,
        model_config,
        patch_size,
        batch_size,
        steps,
        initial_weights,
    )


def weights_to_fine_tune(
    source: str, model_config: ModelConfig, plan: Plan, class_names: dict[int, str]
) -> dict[str, torch.Tensor]:
    """The network weights of the checkpoint named by `source` (a file or a model folder), refused
    unless its network is `model_config`; a warning where its plan or class names differ from the run's
    (the weights then start from images prepared differently, which fine-tuning may be meant to do).
    A run folder gives its ``best.pt`` (`checkpoint_paths`)."""
    paths = checkpoint_paths([source])
    if len(paths) != 1:
        raise ConfigError(f"init_weights: {source} holds several checkpoints; name one of them")
    state = load_checkpoint(paths[0])
    saved = ModelConfig(**state["model"])
    differences = [
        f"{name} {getattr(saved, name)!r} (the run: {getattr(model_config, name)!r})"
        for name in ("name", "spatial_dims", "in_channels", "out_channels", "options")
        if _plain(getattr(saved, name)) != _plain(getattr(model_config, name))
    ]
    if differences:
        raise ConfigError(
            f"init_weights: {paths[0]} holds another network: {'; '.join(differences)}. "
            "Set model and model_options to the checkpoint's to fine-tune it"
        )
    saved_plan = state.get("plan") or {}
    for key in ("target_spacing", "normalization"):
        if _plain(saved_plan.get(key)) != _plain(getattr(plan, key)):
            log.warning(
                "init_weights: %s was trained with %s %s; this run uses %s",
                paths[0].name,
                key,
                saved_plan.get(key),
                getattr(plan, key),
            )
    saved_names = {int(k): v for k, v in state.get("class_names", {}).items()}
    if saved_names and saved_names != class_names:
        log.warning(
            "init_weights: %s names its classes %s; this run %s", paths[0].name, saved_names, class_names
        )
    return state["state_dict"]


def _plain(value: object) -> object:
    """`value` with tuples as lists, so values from YAML, JSON and Python code compare."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
