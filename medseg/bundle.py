"""MONAI bundles that run on medseg: one implementation behind two entry points.

A bundle (``bundles/<name>/``, MONAI's layout) holds ``configs/metadata.json``, ``train.json``,
``inference.json``, ``evaluate.json``, ``multi_gpu_train.json``, ``models/model.pt`` (a
`medseg.engine.checkpoint` file), ``docs/README.md`` and ``LICENSE``. Its configs do not re-implement
anything in JSON: ``train.json`` holds a medseg `RunConfig` under the key ``training`` and its ``run``
step (a ``_target_`` component) calls `train`; ``inference.json`` calls `infer`; ``network_def`` calls
`build_network` (`medseg.models.create_model`). So these two commands do the same thing:

    python -m monai.bundle run --config_file B/configs/train.json --bundle_root B --dataset_dir DATA
    medseg train --bundle B --dataset_dir DATA

Bundle configs can evaluate Python expressions, so medseg reads only the bundles that ship with it
(`SHIPPED_BUNDLES`) unless told to trust another one (``--trust-bundle``; `require_trust`).

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

from medseg.data.phantom import PHANTOM_LABELS, PhantomConfig, write_cohort
from medseg.engine.checkpoint import BEST, ModelConfig, checkpoint_paths, load_checkpoint
from medseg.engine.config import RunConfig, config_from_dict
from medseg.engine.trainer import fit
from medseg.errors import ConfigError, InputError
from medseg.utils.atomic import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

CONFIGS_DIR = "configs"
TRAIN_CONFIG = "train.json"
INFERENCE_CONFIG = "inference.json"
METADATA = "metadata.json"
#: Where the bundles that ship with medseg live (``bundles/`` in the repository).
SHIPPED_BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
#: The bundles medseg ships; any other folder, even one dropped into `SHIPPED_BUNDLES`, needs trust.
SHIPPED_NAMES = ("abdomen_ct_3d", "hippocampus_deeplab_3d", "hippocampus_mri_3d", "lung_cxr_2d")
#: The command-line flag that trusts a bundle from elsewhere.
TRUST_FLAG = "--trust-bundle"
#: Config keys every bundle's train.json defines.
TRAINING_KEY, MODEL_FILE_KEY, DATASET_KEY, ROOT_KEY = "training", "model_file", "dataset_dir", "bundle_root"


def is_bundle(folder: str | os.PathLike) -> bool:
    """True for a folder in MONAI's bundle layout (it has a ``configs`` folder)."""
    return (Path(folder) / CONFIGS_DIR).is_dir()


def require_trust(bundle: str | os.PathLike, trusted: bool) -> None:
    """Refuse a bundle that did not ship with medseg unless `trusted`: its configs can run Python code."""
    if trusted or Path(bundle).resolve() in {SHIPPED_BUNDLES / name for name in SHIPPED_NAMES}:
        return
    raise InputError(
        bundle,
        "this bundle did not ship with medseg, and bundle configs can run Python code; "
        f"if you trust whoever wrote it, pass {TRUST_FLAG}",
    )


def inference_zooms(bundle: str | os.PathLike) -> list[float] | None:
    """The test-time zooms of the bundle's inference.json (its ``run`` step's ``tta_zooms``), or None.

    Read as plain JSON, nothing evaluated, so that ``medseg infer --model BUNDLE`` runs the bundle as
    its inference.json does.
    """
    path = Path(bundle) / CONFIGS_DIR / INFERENCE_CONFIG
    if not path.is_file():
        return None
    try:
        steps = json.loads(path.read_text(encoding="utf-8")).get("run")
    except (json.JSONDecodeError, AttributeError) as error:
        raise ConfigError(f"{path}: not a JSON object ({error})") from error
    for step in steps if isinstance(steps, list) else []:
        zooms = step.get("tta_zooms") if isinstance(step, dict) else None
        if zooms is None:
            continue
        numbers = isinstance(zooms, list) and all(type(z) in (int, float) for z in zooms)  # not bools
        if not numbers:
            raise ConfigError(f"{path}: tta_zooms must be a list of numbers, got {zooms!r}")
        return [float(z) for z in zooms] or None
    return None


def read_config(
    bundle: str | os.PathLike, name: str = TRAIN_CONFIG, trusted: bool = False, **overrides: Any
) -> ConfigParser:
    """The bundle's ``configs/<name>`` with its metadata, ``bundle_root`` set to `bundle`, and `overrides`.

    Overrides use MONAI ids (``dataset_dir``, ``training#epochs``). Values are not evaluated until
    ``get_parsed_content`` is called. A bundle from elsewhere than `SHIPPED_BUNDLES` needs `trusted`.
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
    parser.update({key: value for key, value in overrides.items() if value is not None})
    return parser


def training_config(
    bundle: str | os.PathLike,
    dataset_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
    trusted: bool = False,
) -> tuple[RunConfig, Path]:
    """The checked `RunConfig` of a bundle's train.json and the path its best checkpoint is published to.

    `overrides` are `RunConfig` keys (as ``medseg train --set`` gives them), applied after the bundle's
    expressions are evaluated. A bundle from elsewhere than `SHIPPED_BUNDLES` needs `trusted`.
    """
    parser = read_config(bundle, trusted=trusted, **{DATASET_KEY: dataset_dir})
    for key in (TRAINING_KEY, MODEL_FILE_KEY):
        if key not in parser:
            raise ConfigError(f"{bundle}/{CONFIGS_DIR}/{TRAIN_CONFIG} has no {key!r} key")
    raw = {**parser.get_parsed_content(TRAINING_KEY), **(overrides or {})}
    config = config_from_dict(raw, where=f"{bundle}/{CONFIGS_DIR}/{TRAIN_CONFIG}#{TRAINING_KEY}")
    return config, Path(parser.get_parsed_content(MODEL_FILE_KEY))


def build_network(
    model: str, spatial_dims: int, in_channels: int, out_channels: int, options: dict[str, Any]
) -> torch.nn.Module:
    """A bundle's ``network_def``: `medseg.models.create_model` with the options as one mapping."""
    return ModelConfig(model, spatial_dims, in_channels, out_channels, dict(options)).build()


