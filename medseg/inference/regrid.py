"""Linear interpolation between two grids whose axes are parallel: scores back onto the source image.

The plan's preprocessing only turns axes (reorientation: flips and swaps) and changes the spacing,
so every axis of the image grid lies along one axis of the plan grid, and a voxel index ``i`` on that
image axis lands at ``scale * i + shift`` on the plan axis. Trilinear interpolation is then three
one-dimensional ones, one axis after the other, each a gather of two neighbours and a weighted sum.
That is what MONAI's inverse of ``Spacingd`` (an affine grid and ``grid_sample`` with border
padding) computes, without the whole-image coordinate grid it builds for every channel: a 15-class
512×512×300 CT takes seconds instead of minutes.

`AxisAlignedInterpolator.between(...)` reads the index map from the two affines (world coordinates,
nothing assumed about the pipeline) and returns None when the grids are not parallel.
`labels(scores)` interpolates every class slab by slab along the image's last axis and keeps each
slab's argmax, so memory stays at a few slabs whatever the image size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: An index map whose linear part has entries this close to zero is axis-aligned.
ALIGNMENT_TOLERANCE = 1e-6
#: Interpolated values (classes × voxels) held at once while labelling a slab.
SLAB_ELEMENTS = 2**24


@dataclass(frozen=True)
class AxisStep:
    """Interpolation along one image axis: the source axis it lies on, and for each target index the
    two source neighbours and the weight of the upper one."""

    source_axis: int
    lower: torch.Tensor
    upper: torch.Tensor
    weight: torch.Tensor


class AxisAlignedInterpolator:
    """Linear interpolation (border padding) of channel-first volumes from one grid onto a parallel one."""

    def __init__(self, steps: Sequence[AxisStep], target_shape: Sequence[int]):
        self.steps, self.target_shape = list(steps), tuple(target_shape)

    @classmethod
    def between(
        cls,
        source_affine: np.ndarray,
        source_shape: Sequence[int],
        target_affine: np.ndarray,
        target_shape: Sequence[int],
    ) -> AxisAlignedInterpolator | None:
        """The interpolator from the grid (`source_affine`, `source_shape`) onto the target grid, or None
        if some target axis does not lie along a single source axis. Affines are 4×4 (also in 2D)."""
        ndim = len(target_shape)
        source_affine, target_affine = np.asarray(source_affine, float), np.asarray(target_affine, float)
        index_map = np.linalg.inv(source_affine) @ target_affine  # target voxel -> source voxel
        linear, shift = index_map[:3, :ndim], index_map[:3, 3]
        if np.any(np.abs(shift[ndim:]) > ALIGNMENT_TOLERANCE):  # a 2D target off the source's plane
            return None
        steps = []
        for axis in range(ndim):
            column = np.abs(linear[:, axis])
            source_axis = int(column.argmax())
            off_axis = np.delete(column, source_axis).max()
            if source_axis >= ndim or off_axis > ALIGNMENT_TOLERANCE * column.max():
                return None
            size = int(source_shape[source_axis])
            positions = linear[source_axis, axis] * np.arange(target_shape[axis]) + shift[source_axis]
            positions = np.clip(positions, 0, size - 1)  # border padding
            lower = np.floor(positions)
            steps.append(
                AxisStep(
                    source_axis,
                    torch.from_numpy(lower.astype(np.int64)),
                    torch.from_numpy(np.minimum(lower + 1, size - 1).astype(np.int64)),
                    torch.from_numpy((positions - lower).astype(np.float32)),
                )
            )
        if sorted(step.source_axis for step in steps) != list(range(ndim)):
            return None
        return cls(steps, target_shape)

    def __call__(self, volume: torch.Tensor) -> torch.Tensor:
        """`volume` (channels, *source spatial) on the target grid, as float32."""
        work = self._layout(volume)
        slab = self._slab_depth(volume.shape[0])
        slabs = [self._slab(work, first, first + slab) for first in range(0, self.target_shape[-1], slab)]
        return torch.cat(slabs, dim=1).movedim(1, -1).contiguous()

    def labels(self, scores: torch.Tensor) -> torch.Tensor:
        """Argmax over classes of `scores` (classes, *source spatial) interpolated onto the target grid,
        as uint8 (int16 beyond 256 classes), computed slab by slab."""
        classes = scores.shape[0]
        dtype = torch.uint8 if classes <= 256 else torch.int16
        work = self._layout(scores)
        slab = self._slab_depth(classes)
        slabs = [
            self._slab(work, first, first + slab).max(dim=0).indices.to(dtype)
            for first in range(0, self.target_shape[-1], slab)
        ]
        return torch.cat(slabs, dim=0).movedim(0, -1).contiguous()

    def _layout(self, volume: torch.Tensor) -> torch.Tensor:
        """`volume` copied with its axes in target order, except that the one under the target's last
        axis comes first: a slab of target slices then reads whole contiguous planes."""
        order = [self.steps[-1].source_axis] + [step.source_axis for step in self.steps[:-1]]
        return volume.permute(0, *(axis + 1 for axis in order)).contiguous()

    def _slab_depth(self, channels: int) -> int:
        """Target slices per slab, so that a slab holds about `SLAB_ELEMENTS` values."""
        return max(1, SLAB_ELEMENTS // (channels * math.prod(self.target_shape[:-1])))

    def _slab(self, work: torch.Tensor, first: int, last: int) -> torch.Tensor:
        """Target slices ``first:last`` of the last axis from `work` (see `_layout`), as float32 with
        that axis first: (channels, slices, *other target axes)."""
        *others, deepest = self.steps
        result = _interpolate(
            work, 1, deepest.lower[first:last], deepest.upper[first:last], deepest.weight[first:last]
        )
        # Innermost axis first, while the array is smallest; later axes copy whole rows.
        for axis in reversed(range(len(others))):
            step = others[axis]
            result = _interpolate(result, axis + 2, step.lower, step.upper, step.weight)
        return result


def _interpolate(
    volume: torch.Tensor, dim: int, lower: torch.Tensor, upper: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Linear interpolation of the contiguous `volume` along `dim` between its entries `lower` and
    `upper` (`weight` on the upper one), as float32."""
    shape = list(volume.shape)
    rows, size, inner = math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1 :])
    both = torch.cat([lower, upper])
    if inner == 1:  # the innermost axis: an element gather (`index_select` there is 10× slower)
        flat = volume.view(rows, size)
        picked = torch.gather(flat, 1, both.expand(rows, -1)).view(rows, 2, -1)
    else:  # an outer axis: whole rows are copied
        picked = volume.view(rows, size, inner).index_select(1, both).view(rows, 2, -1, inner)
    result = torch.empty(picked[:, 0].shape, dtype=torch.float32)  # contiguous, whatever `picked` is
    result.copy_(picked[:, 0])
    result.lerp_(picked[:, 1].float(), weight.view(-1, *([1] * (result.ndim - 2))))
    shape[dim] = len(lower)
    return result.view(shape)
