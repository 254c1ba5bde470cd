"""`medseg train CONFIG`: train a model as a YAML/JSON config says (see docs/training.md).

``medseg train DATASET --out RUN`` trains on a dataset (folder or manifest) with the defaults: no config
file needed for the common case (``--labels``, ``--mask-suffix``, ``--modality`` and ``--set`` reach every
key).

Options given on the command line override the file (``--fold``, ``--max-time``, ``--init-weights``,
``--set key=value``).
Under ``torchrun --nproc_per_node N`` each process trains on its share of the patches (DDP).
``medseg train --bundle DIR [--dataset_dir PATH]`` trains a MONAI bundle's configs/train.json instead and
publishes the best checkpoint to the bundle's model file (see `medseg.bundle`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import yaml

from medseg.errors import ConfigError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        type=Path,
        nargs="?",
        help="YAML or JSON run configuration, or a dataset (folder or manifest) to train on with the "
        "defaults (then --out is required)",
    )
    parser.add_argument(
        "--bundle",
        type=Path,
        help="train a bundle folder's configs/train.json (training publishes into the folder: copy a "
        "shipped bundle first)",
    )
    parser.add_argument(
        "--dataset_dir", "--dataset-dir", dest="dataset_dir", help="the bundle's data (its dataset_dir key)"
    )
    parser.add_argument(
        "--trust-bundle",
        action="store_true",
        help="allow a bundle that did not ship with medseg (its configs can run Python code)",
    )
    parser.add_argument(
        "--fold",
        type=fold_argument,
        metavar="K|all",
        help="cross-validation fold (overrides the config), or 'all': every case, no validation (the "
        "final model once cross-validation chose the recipe)",
    )
    parser.add_argument("--output", "--out", dest="output", help="run folder (overrides the config)")
    dataset_arguments(parser)
    parser.add_argument("--epochs", type=int, help="number of epochs (overrides the config)")
    parser.add_argument("--max-time", type=float, help="wall-clock budget in seconds (overrides the config)")
    parser.add_argument(
        "--init-weights",
        metavar="MODEL",
        help="fine-tune: start from this checkpoint, run folder (its best.pt) or bundle's weights",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's last.pt")
    parser.add_argument("--check", action="store_true", help="check the config against the data and stop")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key (VALUE is read as YAML, e.g. --set batch_size=4); repeatable",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """How to read a dataset whose layout does not say everything (shared with ``medseg plan``)."""
    data = parser.add_argument_group("reading the dataset")
    data.add_argument("--modality", help="modality of every channel (CT, MR, XRAY...) when the data lacks it")
    data.add_argument(
        "--labels", metavar="JSON", help='class names, e.g. \'{"1": "lung"}\' (default: label_<v>)'
    )
    data.add_argument("--mask-suffix", help="masks named <image><suffix>, e.g. _mask (default: found)")
    data.add_argument(
        "--mask-threshold",
        type=float,
        help="binarise every mask at value > THRESHOLD (default: values as they are; 0/255 and "
        "anti-aliased 8-bit masks are binarised and counted in the plan)",
    )
    parser.add_argument(
        "--dims",
        type=int,
        choices=(2, 3),
        help="network rank: 2 trains a 2D network on the slices of 3D volumes (nnU-Net's 2d), 3 a 3D "
        "network (default: the planner's choice, slices for strongly anisotropic data)",
    )
    parser.add_argument(
        "--context-slices",
        type=int,
        metavar="N",
        help="2.5D: with a 2D network on slices, give it N neighbouring slices on either side as extra "
        "input channels (default: 0, one slice)",
    )


def fold_argument(text: str) -> int | str:
    """``--fold``: a number stays a number; anything else (``all``) is checked with the config."""
    return int(text) if text.lstrip("-").isdigit() else text


def json_labels(text: str | None) -> dict | None:
    """``--labels`` as a mapping (its names are checked when the dataset is opened)."""
    if text is None:
        return None
    try:
        labels = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f'--labels must be JSON like \'{{"1": "lung"}}\' ({error})') from None
    if not isinstance(labels, dict):
        raise ConfigError(f'--labels must be a JSON object like \'{{"1": "lung"}}\', got {text!r}')
    return labels


def is_config_file(path: Path) -> bool:
    """A YAML file, or a JSON object naming the run's ``dataset`` (else a dataset manifest)."""
    if path.suffix.lower() in (".yaml", ".yml"):
        return True
    if path.suffix.lower() != ".json" or path.name == "dataset.json" or not path.is_file():
        return False
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return True  # let the config reader say what is wrong with it
    return isinstance(document, dict) and "dataset" in document  # a manifest lists "cases" instead


