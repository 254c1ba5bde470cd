"""Put images on other grids in physical space: resampling (SimpleITK) and exact reorientation.

* `resample_to(image, reference)`: onto the grid of another image; nearest neighbour for a `LabelMap`
  (always), linear (or B-spline) for a `ScalarImage`. Points outside the input become 0.
* `resample_to_spacing(image, spacing)`: onto a grid with the same directions and field of view (the outer
  voxel corners stay put) and the new spacing.
* `reorient(image, codes)`: a pure permutation/flip of the array axes with the affine updated. No
  interpolation, so it is exact and ``reorient(reorient(image, "LPS"), image.orientation)`` gives
  `image` back voxel for voxel.

Resampling loses information and has no exact inverse; ``resample_to(result, original)`` brings a
result back onto the original grid (the usual way predictions return to the input image).
"""

from __future__ import annotations

from collections.abc import Sequence

import nibabel.orientations as nio
import numpy as np
import SimpleITK as sitk

from medseg.errors import GeometryError
from medseg.io.image import Image, LabelMap
from medseg.io.sitk_bridge import from_sitk, to_sitk

#: SimpleITK interpolators by name.
INTERPOLATORS = {
    "nearest": sitk.sitkNearestNeighbor,
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,
}


def _interpolator(image: Image, interpolation: str | None) -> int:
    name = interpolation or image.interpolation
    if name not in INTERPOLATORS:
        raise ValueError(f"unknown interpolation {name!r}; use one of {', '.join(INTERPOLATORS)}")
    if isinstance(image, LabelMap) and name != "nearest":
        raise ValueError(f"a LabelMap is always resampled with nearest neighbour, not {name!r}")
    return INTERPOLATORS[name]


def _resample(image: Image, reference: sitk.Image, interpolation: str | None) -> Image:
    result = sitk.Resample(
        to_sitk(image), reference, sitk.Transform(), _interpolator(image, interpolation), 0.0
    )
    out = from_sitk(result, type(image))
    out.meta = dict(image.meta)
    return out


def resample_to(image: Image, reference: Image, interpolation: str | None = None) -> Image:
    """`image` on the grid (shape and affine) of `reference`, same kind and dtype.

    `interpolation` is ``"linear"`` (default for a ScalarImage) or ``"bspline"``; a LabelMap is always
    resampled with nearest neighbour.
    """
    if image.ndim != reference.ndim:
        raise GeometryError(
            image.meta.get("source"), f"cannot resample a {image.ndim}D image onto a {reference.ndim}D grid"
        )
    grid = to_sitk(reference.with_array(np.zeros(reference.shape, dtype=np.uint8), LabelMap))
    return _resample(image, grid, interpolation)


def spacing_grid(image: Image, spacing: Sequence[float]) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of the grid with `spacing` covering the same field of view as `image`."""
    spacing = np.asarray(spacing, dtype=np.float64)
    if spacing.shape != (image.ndim,) or np.any(spacing <= 0):
        raise ValueError(f"spacing must be {image.ndim} positive numbers, got {spacing.tolist()}")
    extent = np.asarray(image.shape) * image.spacing
    shape = tuple(int(n) for n in np.maximum(1, np.round(extent / spacing)))
    affine = image.affine.copy()
    affine[:3, : image.ndim] = image.direction[:, : image.ndim] * spacing
    # Keep the corner of the first voxel in place: centre moves by half the change in voxel size.
    affine[:3, 3] = image.origin + image.direction[:, : image.ndim] @ ((spacing - image.spacing) / 2)
    return shape, affine


def resample_to_spacing(image: Image, spacing: Sequence[float], interpolation: str | None = None) -> Image:
    """`image` resampled to `spacing` (mm per array axis) over the same field of view."""
    shape, affine = spacing_grid(image, spacing)
    reference = LabelMap(np.zeros(shape, dtype=np.uint8), affine)
    return resample_to(image, reference, interpolation)


def reorient(image: Image, codes: str = "RAS") -> Image:
    """`image` with array axes permuted/flipped to orientation `codes` (e.g. ``"RAS"``, ``"LPS"``), exactly.

    For a 2D image, `codes` has two letters and must name the two in-plane axes.
    """
    codes = codes.upper()
    if len(codes) != image.ndim:
        raise ValueError(f"need {image.ndim} orientation codes for a {image.ndim}D image, got {codes!r}")
    current = nio.io_orientation(image.affine)
    array = image.array
    if image.ndim == 2:
        through_plane = nio.ornt2axcodes(current[2:])[0]
        codes += through_plane
        array = array[:, :, np.newaxis]
    target = nio.axcodes2ornt(codes)
    if np.isnan(target).any() or len(set(target[:, 0])) != 3:
        plane = " in the plane of this 2D image" if image.ndim == 2 else ""
        raise GeometryError(image.meta.get("source"), f"{codes[: image.ndim]!r} are not distinct axes{plane}")
    transform = nio.ornt_transform(current, target)
    new_array = nio.apply_orientation(array, transform)
    affine = image.affine @ nio.inv_ornt_aff(transform, array.shape)
    if image.ndim == 2:
        new_array = new_array[:, :, 0]
    return type(image)(np.ascontiguousarray(new_array), affine, dict(image.meta))
