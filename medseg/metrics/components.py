"""Connected components ("lesions") of a binary mask, with one connectivity used everywhere.

Connectivity is full: two foreground voxels belong to the same component when they touch by a face, an
edge or a corner, i.e. 26-connectivity in 3D and 8-connectivity in 2D (``scipy.ndimage`` structure of
rank ``ndim``). The structure statistics, the lesion list of the report and the lesion-wise metrics all
count lesions with `label_components`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def connectivity_structure(ndim: int) -> np.ndarray:
    """The full-connectivity structuring element for `ndim` dimensions (26 in 3D, 8 in 2D)."""
    return ndimage.generate_binary_structure(ndim, ndim)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the connected components of a boolean mask: (int32 labels 1..n, 0 = background; n)."""
    labels, count = ndimage.label(np.asarray(mask, dtype=bool), structure=connectivity_structure(mask.ndim))
    return labels.astype(np.int32, copy=False), int(count)
