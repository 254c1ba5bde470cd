"""A patch-based training loop for 2D and 3D segmentation on the CPU or one GPU.

Patches are sampled with foreground oversampling (a third of them centred on labelled voxels, as
nnU-Net does), the loss is Dice + cross-entropy, the optimiser AdamW with poly decay, and the precision
is `medseg.engine.precision`'s (``auto``: bf16 where the hardware runs it natively, else float32).
Training stops after `max_steps` or `max_seconds`, whichever comes first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.losses import DiceCELoss
from monai.transforms import Compose, RandCropByPosNegLabeld, SpatialPadd
from tqdm import tqdm

from medseg.engine.precision import resolve_precision

logger = logging.getLogger(__name__)

#: Share of patches centred on a foreground voxel (nnU-Net samples a third around foreground).
FOREGROUND_FRACTION = 1 / 3
#: Exponent of the poly learning-rate decay (nnU-Net's value).
POLY_EXPONENT = 0.9


@dataclass
class TrainConfig:
    """What one training run does. Times are in seconds."""

    patch_size: tuple[int, ...]
    batch_size: int = 2
    max_steps: int = 10_000
    max_seconds: float = float("inf")
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    #: auto, bf16 or fp32 (see `medseg.engine.precision`).
    precision: str = "auto"
    seed: int = 0
    device: str = "cpu"


@dataclass
class TrainResult:
    """Loss per step and the wall time the run took."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def steps(self) -> int:
        return len(self.losses)


def patch_loader(samples: Sequence[dict[str, np.ndarray]], config: TrainConfig) -> DataLoader:
    """Endless-enough loader of random patches from in-memory ``{"image", "label"}`` samples.

    Arrays are channel-first: image (C, *spatial) float32, label (1, *spatial) integer.
    """
    crop = Compose(
        [
            SpatialPadd(keys=("image", "label"), spatial_size=config.patch_size),
            RandCropByPosNegLabeld(
                keys=("image", "label"),
                label_key="label",
                spatial_size=config.patch_size,
                pos=FOREGROUND_FRACTION,
                neg=1 - FOREGROUND_FRACTION,
                num_samples=1,
            ),
        ]
    )
    crop.set_random_state(seed=config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    dataset = Dataset(list(samples), transform=crop)
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=generator, num_workers=0)


def _set_poly_learning_rate(optimiser: torch.optim.Optimizer, config: TrainConfig, step: int, seconds: float):
    """nnU-Net's poly decay over whichever budget (steps or seconds) runs out first."""
    progress = min(1.0, max(step / config.max_steps, seconds / config.max_seconds))
    for group in optimiser.param_groups:
        group["lr"] = config.learning_rate * (1.0 - progress) ** POLY_EXPONENT


def train(
    model: torch.nn.Module,
    samples: Sequence[dict[str, np.ndarray]],
    config: TrainConfig,
    progress: bool = True,
) -> TrainResult:
    """Train `model` in place on patches of `samples`; return the loss history."""
    torch.manual_seed(config.seed)
    model.to(config.device).train()
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    loader = patch_loader(samples, config)
    precision = resolve_precision(config.precision, config.device)
    result = TrainResult()
    start = time.perf_counter()
    bar = tqdm(total=config.max_steps, desc="training", unit="step", disable=not progress)
    while result.steps < config.max_steps and time.perf_counter() - start < config.max_seconds:
        for batch in loader:
            image = batch["image"].to(config.device)
            label = batch["label"].to(config.device)
            optimiser.zero_grad(set_to_none=True)
            with precision.autocast():
                loss = loss_function(model(image).float(), label)
            loss.backward()
            optimiser.step()
            _set_poly_learning_rate(optimiser, config, result.steps + 1, time.perf_counter() - start)
            result.losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{result.losses[-1]:.3f}")
            if result.steps >= config.max_steps or time.perf_counter() - start >= config.max_seconds:
                break
    bar.close()
    result.seconds = time.perf_counter() - start
    logger.info(
        "trained %d steps in %.0f s, final loss %.3f", result.steps, result.seconds, result.losses[-1]
    )
    return result
