"""Physical size units of masks: mL (cm³) for 3D images, cm² for 2D images."""

from __future__ import annotations

import numpy as np

from medseg.io.image import Image

#: Unit conversions: 1 mL = 1 cm³ = 1000 mm³; 1 cm² = 100 mm².
MM3_PER_ML, MM2_PER_CM2 = 1000.0, 100.0


def size_key(image: Image) -> str:
    """The key under which sizes are reported: ``"volume_ml"`` in 3D, ``"area_cm2"`` in 2D."""
    return "volume_ml" if image.ndim == 3 else "area_cm2"


def voxel_size(image: Image) -> float:
    """The size of one voxel in the unit of `size_key`: mL (cm³) in 3D, cm² in 2D."""
    return float(np.prod(image.spacing)) / (MM3_PER_ML if image.ndim == 3 else MM2_PER_CM2)
