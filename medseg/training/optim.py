"""Loss, optimiser and learning-rate schedule of a training run.

* Loss: Dice + cross-entropy or Dice + focal (MONAI), summed over the model's outputs with deep
  supervision weights (`medseg.models.auxiliary_weights`: 1, 1/2, 1/4... normalised) when the model
  returns several (`medseg.models.deep_supervision_outputs`).
* Optimisers: SGD with Nesterov momentum (nnU-Net) or AdamW.
* Schedules: poly decay ``(1 - progress) ** 0.9`` (nnU-Net), cosine, or constant, where progress runs
  from 0 to 1 over whichever budget ends first: the planned steps or the wall-clock time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.losses import DiceCELoss, DiceFocalLoss

from medseg.errors import ConfigError
from medseg.models import auxiliary_weights, deep_supervision_outputs

#: Exponent of the poly learning-rate decay (nnU-Net's value).
POLY_EXPONENT = 0.9


class SegmentationLoss(torch.nn.Module):
    """Dice + CE (or focal) of logits against an integer label map, over all deep-supervision outputs."""

    def __init__(
        self,
        kind: str = "dice_ce",
        weights: Sequence[float] | None = None,
        batch_dice: bool = False,
        dice_background: bool = True,
    ):
        super().__init__()
        dice = dict(to_onehot_y=True, softmax=True, batch=batch_dice, include_background=dice_background)
        if kind == "dice_ce":
            self.loss = DiceCELoss(**dice)
        elif kind == "dice_focal":
            self.loss = DiceFocalLoss(**dice)
        else:
            raise ConfigError(f"unknown loss {kind!r}; use dice_ce or dice_focal")
        self.weights = None if weights is None else list(weights)

    def forward(self, output: torch.Tensor | Sequence[torch.Tensor], label: torch.Tensor) -> torch.Tensor:
        outputs = deep_supervision_outputs(output)
        weights = self.weights or auxiliary_weights(len(outputs))
        if len(weights) != len(outputs):
            raise ConfigError(
                f"deep_supervision_weights has {len(weights)} values, the model gives {len(outputs)}"
            )
        return sum(w * self.loss(o.float(), label) for w, o in zip(weights, outputs, strict=True) if w)


def make_optimizer(
    parameters, kind: str, learning_rate: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW over `parameters`."""
    if kind == "sgd":
        return torch.optim.SGD(
            parameters, lr=learning_rate, momentum=momentum, nesterov=True, weight_decay=weight_decay
        )
    if kind == "adamw":
        return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {kind!r}; use sgd or adamw")


def schedule_factor(kind: str, progress: float) -> float:
    """Learning-rate multiplier at `progress` (0 at the start, 1 at the end of the budget)."""
    progress = min(1.0, max(0.0, progress))
    if kind == "poly":
        return (1.0 - progress) ** POLY_EXPONENT
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "constant":
        return 1.0
    raise ConfigError(f"unknown schedule {kind!r}; use poly, cosine or constant")


def set_learning_rate(optimizer: torch.optim.Optimizer, base: float, kind: str, progress: float) -> float:
    """Set every parameter group's learning rate for `progress`; return it."""
    rate = base * schedule_factor(kind, progress)
    for group in optimizer.param_groups:
        group["lr"] = rate
    return rate