def overrides_from(args: argparse.Namespace) -> dict:
    """The config keys the command line sets."""
    overrides = {}
    for item in args.set:
        key, separator, value = item.partition("=")
        if not separator:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    named = {
        "fold": args.fold,
        "output": args.output,
        "epochs": args.epochs,
        "max_time": args.max_time,
        "init_weights": args.init_weights,
        "modality": args.modality,
        "labels": json_labels(args.labels),
        "mask_suffix": args.mask_suffix,
        "mask_threshold": args.mask_threshold,
        "dims": args.dims,
        "context_slices": args.context_slices,
    }
    overrides.update({key: value for key, value in named.items() if value is not None})
    if args.no_progress:
        overrides["progress"] = False
    return overrides


def run(args: argparse.Namespace) -> int:
    from medseg.checkpoint import require_network
    from medseg.training.config import config_from_dict, load_config
    from medseg.training.experiment import prepare
    from medseg.training.trainer import fit

    if (args.config is None) == (args.bundle is None):
        raise ConfigError("give either a CONFIG file or --bundle DIR")
    if args.dataset_dir and args.bundle is None:
        raise ConfigError("--dataset_dir applies to --bundle; a CONFIG file sets 'dataset'")
    model_file, network = None, None
    if args.bundle is not None:
        from medseg.bundle import training_config

        config, model_file, network = training_config(
            args.bundle, args.dataset_dir, overrides_from(args), trusted=args.trust_bundle
        )
    elif is_config_file(args.config):
        config = load_config(args.config, overrides_from(args))
    else:  # a dataset, trained with the defaults
        if args.output is None:
            raise ConfigError(f"{args.config} is a dataset: give the run folder with --out RUN")
        config = config_from_dict({"dataset": str(args.config), **overrides_from(args)}, where="command line")
    if args.check:
        experiment = prepare(config)
        require_network(experiment.model_config, network)
        slice_axis = experiment.model_config.slice_axis
        slices = "" if slice_axis is None else f" on slices along axis {slice_axis}"
        if experiment.plan.context_slices:
            slices += f" with {experiment.plan.context_slices} neighbouring slice(s) either side as channels"
        print(
            f"config OK: {len(experiment.train_records)} training / {len(experiment.val_records)} validation "
            f"cases, {experiment.model_config.name} {experiment.model_config.spatial_dims}D{slices}, "
            f"patch {experiment.patch_size}, "
            f"batch {experiment.batch_size}, {experiment.steps_per_epoch} steps per epoch"
        )
        return 0
    if model_file is not None:
        from medseg.bundle import run_training

        summary = run_training(config, model_file, network, resume=args.resume)
        print(f"published the best checkpoint to {model_file}")
    else:
        summary = fit(config, resume=args.resume)
    best = summary["best_mean_dice"]
    validation = f"best validation mean Dice {best:.4f}" if math.isfinite(best) else "no validation"
    print(
        f"trained {summary['epochs']} epochs ({summary['steps']} steps) in {summary['seconds']:.0f} s; "
        f"{validation}; outputs in {summary['folder']}"
    )
    return 0
