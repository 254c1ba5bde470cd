"""What a training run shows and writes about itself: a progress bar; history (CSV and JSON),
TensorBoard events, a curve PNG.

One row per epoch: epoch, step, seconds, learning rate, mean training loss, and, in epochs that
validated, the mean Dice and the Dice of each class. TensorBoard is an optional extra
(``pip install medseg[tensorboard]``): without it the event files are skipped with one log line and
everything else is written as usual. The curve is drawn with Pillow (already a dependency).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from tqdm import tqdm

from medseg.utils.atomic import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
CURVE_PNG = "training_curve.png"
TENSORBOARD_DIR = "tensorboard"
#: Curve picture size and margins in pixels.
CURVE_SIZE = (800, 400)
CURVE_MARGIN = 50
LOSS_COLOUR, DICE_COLOUR, AXIS_COLOUR = (200, 40, 40), (30, 90, 200), (0, 0, 0)
#: The progress bar of a run under a time budget counts seconds, so its ETA is the budget's end.
BUDGET_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} of the time budget{postfix}"


def _tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed: no event files (pip install 'medseg[tensorboard]')")
        return None
    return SummaryWriter(log_dir=str(folder))


class RunLog:
    """Collects epoch rows and writes them to the run folder (only create it on the saving rank)."""

    def __init__(self, folder: Path, history: list[dict[str, Any]] | None = None, tensorboard: bool = True):
        self.folder = folder
        self.rows: list[dict[str, Any]] = list(history or [])
        self.writer = _tensorboard_writer(folder / TENSORBOARD_DIR) if tensorboard else None

    def add(self, row: dict[str, Any]) -> None:
        """Record one epoch and rewrite the history files and the curve."""
        self.rows.append(row)
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, row["step"])
            self.writer.flush()
        self.write()

    def write(self) -> None:
        write_text_atomic(self.folder / HISTORY_JSON, json.dumps(self.rows, indent=1) + "\n")
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        buffer = io.StringIO()
        table = csv.DictWriter(buffer, fieldnames=columns)
        table.writeheader()
        table.writerows(self.rows)
        write_text_atomic(self.folder / HISTORY_CSV, buffer.getvalue())
        draw_curve(self.rows, self.folder / CURVE_PNG)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _polyline(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], box, y_range, colour) -> None:
    (left, top, right, bottom), (low, high) = box, y_range
    x_max = max(x for x, _ in points) or 1
    span = (high - low) or 1.0
    pixels = [
        (left + (right - left) * x / x_max, bottom - (bottom - top) * (y - low) / span) for x, y in points
    ]
    if len(pixels) == 1:
        x, y = pixels[0]
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
    else:
        draw.line(pixels, fill=colour, width=2)


def draw_curve(rows: list[dict[str, Any]], path: Path) -> None:
    """Training loss (red, left scale) and validation mean Dice (blue, 0..1) against the epoch."""
    image = Image.new("RGB", CURVE_SIZE, "white")
    draw = ImageDraw.Draw(image)
    box = (CURVE_MARGIN, CURVE_MARGIN // 2, CURVE_SIZE[0] - CURVE_MARGIN, CURVE_SIZE[1] - CURVE_MARGIN)
    draw.rectangle(box, outline=AXIS_COLOUR)
    losses = [(r["epoch"], r["train_loss"]) for r in rows if math.isfinite(r.get("train_loss", math.nan))]
    dice = [(r["epoch"], r["val_mean_dice"]) for r in rows if "val_mean_dice" in r]
    if losses:
        high = max(y for _, y in losses)
        _polyline(draw, losses, box, (0.0, high), LOSS_COLOUR)
        draw.text((5, box[1]), f"{high:.2f}", fill=LOSS_COLOUR)
        draw.text((5, box[3] - 10), "0", fill=LOSS_COLOUR)
    if dice:
        _polyline(draw, dice, box, (0.0, 1.0), DICE_COLOUR)
        draw.text((box[2] + 5, box[1]), "1.0", fill=DICE_COLOUR)
        draw.text((box[2] + 5, box[3] - 10), "0", fill=DICE_COLOUR)
    last = rows[-1]["epoch"] if rows else 0
    draw.text((box[0], box[3] + 8), "epoch 0", fill=AXIS_COLOUR)
    draw.text((box[2] - 60, box[3] + 8), f"epoch {last}", fill=AXIS_COLOUR)
    draw.text((box[0] + 10, CURVE_SIZE[1] - 20), "training loss", fill=LOSS_COLOUR)
    draw.text((box[0] + 140, CURVE_SIZE[1] - 20), "validation mean Dice", fill=DICE_COLOUR)
    with atomic_path(path) as temporary:
        image.save(temporary, format="PNG")


class TrainingBar:
    """The progress bar of a run: steps out of the planned total or, under a wall-clock budget
    (`max_time`), seconds out of the budget, so that its ETA is the budget's end rather than that of
    the step total a budgeted run never reaches."""

    def __init__(self, total_steps: int, step: int, max_time: float | None, elapsed: float, enabled: bool):
        self.by_time = bool(max_time)
        if self.by_time:
            self.bar = tqdm(
                total=float(max_time),
                initial=elapsed,
                desc="train",
                disable=not enabled,
                bar_format=BUDGET_BAR_FORMAT,
            )
        else:
            self.bar = tqdm(total=total_steps, initial=step, unit="step", desc="train", disable=not enabled)

    def update(self, step: int, elapsed: float, **postfix: Any) -> None:
        """Record that `step` ended `elapsed` seconds into the run, with `postfix` values to show."""
        if self.by_time:
            self.bar.update(min(elapsed, self.bar.total) - self.bar.n)
            postfix = {"step": step, **postfix}
        else:
            self.bar.update()
        self.bar.set_postfix(**postfix)

    def write(self, text: str) -> None:
        self.bar.write(text)

    def close(self) -> None:
        self.bar.close()
