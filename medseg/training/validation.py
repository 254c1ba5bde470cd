"""Validation on whole volumes: sliding-window inference, then Dice per class, averaged over cases.

Windows are stitched by inference's own `medseg.inference.sliding_window.segment` (gaussian blending),
so a validation figure is what deployment gives on the same grid, as nnU-Net validates with its
predictor. Volumes are compared on the plan's preprocessed grid (target spacing), as nnU-Net does
during training.
Per-class Dice follows `medseg.metrics.overlap`'s empty-mask policy: a case where both prediction and
reference lack a class counts 1, one of them empty counts 0, so no case is dropped from the average.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from monai.data import MetaTensor

from medseg.inference.sliding_window import WindowSettings, segment
from medseg.metrics.overlap import overlap_per_class
from medseg.runtime.distributed import unwrap
from medseg.runtime.precision import Precision

#: Windows evaluated together during validation.
VALIDATION_SW_BATCH = 4


@torch.no_grad()
def predict_volume(
    model: torch.nn.Module,
    image: torch.Tensor,
    roi_size: Sequence[int],
    overlap: float,
    precision: Precision,
    channels_last: bool = False,
) -> np.ndarray:
    """Label map (argmax) of one channel-first image ``(C, *spatial)`` with gaussian-blended windows.

    `channels_last` says in which memory format the network is (inputs follow it). A DDP or compiled
    wrapper is looked through: only rank 0 validates, so a DDP forward would wait for the others."""
    network = unwrap(model)
    settings = WindowSettings(
        roi_size=tuple(roi_size),
        overlap=overlap,
        batch_size=VALIDATION_SW_BATCH,
        precision=precision.name,
        channels_last=channels_last,
        network_dims=getattr(network, "convolution_dims", None),  # a 2D network on slices: 2
        device=str(next(network.parameters()).device),
    )
    voxels = image.as_tensor() if isinstance(image, MetaTensor) else image
    return segment([network], voxels, settings).numpy()


def validate(
    model: torch.nn.Module,
    cases: Iterable[Mapping[str, torch.Tensor]],
    class_names: Mapping[int, str],
    roi_size: Sequence[int],
    overlap: float,
    precision: Precision,
    channels_last: bool = False,
) -> dict:
    """Case-averaged Dice per class and their mean over `cases` (dicts with ``image`` and ``label``).

    Returns ``{"mean_dice", "dice": {class: value}, "cases": [{class: dice} per case]}``.
    """
    was_training = model.training
    model.eval()
    per_case = []
    try:
        for case in cases:
            prediction = predict_volume(model, case["image"], roi_size, overlap, precision, channels_last)
            reference = np.asarray(case["label"][0]).astype(np.int64)
            scores = overlap_per_class(prediction, reference, class_names)
            per_case.append({name: float(score["dice"]) for name, score in scores.items()})
    finally:
        model.train(was_training)
    names = [name for value, name in sorted(class_names.items()) if value != 0]
    dice = {name: float(np.mean([case[name] for case in per_case])) for name in names}
    return {"mean_dice": float(np.mean(list(dice.values()))), "dice": dice, "cases": per_case}
