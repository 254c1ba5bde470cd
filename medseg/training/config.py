"""The training configuration: one flat, documented dataclass, read from YAML or JSON and checked up front.

Every key of a config file is a field of `RunConfig` (``augmentation`` is a nested `AugmentationConfig`).
`load_config` refuses unknown keys (naming the key and listing the valid ones), wrong types and bad
choices, so a typo fails in the first second, not after the data has been cached. `check_config`
also builds the model once on the meta device, so an unknown model or option fails early too.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medseg.errors import ConfigError, InputError
from medseg.runtime import memory_format
from medseg.utils.atomic import write_text_atomic

#: The `fold` that trains on every case, without validation.
ALL_CASES = "all"

#: Allowed values of the choice fields.
CHOICES: dict[str, tuple[str, ...]] = {
    "loss": ("dice_ce", "dice_focal"),
    "optimizer": ("sgd", "adamw"),
    "schedule": ("poly", "cosine", "constant"),
    "precision": ("auto", "bf16", "fp16", "fp32"),
    "cache": ("memory", "disk", "none"),
}


@dataclass
class AugmentationConfig:
    """Random transforms applied to each training patch (probabilities in 0..1; nnU-Net-like defaults)."""

    #: Random flips along the plan's `mirror_axes` (none for radiographs; false also turns off
    #: test-time mirroring for the model, since its plan then mirrors nothing).
    flip: bool = True
    #: Probability of a random rotation + scaling (one affine resampling).
    affine_prob: float = 0.2
    #: Maximum rotation in degrees, about every axis (3D) or in plane (2D).
    rotate_degrees: float = 15.0
    #: Scaling factor range is ``1 ± scale``.
    scale: float = 0.15
    intensity_prob: float = 0.15
    gamma_prob: float = 0.15
    noise_prob: float = 0.1
    elastic: bool = False


@dataclass
class RunConfig:
    """Everything one training run needs. Only `dataset` and `output` are required."""

    #: Dataset folder or manifest (any layout `medseg.data.datasets.open_dataset` reads).
    dataset: str
    #: Run folder: checkpoints, history, TensorBoard events and the training curve go here; ``{fold}`` is
    #: replaced by the fold number or ``all`` (e.g. ``runs/hippocampus/fold_{fold}``).
    output: str
    #: Modality of every channel (CT, MR, XRAY...) when the dataset does not record it.
    modality: str | None = None
    #: Class names where the dataset's layout has none, e.g. ``{"1": "lung"}`` (default: ``label_<v>`` for
    #: every value found in the labels).
    labels: dict[str, str] | None = None
    #: Image/mask folders: masks named ``<image><mask_suffix>`` (e.g. ``_mask``); None finds the suffix.
    mask_suffix: str | None = None
    #: Binarise every mask at ``value > mask_threshold``; None reads label values as they are (8-bit
    #: pictures of masks, 0/255 or anti-aliased, are still recognised and binarised).
    mask_threshold: float | None = None
    #: plans.json from ``medseg plan``; None computes the plan from the dataset before training.
    plan: str | None = None
    #: Network rank: 2 trains a 2D network on the slices of 3D volumes, 3 a 3D network; None lets the
    #: planner choose (slices for strongly anisotropic data). Applies when no `plan` file is given.
    dims: int | None = None
    #: 2.5D: a 2D network on slices also sees this many neighbouring slices on either side as extra input
    #: channels (needs a slice plan); None keeps the plan's (0 for a computed plan).
    context_slices: int | None = None
    #: Override the plan's target spacing (mm per axis), e.g. to train 2D X-rays at half resolution.
    target_spacing: list[float] | None = None
    #: Cross-validation: this fold of `folds` (deterministic, seed `split_seed`), saved to `splits`; or
    #: ``all`` (`ALL_CASES`): train on every case without validation (nnU-Net's ``fold all``), the final
    #: model once cross-validation has chosen the recipe. ``best.pt`` is then the last epoch's weights.
    fold: int | str = 0
    folds: int = 5
    split_seed: int = 12345
    #: Splits JSON; None means ``<output>/../splits.json`` (shared by the folds of one experiment).
    splits: str | None = None
    #: Model name from `medseg.models.list_models()` and its options.
    model: str = "dynunet"
    model_options: dict[str, Any] = field(default_factory=dict)
    #: Fine-tuning: a checkpoint, or a model folder such as a bundle, whose network weights the run
    #: starts from. Its network must be this one (model, options, channels and classes).
    init_weights: str | None = None
    loss: str = "dice_ce"
    #: Dice over the whole batch at once instead of per patch, then averaged (nnU-Net's batch Dice).
    batch_dice: bool = False
    #: Count the background class in the Dice term (nnU-Net leaves it to the cross-entropy).
    dice_background: bool = True
    #: Loss weight per output (main first) for deep supervision; None = nnU-Net's halving weights.
    deep_supervision_weights: list[float] | None = None
    optimizer: str = "adamw"
    learning_rate: float = 3e-3
    weight_decay: float = 3e-5
    #: SGD momentum (Nesterov), as nnU-Net.
    momentum: float = 0.99
    schedule: str = "poly"
    #: Validate and publish an average of the weights: the mean over every step so far, then, after
    #: ``1 / (1 - ema_decay)`` steps, an exponential average with this decay (0.999: about the last
    #: thousand steps; `medseg.training.averaging`). None uses the weights as trained.
    ema_decay: float | None = None
    #: None takes the plan's patch and batch sizes.
    patch_size: list[int] | None = None
    batch_size: int | None = None
    epochs: int = 100
    #: Optimiser steps per epoch; None = one pass over the training cases.
    steps_per_epoch: int | None = None
    #: Wall-clock budget in seconds (the schedule then decays over time); None = train all epochs.
    max_time: float | None = None
    #: auto = bf16 on CPU and on GPUs that support it, else fp16; fp16 needs a GPU.
    precision: str = "auto"
    #: Validate every this many epochs (and after the last).
    val_interval: int = 1
    #: Stop after this many validations without a better mean Dice; None never stops early.
    early_stopping: int | None = None
    #: Sliding-window overlap during validation.
    val_overlap: float = 0.25
    #: Validate on at most this many cases of the fold (None = all): quicker checks on big folds.
    max_val_cases: int | None = None
    seed: int = 0
    #: Deterministic algorithms and a step-based schedule: two runs with the same seed give the same losses.
    deterministic: bool = False
    cache: str = "memory"
    #: Loader worker processes; 0 loads in the training process (best on 2 cores with cached data).
    num_workers: int = 0
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    #: Share of patches centred on a foreground voxel (nnU-Net: a third).
    foreground_fraction: float = 1 / 3
    device: str = "auto"
    #: CPU threads for torch (None = torch's default, one per core). On a CPU shared with other jobs, 1
    #: avoids threads spinning while they wait for each other (measured here: up to 30x faster steps).
    threads: int | None = None
    #: Channels-last memory format for the network and its inputs: true, false, or auto (GPUs, and 3D on
    #: CPUs, where it was 25-35% faster; 2D CPU steps were 30% slower: `medseg.runtime.memory_format`).
    channels_last: bool | str = "auto"
    compile: bool = False
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def output_dir(self) -> Path:
        return Path(self.output.replace("{fold}", str(self.fold)))

    @property
    def splits_path(self) -> Path:
        return Path(self.splits) if self.splits else self.output_dir.parent / "splits.json"


def _type_matches(value: Any, expected: Any) -> bool:
    """A small structural type check for the annotations used in this module."""
    origin = typing.get_origin(expected)
    if expected is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_matches(value, option) for option in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(expected)
        return isinstance(value, (list, tuple)) and all(_type_matches(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, expected)


def _type_name(expected: Any) -> str:
    return str(expected).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    """An instance of dataclass `cls` from `raw`, refusing unknown keys and values of the wrong type."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(fields)}")
        if dataclasses.is_dataclass(hints[key]):
            value = _build(hints[key], value, f"{where}.{key}")
        elif not _type_matches(value, hints[key]):
            raise ConfigError(f"{where}: {key} must be {_type_name(hints[key])}, got {value!r}")
        if isinstance(value, tuple):
            value = list(value)
        if hints[key] is float and isinstance(value, int):
            value = float(value)
        values[key] = value
    missing = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and name not in values
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key(s): {', '.join(missing)}")
    return cls(**values)


