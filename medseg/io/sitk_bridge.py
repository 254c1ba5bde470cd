"""Conversion between `medseg.io.image.Image` and SimpleITK images (LPS+ on the ITK side)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from medseg.io.image import LPS_TO_RAS, Image, LabelMap, ScalarImage


def affine_from_sitk(image: sitk.Image) -> np.ndarray:
    """RAS+ 4×4 affine of a 2D or 3D SimpleITK image."""
    ndim = image.GetDimension()
    direction = np.array(image.GetDirection()).reshape(ndim, ndim)
    lps = np.eye(4)
    lps[:ndim, :ndim] = direction * np.array(image.GetSpacing())
    lps[:ndim, 3] = image.GetOrigin()
    return LPS_TO_RAS @ lps


def from_sitk(image: sitk.Image, cls: type[Image] = ScalarImage) -> Image:
    """Wrap a SimpleITK image as a medseg image (array axes reversed to (i, j, k))."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"expected a single-component image, got {image.GetNumberOfComponentsPerPixel()}")
    array = sitk.GetArrayFromImage(image).transpose()
    return cls(np.ascontiguousarray(array), affine_from_sitk(image))


def to_sitk(image: Image) -> sitk.Image:
    """A SimpleITK image with the same voxels and physical geometry."""
    ndim = image.ndim
    lps = LPS_TO_RAS @ image.affine
    if ndim == 2 and not np.allclose(lps[2, :2], 0):
        raise ValueError("a 2D image whose axes leave the x-y plane cannot be written as 2D ITK")
    array = image.array.astype(np.uint8) if image.array.dtype == bool else image.array
    out = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose()))
    out.SetSpacing([float(s) for s in image.spacing])
    out.SetOrigin([float(v) for v in lps[:ndim, 3]])
    out.SetDirection([float(v) for v in (lps[:ndim, :ndim] / image.spacing).ravel()])
    return out


def as_label(image: Image) -> LabelMap:
    """The same grid and voxels, typed as a label map with an integer array."""
    array = image.array
    if not np.issubdtype(array.dtype, np.integer):
        rounded = np.rint(array)
        if not np.allclose(array, rounded):
            raise ValueError("label values must be whole numbers")
        array = rounded.astype(np.int16 if rounded.max(initial=0) > 255 else np.uint8)
    return LabelMap(array, image.affine.copy(), dict(image.meta))
