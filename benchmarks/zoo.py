"""The architecture table: every family of the zoo on the same task, split, pipeline and wall-clock budget.

For each task (a benchmark config: MSD hippocampus 3D, chest X-ray lungs 2D, LGG tumour 2D on slices) and
each architecture, ``medseg train`` runs the task's config with only the model swapped (its default
options from the registry, the task's patch for size-bound models) for ``--minutes`` of wall-clock time,
then the best checkpoint segments the fold's first validation cases through `Segmenter` to time
inference. A row: task, architecture, dims, parameters, steps done, validation Dice per class and mean
(training's own validation on the plan grid, the same fold for every row), seconds per case.

    medseg bench zoo --task hippocampus --task cxr --task lgg --minutes 10 --json zoo.json

Rows append to ``--json`` as they finish, so a long table can be filled over several sessions (each row
keeps its date and machine); docs/benchmarks.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml
from _common import emit, machine

from medseg.inference.segmenter import Segmenter
from medseg.io.reader import read_image
from medseg.models.registry import count_parameters, get_spec
from medseg.training.config import config_from_dict
from medseg.training.trainer import fit

CONFIGS = Path(__file__).resolve().parent / "configs"
REPOSITORY = CONFIGS.parents[1]
#: Task name -> (benchmark config, dims of its network).
TASKS = {"hippocampus": ("hippocampus.yaml", 3), "cxr": ("cxr_lung.yaml", 2), "lgg": ("lgg_flair_2d.yaml", 2)}
#: The architectures of the table, in its order: the best U-Net of the zoo first, then the others.
ARCHITECTURES = (
    "dynunet",
    "unet",
    "segresnet",
    "attention_unet",
    "fcn8s",
    "deeplabv3",
    "deeplabv3plus",
    "pspnet",
    "unetr",
    "swin_unetr",
)
#: Validation cases timed at inference.
TIMED_CASES = 3


def row_config(task: str, architecture: str, minutes: float, runs: Path) -> dict:
    """The task's config with the model swapped (the task's own options for dynunet, the registry's
    defaults otherwise; size-bound models get the task's patch) and the budget set."""
    config = yaml.safe_load((CONFIGS / TASKS[task][0]).read_text(encoding="utf-8"))
    config["dataset"] = str(REPOSITORY / config["dataset"])  # the configs name it from the checkout
    if architecture != config["model"]:
        config["model"], config["model_options"] = architecture, {}
    spec = get_spec(architecture)
    if spec.fixed_size_option and config.get("patch_size"):
        patch = [size for size in config["patch_size"] if size != 1]  # a slice plan's 1 is not the network's
        config["model_options"] = {spec.fixed_size_option: patch}
    config.update(
        max_time=minutes * 60, epochs=100000, output=str(runs / task / architecture / "fold_{fold}")
    )
    config["progress"] = False
    return config


def run_row(task: str, architecture: str, minutes: float, runs: Path) -> dict:
    dims = TASKS[task][1]
    row = {"task": task, "architecture": architecture, "dims": dims, "minutes": minutes}
    if dims not in get_spec(architecture).dims:
        return {**row, "error": f"{architecture} has no {dims}D form"}
    config = config_from_dict(row_config(task, architecture, minutes, runs))
    summary = fit(config)
    folder = Path(summary["folder"])
    validation = _best_validation(summary["history"])
    segmenter = Segmenter.load(folder, device="cpu")
    cases = _validation_images(folder)[:TIMED_CASES]
    start = time.perf_counter()
    for image in cases:
        segmenter.predict(read_image(image))
    per_case = (time.perf_counter() - start) / max(1, len(cases))
    return {
        **row,
        "parameters": count_parameters(summary["model"]),
        "steps": summary["steps"],
        "val_dice": validation,
        "val_mean_dice": summary["best_mean_dice"],
        "seconds_per_case": per_case,
        "machine": machine(),
    }


def _best_validation(history: list[dict]) -> dict[str, float]:
    """Dice per class of the best validation in a run's history (rows ``val_dice_<class>``)."""
    validated = [row for row in history if row.get("val_mean_dice") is not None]
    if not validated:
        return {}
    best = max(validated, key=lambda row: row["val_mean_dice"])
    return {key[len("val_dice_") :]: value for key, value in best.items() if key.startswith("val_dice_")}


def _validation_images(folder: Path) -> list[str]:
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    splits = json.loads((folder.parent / "splits.json").read_text(encoding="utf-8"))
    from medseg.data.datasets import open_dataset

    dataset = open_dataset(config["dataset"], config.get("modality"))
    wanted = set(splits[config.get("fold", 0)]["val"])
    return [record["image"] for record in dataset.cases if record["id"] in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medseg bench zoo", description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", choices=sorted(TASKS), help="repeatable (default: all)")
    parser.add_argument("--arch", action="append", choices=ARCHITECTURES, help="repeatable (default: all)")
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget per row")
    parser.add_argument("--runs", type=Path, default=Path("runs/zoo"), help="where the run folders go")
    parser.add_argument("--json", type=Path, help="append each row to this JSON list as it finishes")
    args = parser.parse_args(argv)
    rows = []
    for task in args.task or sorted(TASKS):
        for architecture in args.arch or ARCHITECTURES:
            row = run_row(task, architecture, args.minutes, args.runs)
            rows.append(row)
            if args.json:
                done = json.loads(args.json.read_text()) if args.json.is_file() else []
                args.json.write_text(json.dumps([*done, row], indent=2) + "\n")
    table = [
        {key: row.get(key) for key in ("task", "architecture", "dims", "parameters", "steps", "val_mean_dice",
                                       "seconds_per_case", "error")}
        for row in rows
    ]  # fmt: skip
    emit("zoo", table, None)
    return 0
