"""Geometry checks in physical space: two images hold the same values at the same points in mm."""

from __future__ import annotations

import numpy as np


def assert_same_voxels_in_space(
    array: np.ndarray, affine: np.ndarray, other_array: np.ndarray, other_affine: np.ndarray
) -> None:
    """Every voxel of `array` (with voxel-to-mm `affine`) lands on a voxel centre of `other_array` (with
    `other_affine`) that holds the same value; both grids cover the same voxels."""
    assert array.size == other_array.size, (array.shape, other_array.shape)
    indices = np.indices(array.shape).reshape(3, -1)
    world = affine @ np.vstack([indices, np.ones(indices.shape[1])])
    theirs = np.linalg.inv(other_affine) @ world
    assert np.abs(theirs[:3] - np.round(theirs[:3])).max() < 1e-3
    i, j, k = np.round(theirs[:3]).astype(int)
    np.testing.assert_array_equal(array.reshape(-1), other_array[i, j, k])
