"""A 2D network run on 3D volumes slice by slice (nnU-Net's "2d" configuration).

`SliceWise` wraps any 2D model of the zoo. Given a 3D batch ``(B, C, X, Y, Z)`` it moves its
`slice_axis` into the batch, runs the 2D network on every slice at once and puts the slices back, so
from the outside it is a 3D network: the sliding window, validation, the ensemble and the checkpoint
code treat it like any other. Given a 2D batch ``(B, C, H, W)`` (training patches, one slice each) it
is the 2D network itself, auxiliary outputs included.
"""

from __future__ import annotations

import torch
from torch import nn

#: Spatial rank of the volumes a slice-wise network takes.
VOLUME_DIMS = 3


class SliceWise(nn.Module):
    """`network` (2D) applied to each slice along spatial axis `slice_axis` (0, 1 or 2) of 3D input."""

    #: Rank of the convolutions inside (validation reads it to choose memory formats).
    convolution_dims = 2

    def __init__(self, network: nn.Module, slice_axis: int) -> None:
        super().__init__()
        if slice_axis not in range(VOLUME_DIMS):
            raise ValueError(f"slice_axis must be 0, 1 or 2, got {slice_axis!r}")
        self.network = network
        self.slice_axis = slice_axis

    def forward(self, batch: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if batch.ndim == 4:
            return self.network(batch)
        if batch.ndim != 5:
            raise ValueError(f"expected a 2D or 3D batch, got shape {tuple(batch.shape)}")
        axis = self.slice_axis + 2
        moved = batch.movedim(axis, 1)  # (B, S, C, h, w)
        count, slices = moved.shape[:2]
        flat = moved.reshape(count * slices, *moved.shape[2:]).contiguous()
        output = self.network(flat)
        if not isinstance(output, torch.Tensor):
            output = output[0]  # a 3D batch is inference (eval mode): only the main logits
        restored = output.reshape(count, slices, *output.shape[1:])
        return restored.movedim(1, axis)
