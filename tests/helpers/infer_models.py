"""Checkpoints for inference tests: a network whose weights are set by hand to threshold intensity.

A MONAI UNet with stride 1, identity batch norm and PReLU slope 1 is a linear map; its convolutions are
set to pass the input through their centre tap, and the last one scores ``±GAIN * (x - threshold)``, so
class 1 is exactly "normalised intensity above the threshold", voxel for voxel, in 2D and 3D.
"""

from __future__ import annotations

from pathlib import Path

import torch

from medseg.checkpoint import ModelConfig, save_checkpoint

#: Plan window in HU: intensities are scaled to 0..1 over it.
WINDOW_HU = (-200.0, 300.0)
#: Voxels brighter than this (HU) are class 1.
THRESHOLD_HU = 100.0
GAIN = 20.0
CLASS_NAMES = {0: "background", 1: "bright lesion"}


def threshold_network(config: ModelConfig, threshold: float) -> torch.nn.Module:
    """Build `config` (a stride-1 UNet) and set its weights so that it thresholds its input."""
    network = config.build()
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                module.reset_parameters()
                module.reset_running_stats()
            elif isinstance(module, torch.nn.PReLU):
                module.weight.fill_(1.0)
            elif isinstance(module, torch.nn.modules.conv._ConvNd):
                module.weight.zero_()
                module.bias.zero_()
                centre = tuple(k // 2 for k in module.kernel_size)
                module.weight[(0, 0, *centre)] = 1.0
        last = [m for m in network.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)][-1]
        centre = tuple(k // 2 for k in last.kernel_size)
        last.weight.zero_()  # transposed: (in, out, ...)
        last.weight[(0, 0, *centre)] = -GAIN
        last.weight[(0, 1, *centre)] = GAIN
        last.bias.copy_(torch.tensor([GAIN * threshold, -GAIN * threshold]))
    return network.eval()


def plan(dim: int, spacing: list[float], patch: list[int], scheme: dict | None = None) -> dict:
    """A plans.json dict with a CT window normalisation (or `scheme`)."""
    return {
        "dataset": {"name": "threshold", "labels": {str(k): v for k, v in CLASS_NAMES.items()}},
        "dim": dim,
        "orientation": "RAS" if dim == 3 else None,
        "target_spacing": spacing,
        "patch_size": patch,
        "batch_size": 2,
        "pool_counts": [0] * dim,
        "normalization": [
            scheme or {"modality": "CT", "scheme": "window", "low": WINDOW_HU[0], "high": WINDOW_HU[1]}
        ],
    }


def save_threshold_checkpoint(
    path: Path,
    dim: int,
    spacing: list[float],
    patch: list[int],
    scheme: dict | None = None,
    threshold: float | None = None,
) -> Path:
    """A checkpoint of `threshold_network` with its plan; the default threshold is `THRESHOLD_HU`."""
    config = ModelConfig(
        "unet", dim, 1, 2, {"channels": [2, 2], "strides": [1], "num_res_units": 0, "norm": "batch"}
    )
    if threshold is None:
        threshold = (THRESHOLD_HU - WINDOW_HU[0]) / (WINDOW_HU[1] - WINDOW_HU[0])
    network = threshold_network(config, threshold)
    return save_checkpoint(path, network, config, plan(dim, spacing, patch, scheme), CLASS_NAMES)
