"""Conversion between medseg images and MONAI `MetaTensor`s (channel first, RAS+ affine).

Both sides use the same convention: ``tensor[c, i, j, k]`` is voxel (i, j, k) of channel c and the 4×4
affine maps (i, j, k) to RAS+ mm (MONAI's default space), so conversion copies no geometry maths.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import to_affine_nd
from monai.utils import SpaceKeys

from medseg.io.image import Image, LabelMap, ScalarImage
from medseg.io.sitk_bridge import as_label


def image_to_metatensor(images: Image | Sequence[Image]) -> MetaTensor:
    """A channel-first MetaTensor from one image or several channels on the same grid."""
    channels = [images] if isinstance(images, Image) else list(images)
    first = channels[0]
    for other in channels[1:]:
        if not other.same_grid(first):
            raise ValueError("channels must share one grid to be stacked")
    array = np.stack([channel.array for channel in channels])
    meta = {"space": SpaceKeys.RAS, "original_affine": first.affine.copy()}
    if "source" in first.meta:
        meta["filename_or_obj"] = first.meta["source"]
    return MetaTensor(torch.from_numpy(array), affine=torch.from_numpy(first.affine.copy()), meta=meta)


def metatensor_to_image(tensor: MetaTensor, kind: type[Image] = ScalarImage, channel: int = 0) -> Image:
    """One channel of a channel-first MetaTensor as a medseg image of `kind` (affine as RAS+).

    A `LabelMap` gets an integer array (MONAI keeps labels as floats); non-integer values are refused.
    """
    if str(tensor.meta.get("space", SpaceKeys.RAS)) != str(SpaceKeys.RAS):
        raise ValueError(f"expected a RAS MetaTensor, got space {tensor.meta.get('space')}")
    array = tensor[channel].detach().cpu().numpy()
    affine = to_affine_nd(3, np.asarray(tensor.affine.detach().cpu().numpy(), dtype=np.float64))
    image = ScalarImage(np.ascontiguousarray(array), affine)
    return as_label(image) if kind is LabelMap else image.with_array(image.array, kind)
