"""`PadToDivisor`: lets a network that needs sizes divisible by 2^k accept any input size.

The input is zero-padded at the end of each spatial axis up to the next multiple of the network's
divisor (or to the fixed shape a network was built for), and every output is cropped back, so the
output always has the input's spatial shape. Zero is the mean intensity of a z-scored image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medseg.errors import ConfigError


def per_axis(value: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    """`value` repeated for each axis if it is one number, else checked to have one entry per axis."""
    values = (int(value),) * spatial_dims if isinstance(value, int) else tuple(int(v) for v in value)
    if len(values) != spatial_dims:
        raise ConfigError(f"expected {spatial_dims} values (one per axis), got {value!r}")
    return values


def stride_product(strides: Sequence[int | Sequence[int]], spatial_dims: int) -> tuple[int, ...]:
    """Per-axis product of a list of strides (each one number or one per axis): the total downsampling."""
    total = [1] * spatial_dims
    for stride in strides:
        total = [t * s for t, s in zip(total, per_axis(stride, spatial_dims), strict=True)]
    return tuple(total)


class PadToDivisor(nn.Module):
    """Wraps `network`: pads inputs to a multiple of `divisor` (or to `fixed_shape`) and crops outputs back.

    It also enforces the output contract of `medseg.models.outputs`: in eval mode the result is always
    one logits tensor; in training mode a network with auxiliary heads gives a tuple, main output first.
    """

    def __init__(
        self,
        network: nn.Module,
        divisor: Sequence[int],
        fixed_shape: Sequence[int] | None = None,
        name: str = "model",
    ) -> None:
        super().__init__()
        self.network = network
        self.divisor = tuple(int(d) for d in divisor)
        self.fixed_shape = None if fixed_shape is None else tuple(int(s) for s in fixed_shape)
        self.name = name

    def padded_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The spatial shape the network actually sees for an input of spatial `shape`."""
        if len(shape) != len(self.divisor):
            raise ConfigError(
                f"{self.name} expects {len(self.divisor)} spatial axes, got spatial shape {tuple(shape)}"
            )
        if self.fixed_shape is None:
            return tuple(math.ceil(n / d) * d for n, d in zip(shape, self.divisor, strict=True))
        if any(n > f for n, f in zip(shape, self.fixed_shape, strict=True)):
            raise ConfigError(
                f"{self.name} was built for inputs up to {self.fixed_shape}, got {tuple(shape)}; "
                f"build it with img_size >= the input size (a multiple of {self.divisor})"
            )
        return self.fixed_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        shape = tuple(x.shape[2:])
        target = self.padded_shape(shape)
        padding: list[int] = []
        for n, t in zip(reversed(shape), reversed(target), strict=True):
            padding += [0, t - n]
        if any(padding):
            x = F.pad(x, padding)
        outputs = self.network(x)
        crop = (slice(None), slice(None), *(slice(0, n) for n in shape))
        if isinstance(outputs, torch.Tensor):
            return outputs[crop]
        if not self.training:
            return outputs[0][crop]
        return tuple(output[crop] for output in outputs)
