"""The end-to-end demo: synthetic CT cohort in DICOM, a small 3D U-Net, inference on an unseen DICOM
folder, and second-opinion outputs (mask on the source grid, overlays, Dice/IoU report).

Everything runs offline on the CPU in about three minutes on two cores. `run_demo` is the whole path;
each step is a small function so tests can run the same path at a reduced size.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import medseg
from medseg.data.phantom import PHANTOM_LABELS, PhantomConfig, write_cohort
from medseg.data.presets import normalizer
from medseg.engine.checkpoint import ModelConfig, save_checkpoint
from medseg.engine.inference import predict_labels
from medseg.engine.training import TrainConfig, TrainResult, train
from medseg.errors import GeometryError
from medseg.io.dicom import read_series
from medseg.io.image import LabelMap, ScalarImage
from medseg.io.volume import read_volume, write_volume
from medseg.metrics.overlap import overlap_per_class
from medseg.report.overlay import write_overlays
from medseg.report.structures import structure_stats
from medseg.utils.atomic import write_text_atomic

#: Soft-tissue CT window the demo model sees, scaled to 0..1 (covers fat to bone edge).
CT_WINDOW = {"scheme": "window", "low": -250.0, "high": 350.0}


@dataclass
class DemoSettings:
    """Sizes and budgets of the demo. The defaults finish in about three minutes on two CPU cores."""

    out_dir: Path = Path("medseg-demo")
    train_cases: int = 8
    test_cases: int = 1
    phantom: PhantomConfig = field(default_factory=PhantomConfig)
    patch_size: tuple[int, int, int] = (64, 64, 32)
    channels: tuple[int, ...] = (16, 32, 64, 128)
    max_steps: int = 500
    max_seconds: float = 150.0
    seed: int = 0


def load_case(dicom_dir: str, label_path: str) -> tuple[ScalarImage, LabelMap]:
    """Read a DICOM series and its NIfTI label map, refusing a label on another grid."""
    image = read_series(dicom_dir)
    label = read_volume(label_path, LabelMap)
    if not image.same_grid(label):
        raise GeometryError(label_path, f"label grid {label.shape} does not match the series in {dicom_dir}")
    return image, label


def train_model(
    cases: list[tuple[ScalarImage, LabelMap]], settings: DemoSettings, progress: bool
) -> tuple[torch.nn.Module, ModelConfig, TrainResult]:
    """Train a small 3D U-Net on the cases within the demo's step and time budget."""
    normalise = normalizer(CT_WINDOW)
    samples = [
        {"image": np.asarray(normalise(image.array.astype(np.float32)))[None], "label": label.array[None]}
        for image, label in cases
    ]
    model_config = ModelConfig(
        "unet",
        spatial_dims=3,
        in_channels=1,
        out_channels=len(PHANTOM_LABELS),
        options={"channels": settings.channels, "strides": (2,) * (len(settings.channels) - 1)},
    )
    model = model_config.build()
    config = TrainConfig(
        patch_size=settings.patch_size,
        max_steps=settings.max_steps,
        max_seconds=settings.max_seconds,
        seed=settings.seed,
    )
    result = train(model, samples, config, progress=progress)
    return model, model_config, result


def second_opinion(
    model: torch.nn.Module, record: dict[str, str], settings: DemoSettings, out_dir: Path
) -> dict[str, Any]:
    """Segment one DICOM folder and write mask, overlays and report; return the report."""
    image, truth = load_case(record["dicom"], record["label"])
    normalise = normalizer(CT_WINDOW)
    start = time.perf_counter()
    mask = predict_labels(model, image, lambda a: np.asarray(normalise(a)), settings.patch_size)
    seconds = time.perf_counter() - start
    write_volume(mask, out_dir / "mask.nii.gz")
    overlays = write_overlays(
        image, mask, out_dir / "overlays", PHANTOM_LABELS, reference=truth, modality="CT"
    )
    report = {
        "case": record["id"],
        "medseg_version": medseg.__version__,
        "model": "unet (demo)",
        "inference_seconds": round(seconds, 2),
        "spacing_mm": [round(float(s), 4) for s in image.spacing],
        "shape": list(image.shape),
        "metrics": overlap_per_class(mask.array, truth.array, PHANTOM_LABELS),
        "structures": structure_stats(mask, PHANTOM_LABELS),
        "reference_structures": structure_stats(truth, PHANTOM_LABELS),
        "outputs": {"mask": "mask.nii.gz", "overlays": [str(p.relative_to(out_dir)) for p in overlays]},
    }
    write_text_atomic(out_dir / "report.json", json.dumps(report, indent=2))
    write_text_atomic(out_dir / "report.md", readable_report(report))
    return report


def readable_report(report: dict[str, Any]) -> str:
    """A short Markdown summary of one case's report."""
    lines = [
        f"# medseg second opinion: {report['case']}",
        "",
        "AI-generated, not for clinical use. Reference: the phantom's ground truth.",
        "",
        "| structure | Dice | IoU | AI mL | reference mL | AI lesions | reference lesions |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, scores in report["metrics"].items():
        ai, ref = report["structures"][name], report["reference_structures"][name]
        lines.append(
            f"| {name} | {scores['dice']:.3f} | {scores['iou']:.3f} | {ai['volume_ml']:.1f} | "
            f"{ref['volume_ml']:.1f} | {ai['lesions']} | {ref['lesions']} |"
        )
    lines += ["", f"Inference took {report['inference_seconds']} s."]
    return "\n".join(lines) + "\n"


def run_demo(settings: DemoSettings, progress: bool = True, say: Callable[[str], None] = print) -> dict:
    """Run the whole demo; return the summary that is also written to ``<out_dir>/summary.json``."""
    started = time.perf_counter()
    out_dir = settings.out_dir.resolve()
    torch.manual_seed(settings.seed)
    total = settings.train_cases + settings.test_cases
    say(f"[1/4] Generating a synthetic CT cohort of {total} cases as DICOM series in {out_dir / 'data'}")
    records = write_cohort(out_dir / "data", total, seed=settings.seed, config=settings.phantom)
    train_records, test_records = records[: settings.train_cases], records[settings.train_cases :]

    say(f"[2/4] Training a 3D U-Net on {len(train_records)} cases (at most {settings.max_seconds:.0f} s)")
    cases = [load_case(r["dicom"], r["label"]) for r in train_records]
    model, model_config, training = train_model(cases, settings, progress)
    plan = {"normalization": [CT_WINDOW], "patch_size": list(settings.patch_size)}
    checkpoint = save_checkpoint(out_dir / "model" / "model.pt", model, model_config, plan, PHANTOM_LABELS)

    say(f"[3/4] Sliding-window inference on {len(test_records)} unseen DICOM folder(s)")
    reports = [second_opinion(model, r, settings, out_dir / "results" / r["id"]) for r in test_records]

    say("[4/4] Writing the summary")
    summary = {
        "seconds": round(time.perf_counter() - started, 1),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "training": {"steps": training.steps, "seconds": round(training.seconds, 1)},
        "checkpoint": str(checkpoint),
        "cases": {r["case"]: {k: v["dice"] for k, v in r["metrics"].items()} for r in reports},
        "mean_dice": mean_dice_per_class(reports),
        "results": [str(out_dir / "results" / r["case"]) for r in reports],
    }
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2))
    return summary


def mean_dice_per_class(reports: list[dict[str, Any]]) -> dict[str, float]:
    """Case-averaged Dice per class."""
    names = reports[0]["metrics"].keys()
    return {name: float(np.mean([r["metrics"][name]["dice"] for r in reports])) for name in names}