def _check_values(config: RunConfig) -> None:
    for key, allowed in CHOICES.items():
        if getattr(config, key) not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {getattr(config, key)!r}")
    positive = ("epochs", "val_interval", "folds", "learning_rate")
    for key in positive:
        if getattr(config, key) <= 0:
            raise ConfigError(f"{key} must be positive, got {getattr(config, key)}")
    for key in ("batch_size", "steps_per_epoch", "max_time", "early_stopping", "max_val_cases", "threads"):
        value = getattr(config, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{key} must be positive (or left out), got {value}")
    if config.fold != ALL_CASES and not (isinstance(config.fold, int) and 0 <= config.fold < config.folds):
        raise ConfigError(
            f"fold must be in 0..{config.folds - 1} for folds={config.folds} or {ALL_CASES!r}, "
            f"got {config.fold!r}"
        )
    if config.fold == ALL_CASES and config.early_stopping is not None:
        raise ConfigError("early_stopping needs validation cases; fold all has none")
    if config.ema_decay is not None and not 0 < config.ema_decay < 1:
        raise ConfigError(f"ema_decay must be between 0 and 1 (or left out), got {config.ema_decay}")
    if config.dims not in (None, 2, 3):
        raise ConfigError(f"dims must be 2 or 3 (or left out), got {config.dims!r}")
    if config.context_slices is not None and (
        isinstance(config.context_slices, bool)
        or not isinstance(config.context_slices, int)
        or config.context_slices < 0
    ):
        raise ConfigError(f"context_slices must be a whole number >= 0, got {config.context_slices!r}")
    memory_format.check_setting(config.channels_last)
    if config.num_workers < 0:
        raise ConfigError(f"num_workers must be 0 or more, got {config.num_workers}")
    if not 0 <= config.foreground_fraction <= 1:
        raise ConfigError(f"foreground_fraction must be in 0..1, got {config.foreground_fraction}")
    if not 0 <= config.val_overlap < 1:
        raise ConfigError(f"val_overlap must be in [0, 1), got {config.val_overlap}")
    for name in ("affine_prob", "intensity_prob", "gamma_prob", "noise_prob"):
        if not 0 <= getattr(config.augmentation, name) <= 1:
            raise ConfigError(
                f"augmentation.{name} must be in 0..1, got {getattr(config.augmentation, name)}"
            )
    if config.deep_supervision_weights is not None and not config.deep_supervision_weights:
        raise ConfigError("deep_supervision_weights must list at least one weight (or be left out)")


def config_from_dict(raw: dict[str, Any], where: str = "config") -> RunConfig:
    """A checked `RunConfig` from a plain mapping (e.g. a parsed YAML file)."""
    config = _build(RunConfig, raw, where)
    _check_values(config)
    return config


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML (``.yaml``/``.yml``) or JSON config, apply `overrides` (e.g. from the CLI), check it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, json.JSONDecodeError, yaml.YAMLError) as error:
        raise InputError(path, f"cannot read config ({str(error).splitlines()[0]})") from None
    raw = {**(raw or {}), **(overrides or {})}
    return config_from_dict(raw, where=str(path))


def save_config(config: RunConfig, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML (atomically) so a run folder says exactly how it was trained."""
    return write_text_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
