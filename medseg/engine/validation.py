"""Validation on whole volumes: sliding-window inference, then Dice per class, averaged over cases.

Volumes are compared on the plan's preprocessed grid (target spacing), as nnU-Net does during training.
Per-class Dice follows `medseg.metrics.overlap`'s empty-mask policy: a case where both prediction and
reference lack a class counts 1, one of them empty counts 0, so no case is dropped from the average.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from medseg.engine.precision import Precision
from medseg.metrics.overlap import overlap_per_class

#: Windows evaluated together during validation.
VALIDATION_SW_BATCH = 4


@torch.no_grad()
def predict_volume(
    model: torch.nn.Module,
    image: torch.Tensor,
    roi_size: Sequence[int],
    overlap: float,
    precision: Precision,
) -> np.ndarray:
    """Label map (argmax) of one channel-first image ``(C, *spatial)`` with gaussian-blended windows."""
    device = next(model.parameters()).device
    with precision.autocast():
        logits = sliding_window_inference(
            image[None].to(device),
            list(roi_size),
            VALIDATION_SW_BATCH,
            model,
            overlap=overlap,
            mode="gaussian",
        )
    return logits[0].argmax(dim=0).cpu().numpy()


def validate(
    model: torch.nn.Module,
    cases: Iterable[Mapping[str, torch.Tensor]],
    class_names: Mapping[int, str],
    roi_size: Sequence[int],
    overlap: float,
    precision: Precision,
) -> dict:
    """Case-averaged Dice per class and their mean over `cases` (dicts with ``image`` and ``label``).

    Returns ``{"mean_dice", "dice": {class: value}, "cases": [{class: dice} per case]}``.
    """
    was_training = model.training
    model.eval()
    per_case = []
    try:
        for case in cases:
            prediction = predict_volume(model, case["image"], roi_size, overlap, precision)
            reference = np.asarray(case["label"][0]).astype(np.int64)
            scores = overlap_per_class(prediction, reference, class_names)
            per_case.append({name: float(score["dice"]) for name, score in scores.items()})
    finally:
        model.train(was_training)
    names = [name for value, name in sorted(class_names.items()) if value != 0]
    dice = {name: float(np.mean([case[name] for case in per_case])) for name in names}
    return {"mean_dice": float(np.mean(list(dice.values()))), "dice": dice, "cases": per_case}
