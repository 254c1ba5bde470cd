"""The end-to-end demo through the front door: a synthetic CT cohort in DICOM, `fit`, then `Segmenter`.

`run_demo` writes a phantom cohort (`medseg.data.phantom`), trains a small 3D U-Net on all but the last
cases with `medseg.training.fit` (what ``medseg train`` runs), segments the unseen DICOM series with
`medseg.inference.segmenter.Segmenter.run_folder` (what ``medseg infer`` runs: mask, DICOM SEG, overlays,
report.html, result.json) and scores the masks against the phantom's truth (Dice and IoU per class).

Training is budgeted in steps, with a deterministic, step-based schedule, so the result does not depend
on how busy the machine is; `DemoSettings.max_seconds` is only a safety cap, and the summary says so
plainly when it cut training short. Its checkpoint is an ordinary run folder: ``medseg infer STUDY
--model OUT/model`` segments any other study with it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.phantom import PHANTOM_LABELS, PhantomConfig, write_phantom_dataset
from medseg.inference.output_names import MASK_NAME
from medseg.inference.segmenter import Segmenter
from medseg.io.image import LabelMap
from medseg.io.volume import read_volume
from medseg.metrics.overlap import overlap_per_class
from medseg.training.config import RunConfig
from medseg.training.trainer import fit
from medseg.utils.atomic import write_text_atomic

#: Optimiser steps between validations (one epoch of the demo's run).
STEPS_PER_EPOCH = 50


@dataclass
class DemoSettings:
    """Sizes and budgets of the demo. The defaults finish in about four minutes on two CPU cores."""

    out_dir: Path = Path("medseg-demo")
    train_cases: int = 8
    test_cases: int = 1
    phantom: PhantomConfig = field(default_factory=PhantomConfig)
    patch_size: tuple[int, int, int] = (64, 64, 32)
    channels: tuple[int, ...] = (16, 32, 64, 128)
    #: The training budget: steps, whatever the machine's speed...
    max_steps: int = 500
    #: ...with this cap in seconds, generous on two CPU cores; reaching it is reported as a cut.
    max_seconds: float = 900.0
    seed: int = 0


def training_config(manifest: Path, settings: DemoSettings, progress: bool) -> RunConfig:
    """The `fit` configuration of the demo: a small U-Net, a deterministic step-based schedule."""
    epochs = max(1, round(settings.max_steps / STEPS_PER_EPOCH))
    return RunConfig(
        dataset=str(manifest),
        output=str(settings.out_dir.resolve() / "model"),
        model="unet",
        model_options={"channels": list(settings.channels), "strides": [2] * (len(settings.channels) - 1)},
        optimizer="adamw",
        learning_rate=3e-3,
        patch_size=list(settings.patch_size),
        batch_size=2,
        epochs=epochs,
        steps_per_epoch=STEPS_PER_EPOCH,
        val_interval=max(1, epochs // 2),
        folds=min(5, settings.train_cases),  # validates on a fifth of the cases (one of fewer than five)
        max_time=settings.max_seconds,
        deterministic=True,
        seed=settings.seed,
        device="auto",
        progress=progress,
    )


def write_cohort_manifests(settings: DemoSettings) -> tuple[Path, list[dict[str, str]]]:
    """Write the cohort; return the training manifest and the unseen cases (absolute paths)."""
    data = settings.out_dir.resolve() / "data"
    total = settings.train_cases + settings.test_cases
    manifest_path = write_phantom_dataset(data, total, seed=settings.seed, config=settings.phantom)
    manifest = json.loads(manifest_path.read_text())
    cases = manifest["cases"]
    train = {**manifest, "cases": cases[: settings.train_cases]}
    train_path = write_text_atomic(data / "train.json", json.dumps(train, indent=1) + "\n")
    unseen = [
        {"id": case["id"], "dicom": str(data / case["image"]), "label": str(data / case["label"])}
        for case in cases[settings.train_cases :]
    ]
    return train_path, unseen


def score_case(result_dir: Path, label_path: str) -> dict[str, Any]:
    """Dice and IoU per class of the mask in `result_dir` (one series) against the phantom's truth."""
    summary = json.loads((result_dir / "summary.json").read_text())
    done = [item for item in summary["items"] if item["status"] in ("done", "skipped") and "output" in item]
    mask = read_volume(result_dir / done[0]["output"] / MASK_NAME, LabelMap)
    truth = read_volume(label_path, LabelMap)
    return {
        "result": str(result_dir / done[0]["output"]),
        "metrics": overlap_per_class(mask.array, truth.array, PHANTOM_LABELS),
    }


def run_demo(settings: DemoSettings, progress: bool = True, say: Callable[[str], None] = print) -> dict:
    """Run the whole demo; return the summary that is also written to ``<out_dir>/summary.json``."""
    started = time.perf_counter()
    out_dir = settings.out_dir.resolve()
    total = settings.train_cases + settings.test_cases
    say(f"[1/4] Writing a synthetic CT cohort of {total} cases as DICOM series in {out_dir / 'data'}")
    train_manifest, unseen = write_cohort_manifests(settings)

    config = training_config(train_manifest, settings, progress)
    say(
        f"[2/4] Training a 3D U-Net with medseg's trainer for {settings.max_steps} steps "
        f"(capped at {settings.max_seconds:.0f} s) into {config.output_dir}"
    )
    training = fit(config)
    planned = config.epochs * STEPS_PER_EPOCH
    cut_short = training["steps"] < planned
    if cut_short:
        say(
            f"      The {settings.max_seconds:.0f} s cap stopped training after {training['steps']} of "
            f"{planned} steps: this machine is slower or busier than expected, and the masks are weaker."
        )

    say(f"[3/4] Segmenting {len(unseen)} unseen DICOM series as 'medseg infer' does")
    segmenter = Segmenter.load(config.output_dir)
    scores = {}
    for case in unseen:
        result_dir = out_dir / "results" / case["id"]
        segmenter.run_folder(case["dicom"], result_dir, force=True, progress=progress)
        scores[case["id"]] = score_case(result_dir, case["label"])

    say("[4/4] Scoring the masks against the phantom's truth")
    names = [name for value, name in sorted(PHANTOM_LABELS.items()) if value]
    summary = {
        "seconds": round(time.perf_counter() - started, 1),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "training": {
            "steps": training["steps"],
            "planned_steps": planned,
            "cut_short_by_time_cap": cut_short,
            "seconds": round(training["seconds"], 1),
            "best_validation_dice": round(training["best_mean_dice"], 4),
        },
        "checkpoint": str(config.output_dir / "best.pt"),
        "cases": {case: {n: s["metrics"][n] for n in names} for case, s in scores.items()},
        "mean_dice": {n: float(np.mean([s["metrics"][n]["dice"] for s in scores.values()])) for n in names},
        "mean_iou": {n: float(np.mean([s["metrics"][n]["iou"] for s in scores.values()])) for n in names},
        "results": [s["result"] for s in scores.values()],
    }
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
