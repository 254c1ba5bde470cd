"""MONAI bundles that run on medseg: one implementation behind two entry points.

A bundle (a folder in MONAI's layout; the shipped ones are `medseg.bundles`) holds
``configs/metadata.json``, ``train.json``, ``inference.json``, ``evaluate.json``,
``multi_gpu_train.json``, ``models/model.pt`` (a `medseg.checkpoint` file), ``docs/README.md`` and
``LICENSE``. Its configs do not re-implement anything in JSON: ``train.json`` holds a medseg `RunConfig`
under the key ``training`` and its ``run`` step (a ``_target_`` component) calls `train`;
``inference.json`` calls `infer`; ``network_def`` calls `build_network` (`medseg.models.create_model`). So
these two commands do the same thing:

    python -m monai.bundle run --config_file B/configs/train.json --bundle_root B --dataset_dir DATA
    medseg train --bundle B --dataset_dir DATA

Bundle configs can evaluate Python expressions, so medseg reads only the bundles that ship with it
(`medseg.bundles`, recognised by content) unless told to trust another one (``--trust-bundle``).

The data directory is the single key ``dataset_dir`` in both. medseg reads a bundle's config with MONAI's
`ConfigParser` (`read_config`) and takes the ``training`` mapping from it, so command-line overrides
(``--set epochs=2``) apply to the same keys that the JSON sets.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.bundle.utils import EXPR_KEY, ID_REF_KEY, MACRO_KEY

from medseg.bundles import CONFIGS_DIR, METADATA, require_trust
from medseg.checkpoint import BEST, ModelConfig, checkpoint_paths, checkpoint_plan, load_checkpoint
from medseg.errors import ConfigError, InputError
from medseg.training.config import RunConfig, config_from_dict
from medseg.training.trainer import fit
from medseg.utils.atomic import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

TRAIN_CONFIG = "train.json"
#: Config keys every bundle's train.json defines.
TRAINING_KEY, MODEL_FILE_KEY, DATASET_KEY, ROOT_KEY = "training", "model_file", "dataset_dir", "bundle_root"
NETWORK_KEY = "network_def"


def read_config(
    bundle: str | os.PathLike, name: str = TRAIN_CONFIG, trusted: bool = False, **overrides: Any
) -> ConfigParser:
    """The bundle's ``configs/<name>`` with its metadata, ``bundle_root`` set to `bundle`, and `overrides`.

    Overrides use MONAI ids (``dataset_dir``, ``training#epochs``). Values are not evaluated until
    ``get_parsed_content`` is called. A bundle medseg did not ship needs `trusted`.
    """
    bundle = Path(bundle)
    require_trust(bundle, trusted)
    path = bundle / CONFIGS_DIR / name
    if not path.is_file():
        raise InputError(path, "not found; a bundle holds configs/train.json and configs/inference.json")
    parser = ConfigParser()
    parser.read_config(str(path))
    meta = bundle / CONFIGS_DIR / METADATA
    if meta.is_file():
        parser.read_meta(str(meta))
    parser[ROOT_KEY] = str(bundle)
    for key, value in overrides.items():
        if isinstance(value, str) and value.startswith((EXPR_KEY, ID_REF_KEY, MACRO_KEY)):
            raise ConfigError(
                f"{key} {value!r}: values given on the command line are data, never config expressions "
                f"(they may not start with {EXPR_KEY}, {ID_REF_KEY} or {MACRO_KEY})"
            )
    parser.update({key: value for key, value in overrides.items() if value is not None})
    return parser


def training_config(
    bundle: str | os.PathLike,
    dataset_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
    trusted: bool = False,
) -> tuple[RunConfig, Path, torch.nn.Module]:
    """The checked `RunConfig` of a bundle's train.json and the path its best checkpoint is published to.

    `overrides` are `RunConfig` keys (as ``medseg train --set`` gives them), applied after the bundle's
    expressions are evaluated. A bundle medseg did not ship needs `trusted`. Also returns the network
    ``network_def`` builds, which training checks its own against (`run_training`).
    """
    parser = read_config(bundle, trusted=trusted, **{DATASET_KEY: dataset_dir})
    for key in (TRAINING_KEY, MODEL_FILE_KEY, NETWORK_KEY):
        if key not in parser:
            raise ConfigError(f"{bundle}/{CONFIGS_DIR}/{TRAIN_CONFIG} has no {key!r} key")
    raw = {**parser.get_parsed_content(TRAINING_KEY), **(overrides or {})}
    config = config_from_dict(raw, where=f"{bundle}/{CONFIGS_DIR}/{TRAIN_CONFIG}#{TRAINING_KEY}")
    return config, Path(parser.get_parsed_content(MODEL_FILE_KEY)), parser.get_parsed_content(NETWORK_KEY)


def build_network(
    model: str,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    options: dict[str, Any],
    slice_axis: int | None = None,
) -> torch.nn.Module:
    """A bundle's ``network_def``: `medseg.models.create_model` with the options as one mapping (a 2D
    network run on the slices of 3D volumes along `slice_axis` where one is given)."""
    return ModelConfig(model, spatial_dims, in_channels, out_channels, dict(options), slice_axis).build()


def publish(checkpoint: str | os.PathLike, model_file: str | os.PathLike) -> Path:
    """Copy a run's best checkpoint to the bundle's model file (atomically); warn about other ensemble
    members beside it that were trained on another plan (inference would refuse to ensemble them)."""
    checkpoint, model_file = Path(checkpoint), Path(model_file)
    if not checkpoint.is_file():
        raise InputError(checkpoint, "no best checkpoint: the run never validated")
    model_file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(model_file) as temporary:
        shutil.copyfile(checkpoint, temporary)
    plan = checkpoint_plan(load_checkpoint(model_file), model_file)
    members = [path for path in checkpoint_paths([model_file.parent]) if path.name != model_file.name]
    others = [path.name for path in members if checkpoint_plan(load_checkpoint(path), path) != plan]
    if others:
        log.warning(
            "%s: the models beside it (%s) were trained on another plan, so they no longer form one "
            "ensemble with it; retrain them the same way or remove them",
            model_file,
            ", ".join(others),
        )
    return model_file


def run_training(
    config: RunConfig, model_file: str | os.PathLike, network: torch.nn.Module, resume: bool = False
) -> dict[str, Any]:
    """Train as `config` says (`medseg.training.trainer.fit`) and publish ``best.pt`` to `model_file`.

    `network` is the bundle's ``network_def``: a run that would train another network (other options,
    dimensions, channels or classes, however they were set) is refused before it starts, so that the
    published weights load into it. Under torchrun only rank 0 publishes. Returns fit's summary with
    ``model_file`` added.
    """
    summary = fit(config, resume=resume, network=network)
    if int(os.environ.get("RANK", 0)) == 0:
        publish(config.output_dir / BEST, model_file)
    return {**summary, "model_file": str(model_file)}


def train(training: dict[str, Any], model_file: str, network: torch.nn.Module) -> dict[str, Any]:
    """The ``run`` step of a bundle's train.json: `run_training` on the ``training`` mapping, checked
    against `network` (``network_def``)."""
    return run_training(config_from_dict(dict(training), where=TRAINING_KEY), model_file, network)


def infer(
    dataset_dir: str,
    model_file: str,
    output_dir: str,
    overlap: float = 0.5,
    tta: bool = False,
    tta_zooms: list[float] | None = None,
    precision: str = "auto",
    largest_component: list[int] | None = None,
    write_seg: bool = True,
    write_overlays: bool = True,
    device: str = "auto",
) -> dict[str, Any]:
    """The ``run`` step of inference.json: segment every image under `dataset_dir`, as ``medseg infer``.

    Loads the model with `Segmenter.load` and runs `Segmenter.run_folder`: the same per-input folders,
    settings and ``summary.json`` as ``medseg infer --model BUNDLE``. Fails if any input failed.
    `device` ``auto`` is the GPU when there is one.
    """
    from medseg.inference.runner import exit_status
    from medseg.inference.segmenter import Segmenter

    segmenter = Segmenter.load(
        model_file,
        device,
        tta=tta,
        tta_zooms=tta_zooms or [1.0],
        overlap=overlap,
        precision=precision,
        largest_component=largest_component or None,
    )
    summary = segmenter.run_folder(
        dataset_dir, output_dir, write_seg=write_seg, write_overlays=write_overlays
    )
    if exit_status(summary) != 0:
        raise InputError(output_dir, f"{summary['counts']['failed']} input(s) failed; see summary.json")
    return summary


def evaluate(training: dict[str, Any], model_file: str, output_file: str) -> dict[str, Any]:
    """The ``run`` step of evaluate.json: the bundle's model on its fold's validation cases.

    Dice per class is computed as during training (`medseg.training.validation.validate`: the model's
    plan, its training patch as the window, on the plan's grid) and written to `output_file` as JSON.
    """
    from medseg.checkpoint import model_from_checkpoint
    from medseg.runtime.precision import resolve_precision
    from medseg.training.experiment import prepare
    from medseg.training.patches import validation_dataset
    from medseg.training.validation import validate

    config = config_from_dict(dict(training), where=TRAINING_KEY)
    experiment = prepare(config)
    if not experiment.val_records:
        raise ConfigError(
            f"fold {config.fold} trained on every case, so none is left to evaluate on; choose a fold "
            "(e.g. --training#fold 0), knowing the model has seen its cases"
        )
    state = load_checkpoint(model_file)
    plan = checkpoint_plan(state, model_file)
    result = validate(
        model_from_checkpoint(state, model_file),
        validation_dataset(experiment.val_records, plan, cache="none"),
        {int(value): name for value, name in state["class_names"].items()},
        state["training"].get("patch_size") or plan.patch_size,
        config.val_overlap,
        resolve_precision(config.precision, "cpu"),
    )
    case_ids = [record["id"] for record in experiment.val_records]
    report = {"model_file": str(model_file), "fold": config.fold, "case_ids": case_ids, **result}
    Path(output_file).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(output_file, json.dumps(report, indent=1) + "\n")
    return report
