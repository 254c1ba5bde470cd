"""The architecture table: every family of the zoo on the same task, split, pipeline and wall-clock budget.

For each task (a benchmark config: MSD hippocampus 3D, chest X-ray lungs 2D, LGG tumour 2D on slices) and
each architecture, ``medseg train`` runs the task's config with only the model swapped, at the widths of
the task's U-Net (`comparable_options`; FCN, DeepLab and PSPNet take depth and strides from the plan), for
``--minutes`` of wall-clock time; then the best checkpoint segments the fold's first validation cases
through `Segmenter` to time inference. A row: task, architecture, dims, resolved options, parameters,
steps done, validation Dice per class and mean (training's own validation on the plan grid, the same fold
for every row), seconds per case.

    medseg bench zoo --task hippocampus --task cxr --task lgg --minutes 10 --json zoo.json
    medseg bench zoo --markdown zoo.json            # the table docs/benchmarks.md quotes

Rows append to ``--json`` as they finish, so a long table can be filled over several sessions (each row
keeps its date and machine). On two cores, two processes with ``--threads 1``, each pinned to a core
(``taskset -c 0`` / ``-c 1``), fill it twice as fast as one with two threads; docs/benchmarks.md says how
each row ran.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml
from _common import emit, machine

from medseg.checkpoint import load_checkpoint
from medseg.inference.segmenter import Segmenter
from medseg.io.reader import read_image
from medseg.models.registry import count_parameters, get_spec
from medseg.training.config import config_from_dict
from medseg.training.experiment import BACKBONE_FAMILIES
from medseg.training.trainer import fit

CONFIGS = Path(__file__).resolve().parent / "configs"
REPOSITORY = CONFIGS.parents[1]
#: Task name -> (benchmark config, dims of its network, the widths of its U-Net levels). Every row of a
#: task gets widths from that ladder (see `comparable_options`), so that no family wins by size alone.
TASKS = {
    "hippocampus": ("hippocampus.yaml", 3, (8, 16, 32, 64)),
    "cxr": ("cxr_lung.yaml", 2, (16, 32, 64, 128, 256)),
    "lgg": ("lgg_flair_2d.yaml", 2, (16, 32, 64, 128, 256, 256)),
}
#: A ResNet trunk's stage widths are its stem width times 1, 2, 4, 8: its top stage matches the ladder's.
TRUNK_WIDENING = 8
#: The same settings for every row: torch threads (see `--threads`) and no torch.compile (it fails on
#: some architectures and would spend part of a short budget compiling).
ROW_SETTINGS = {"compile": False, "progress": False, "epochs": 100000}
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


def comparable_options(architecture: str, ladder: tuple[int, ...]) -> dict:
    """Options giving `architecture` the widths of the task's U-Net `ladder` (its registry defaults,
    and the plan's strides, otherwise). The ResNet-trunk families take their depth and strides from
    the plan (`medseg.training.experiment.backbone_options`) and their width from here."""
    strides = [2] * (len(ladder) - 1)
    family = get_spec(architecture).family
    if architecture == "dynunet":
        return {"filters": list(ladder), "strides": [1, *strides], "kernel_size": [3] * len(ladder)}
    if architecture in ("unet", "attention_unet"):
        return {"channels": list(ladder), "strides": strides}
    if architecture == "segresnet":
        return {"init_filters": ladder[0]}
    if family in BACKBONE_FAMILIES:
        return {"width": ladder[-1] // TRUNK_WIDENING}
    return {}


def row_config(task: str, architecture: str, minutes: float, runs: Path, threads: int) -> dict:
    """The task's config with the model swapped (widths from the task's ladder; size-bound models get
    the task's patch), the row settings and the budget set."""
    config = yaml.safe_load((CONFIGS / TASKS[task][0]).read_text(encoding="utf-8"))
    config["dataset"] = str(REPOSITORY / config["dataset"])  # the configs name it from the checkout
    config["model"], config["model_options"] = architecture, comparable_options(architecture, TASKS[task][2])
    spec = get_spec(architecture)
    if spec.fixed_size_option and config.get("patch_size"):
        patch = [size for size in config["patch_size"] if size != 1]  # a slice plan's 1 is not the network's
        config["model_options"] = {spec.fixed_size_option: patch}
    config.update(ROW_SETTINGS, threads=threads, max_time=minutes * 60)
    config["output"] = str(runs / task / architecture / "fold_{fold}")
    return config


def run_row(task: str, architecture: str, minutes: float, runs: Path, threads: int) -> dict:
    dims = TASKS[task][1]
    row = {"task": task, "architecture": architecture, "dims": dims, "minutes": minutes, "threads": threads}
    if dims not in get_spec(architecture).dims:
        return {**row, "error": f"{architecture} has no {dims}D form"}
    config = config_from_dict(row_config(task, architecture, minutes, runs, threads))
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
        "options": load_checkpoint(folder / "best.pt")["model"]["options"],  # as resolved from the plan
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


def markdown(rows: list[dict]) -> str:
    """The table of docs/benchmarks.md: one line per row, in task then architecture order."""
    order = {name: index for index, name in enumerate(ARCHITECTURES)}
    lines = [
        "| task | architecture | dims | parameters | steps | validation Dice per class | mean | s/case"
        " | date |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: (r["task"], order.get(r["architecture"], len(order)))):
        if "error" in row:
            lines.append(f"| {row['task']} | {row['architecture']} | {row['dims']}D | {row['error']} |||||")
            continue
        per_class = ", ".join(f"{name} {value:.3f}" for name, value in row["val_dice"].items())
        lines.append(
            f"| {row['task']} | {row['architecture']} | {row['dims']}D | {row['parameters'] / 1e6:.2f}M "
            f"| {row['steps']} | {per_class} | {row['val_mean_dice']:.3f} | {row['seconds_per_case']:.2f} "
            f"| {row['machine']['date']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medseg bench zoo", description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", choices=sorted(TASKS), help="repeatable (default: all)")
    parser.add_argument("--arch", action="append", choices=ARCHITECTURES, help="repeatable (default: all)")
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget per row")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every row")
    parser.add_argument("--runs", type=Path, default=Path("runs/zoo"), help="where the run folders go")
    parser.add_argument("--json", type=Path, help="append each row to this JSON list as it finishes")
    parser.add_argument(
        "--markdown", type=Path, nargs="+", metavar="JSON", help="print the table of these row files and stop"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown([row for path in args.markdown for row in json.loads(path.read_text())]))
        return 0
    rows = []
    for task in args.task or sorted(TASKS):
        for architecture in args.arch or ARCHITECTURES:
            row = run_row(task, architecture, args.minutes, args.runs, args.threads)
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
