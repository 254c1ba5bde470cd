"""The two documented repairs of a slice stack: undoing gantry tilt and making slice spacing uniform.

Both resample with linear interpolation and return float32 values. Voxels that fall outside the
acquired data are filled with the smallest value of the stack (air for CT).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medseg.io.dicom.geometry import Stack


def remove_tilt(slices: np.ndarray, stack: Stack) -> np.ndarray:
    """Shift each slice (array shape (slices, rows, columns)) in-plane onto the untilted, orthogonal grid."""
    row_dir, col_dir = stack.frames[0].orientation[:3], stack.frames[0].orientation[3:]
    row_spacing, col_spacing = stack.frames[0].pixel_spacing
    fill = float(slices.min())
    out = np.empty(slices.shape, dtype=np.float32)
    for k, shift in enumerate(stack.in_plane_shift):
        pixel_shift = (shift @ col_dir / row_spacing, shift @ row_dir / col_spacing)
        ndimage.shift(slices[k].astype(np.float32), pixel_shift, output=out[k], order=1, cval=fill)
    stack.in_plane_shift = np.zeros_like(stack.in_plane_shift)
    return out


def uniform_spacing(slices: np.ndarray, stack: Stack) -> np.ndarray:
    """Interpolate the slices at uniform positions from the first to the last, at the smallest step.

    Updates the stack's positions and the slice column of its affine.
    """
    positions = stack.positions
    step = float(np.min(np.diff(positions)))
    count = round((positions[-1] - positions[0]) / step) + 1
    targets = np.linspace(positions[0], positions[-1], count)
    upper = np.clip(np.searchsorted(positions, targets, side="right"), 1, len(positions) - 1)
    lower = upper - 1
    weight = ((targets - positions[lower]) / (positions[upper] - positions[lower])).astype(np.float32)
    out = np.empty((count, *slices.shape[1:]), dtype=np.float32)
    for k in range(count):
        out[k] = (1 - weight[k]) * slices[lower[k]] + weight[k] * slices[upper[k]]
    stack.positions = targets
    stack.affine_lps[:3, 2] = stack.frames[0].normal * (targets[1] - targets[0])
    return out
