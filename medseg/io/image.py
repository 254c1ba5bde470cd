"""The one image type medseg passes around: a voxel array and where it sits in the patient.

World convention: **RAS+ millimetres**, as NIfTI, nibabel and MONAI use: x grows towards the patient's
Right, y towards Anterior, z towards Superior. DICOM and ITK speak LPS+; readers and writers convert at
the edges (`LPS_TO_RAS`), nowhere else.

Array layout: ``array[i, j, k]`` (or ``array[i, j]`` for 2D) is the voxel at index (i, j, k), and
``affine @ (i, j, k, 1)`` is its centre in RAS+ mm. For a DICOM series, i runs along a row (columns),
j down the columns (rows) and k through the slices. The affine is always 4×4, also for 2D images.

Two kinds, as in TorchIO: a `ScalarImage` holds intensities and is resampled with linear interpolation;
a `LabelMap` holds integer classes and is always resampled with nearest neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import nibabel.orientations
import numpy as np

#: Multiplying an LPS+ affine by this gives the RAS+ affine of the same grid (and the other way round).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(eq=False)
class Image:
    """A 2D or 3D image on a grid in RAS+ millimetres. Use `ScalarImage` or `LabelMap`."""

    array: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    #: Interpolation used whenever this image is resampled.
    interpolation: ClassVar[str] = "linear"

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {self.affine.shape}")
        if self.array.ndim not in (2, 3):
            raise ValueError(f"image array must be 2D or 3D, got shape {self.array.shape}")
        if not np.all(np.isfinite(self.affine)):
            raise ValueError("affine contains NaN or Inf")
        if np.any(self.spacing <= 0) or abs(np.linalg.det(self.affine[:3, :3])) < 1e-12:
            raise ValueError(f"affine is degenerate (spacing {tuple(self.spacing)})")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along each array axis."""
        return np.linalg.norm(self.affine[:3, : self.ndim], axis=0)

    @property
    def origin(self) -> np.ndarray:
        """RAS+ position in mm of the centre of voxel (0, 0, 0)."""
        return self.affine[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """3×3 matrix whose columns are the unit RAS+ directions of the array axes."""
        return self.affine[:3, :3] / np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def orientation(self) -> str:
        """Orientation codes of the array axes, e.g. ``"RAS"`` or ``"LPS"`` (nibabel's convention)."""
        return "".join(nibabel.orientations.aff2axcodes(self.affine)[: self.ndim])

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (3D images only)."""
        if self.ndim != 3:
            raise ValueError("a 2D image has pixel areas, not voxel volumes")
        return float(np.prod(self.spacing)) / 1000.0

    def index_to_world(self, index: np.ndarray) -> np.ndarray:
        """Map voxel indices, shape (N, ndim), to RAS+ mm, shape (N, 3)."""
        index = np.atleast_2d(np.asarray(index, dtype=np.float64))
        padded = np.zeros((index.shape[0], 4))
        padded[:, : index.shape[1]] = index
        padded[:, 3] = 1.0
        return (padded @ self.affine.T)[:, :3]

    def with_array(self, array: np.ndarray, cls: type[Image] | None = None) -> Image:
        """A new image on the same grid holding `array` (of `cls`, default the same kind)."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} does not match the grid {self.array.shape}")
        return (cls or type(self))(array, self.affine.copy(), dict(self.meta))

    def same_grid(self, other: Image, atol_mm: float = 1e-3) -> bool:
        """True when both images have the same shape and the same voxel centres (within `atol_mm`)."""
        return self.shape == other.shape and np.allclose(self.affine, other.affine, atol=atol_mm)


class ScalarImage(Image):
    """Intensities (CT in Hounsfield units, MR, X-ray); resampled with linear interpolation."""

    interpolation: ClassVar[str] = "linear"


class LabelMap(Image):
    """Integer class labels (0 = background); always resampled with nearest neighbour."""

    interpolation: ClassVar[str] = "nearest"


def grid_summary(shape: tuple[int, ...], affine: np.ndarray) -> dict[str, object]:
    """Shape, spacing, orientation codes and affine of a grid, JSON-ready."""
    spacing = np.linalg.norm(affine[:3, : len(shape)], axis=0)
    return {
        "shape": list(shape),
        "spacing": [round(float(v), 6) for v in spacing],
        "orientation_codes": "".join(nibabel.orientations.aff2axcodes(affine)[: len(shape)]),
        "affine": [[round(float(v), 6) for v in row] for row in affine],
    }