def publish(checkpoint: str | os.PathLike, model_file: str | os.PathLike) -> Path:
    """Copy a run's best checkpoint to the bundle's model file (atomically); warn about other ensemble
    members beside it that were trained on another plan (inference would refuse to ensemble them)."""
    checkpoint, model_file = Path(checkpoint), Path(model_file)
    if not checkpoint.is_file():
        raise InputError(checkpoint, "no best checkpoint: the run never validated")
    model_file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(model_file) as temporary:
        shutil.copyfile(checkpoint, temporary)
    plan = load_checkpoint(model_file)["plan"]
    members = [path for path in checkpoint_paths([model_file.parent]) if path.name != model_file.name]
    others = [path.name for path in members if load_checkpoint(path)["plan"] != plan]
    if others:
        log.warning(
            "%s: the models beside it (%s) were trained on another plan, so they no longer form one "
            "ensemble with it; retrain them the same way or remove them",
            model_file,
            ", ".join(others),
        )
    return model_file


def run_training(config: RunConfig, model_file: str | os.PathLike, resume: bool = False) -> dict[str, Any]:
    """Train as `config` says (`medseg.engine.trainer.fit`) and publish ``best.pt`` to `model_file`.

    Under torchrun only rank 0 publishes. Returns fit's summary with ``model_file`` added.
    """
    summary = fit(config, resume=resume)
    if int(os.environ.get("RANK", 0)) == 0:
        publish(config.output_dir / BEST, model_file)
    return {**summary, "model_file": str(model_file)}


def train(training: dict[str, Any], model_file: str) -> dict[str, Any]:
    """The ``run`` step of a bundle's train.json: `run_training` on the ``training`` mapping."""
    return run_training(config_from_dict(dict(training), where=TRAINING_KEY), model_file)


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

    Writes the same per-input folders and ``summary.json`` (`medseg.engine.batch.run_batch`) and returns
    the summary; fails if any input failed. `device` ``auto`` is the GPU when there is one.
    """
    from medseg.engine.batch import RunOptions, exit_status, run_batch
    from medseg.engine.inference import load_ensemble
    from medseg.engine.jobs import discover
    from medseg.engine.postprocess import PostProcessing

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    ensemble = load_ensemble([model_file], device).to(device)
    settings = ensemble.settings(
        overlap=overlap,
        tta=tta,
        zooms=tuple(tta_zooms) if tta_zooms else None,
        precision=precision,
        device=device,
    )
    discovery = discover(dataset_dir)
    if not discovery.jobs:
        raise InputError(dataset_dir, f"nothing to segment ({len(discovery.skipped)} file(s) skipped)")
    options = RunOptions(
        write_seg=write_seg,
        write_overlays=write_overlays,
        postprocessing=PostProcessing(largest_component=frozenset(largest_component or ())),
    )
    summary = run_batch(discovery, ensemble, settings, output_dir, options)
    if exit_status(summary) != 0:
        raise InputError(output_dir, f"{summary['counts']['failed']} input(s) failed; see summary.json")
    return summary


def evaluate(training: dict[str, Any], model_file: str, output_file: str) -> dict[str, Any]:
    """The ``run`` step of evaluate.json: the bundle's model on its fold's validation cases.

    Dice per class is computed as during training (`medseg.engine.validation.validate`: the model's
    plan, its training patch as the window, on the plan's grid) and written to `output_file` as JSON.
    """
    from medseg.data.planner import Plan
    from medseg.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from medseg.engine.experiment import prepare
    from medseg.engine.pipeline import validation_dataset
    from medseg.engine.precision import resolve_precision
    from medseg.engine.validation import validate

    config = config_from_dict(dict(training), where=TRAINING_KEY)
    experiment = prepare(config)
    state = load_checkpoint(model_file)
    plan = Plan(**state["plan"])
    result = validate(
        model_from_checkpoint(state),
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


def _relative(path: str, folder: Path) -> str:
    return Path(path).relative_to(folder).as_posix()


def phantom_dataset(
    folder: str | os.PathLike, n_cases: int, seed: int = 0, config: PhantomConfig | None = None
) -> Path:
    """Write `n_cases` synthetic abdomen CTs (DICOM + NIfTI labels) and a JSON manifest; return its path.

    The manifest names the phantom's classes and the CT modality, so it is a ``dataset_dir`` for the
    abdomen bundle as it is.
    """
    folder = Path(folder)
    records = write_cohort(folder, n_cases, seed=seed, config=config or PhantomConfig())
    manifest = {
        "name": "abdomen_phantom",
        "labels": {str(value): name for value, name in PHANTOM_LABELS.items()},
        "modalities": ["CT"],
        "cases": [  # relative to the manifest, so the folder can move
            {"id": r["id"], "image": _relative(r["dicom"], folder), "label": _relative(r["label"], folder)}
            for r in records
        ],
    }
    return write_text_atomic(folder / "manifest.json", json.dumps(manifest, indent=1) + "\n")
