"""Perturbations of real label maps used as stand-in predictions in the metric tests."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medseg.io.image import LabelMap


def eroded(mask: LabelMap, voxels: tuple[int, ...]) -> LabelMap:
    """Every label shrunk by a grey erosion of the given size (labels touching background recede)."""
    return mask.with_array(ndimage.grey_erosion(mask.array, size=voxels).astype(mask.array.dtype))


def shifted(mask: LabelMap, voxels: int, axis: int) -> LabelMap:
    """The label map moved by `voxels` along `axis` (zeros enter at the edge)."""
    array = np.roll(mask.array, voxels, axis=axis)
    edge = [slice(None)] * mask.ndim
    edge[axis] = slice(0, voxels) if voxels > 0 else slice(voxels, None)
    array[tuple(edge)] = 0
    return mask.with_array(array)
