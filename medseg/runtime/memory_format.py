"""Channels-last memory format: where it pays, and the format for a network's spatial rank.

Channels-last lets oneDNN and cuDNN pick their fastest convolution kernels, but not everywhere. On
this project's 2-core AVX2 CPU a 3D step was 25-35% faster in channels-last (a `dynunet` 8-64 training
step on 32×48×32: 0.69 s against 0.94 s), while 2D steps were 30% *slower* (a `unet` 16-256 training
step on 256²: 0.83 s against 0.63 s). GPUs gain in both. ``auto`` follows those measurements.
"""

from __future__ import annotations

import torch

from medseg.errors import ConfigError

#: What a user may ask for: always, never, or ``auto`` (`wants_channels_last`).
CHOICES = ("auto", True, False)


def check_setting(setting: bool | str) -> None:
    """Refuse anything but the `CHOICES`."""
    if setting not in CHOICES:
        raise ConfigError(f"channels_last must be auto, true or false, got {setting!r}")


def wants_channels_last(setting: bool | str, device: str | torch.device, spatial_dims: int) -> bool:
    """Whether to run in channels-last: `setting` itself, or for ``auto`` GPUs and 3D on CPUs."""
    check_setting(setting)
    if setting != "auto":
        return bool(setting)
    return torch.device(device).type == "cuda" or spatial_dims == 3


def channels_last_format(spatial_dims: int) -> torch.memory_format:
    """The channels-last format of a batch with `spatial_dims` spatial axes (2D or 3D)."""
    if spatial_dims not in (2, 3):
        raise ConfigError(f"channels-last needs 2 or 3 spatial dimensions, got {spatial_dims}")
    return torch.channels_last_3d if spatial_dims == 3 else torch.channels_last
