"""Build small DICOM series on disk for tests: written by medseg's writer, then edited with pydicom."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom

from medseg.io.dicom.writer import write_dicom_series
from medseg.io.image import ScalarImage

#: A small oblique-free CT grid: 24 x 20 pixels, 6 slices, 0.8 x 0.7 mm in-plane, 2.5 mm slices.
SHAPE = (24, 20, 6)


def ct_image(
    shape: tuple[int, int, int] = SHAPE, affine: np.ndarray | None = None, seed: int = 0
) -> ScalarImage:
    """A random CT-like image (whole HU values) on a grid with distinct spacings and an offset origin."""
    rng = np.random.default_rng(seed)
    array = rng.integers(-1000, 1500, size=shape).astype(np.float32)
    if affine is None:
        affine = np.diag([-0.8, -0.7, 2.5, 1.0])
        affine[:3, 3] = [40.0, 25.0, -60.0]
    return ScalarImage(array, affine)


def write_series(image: ScalarImage, folder: Path, modality: str = "CT") -> list[Path]:
    return write_dicom_series(image, folder, modality=modality)


def edit(paths: list[Path], change: Callable[[int, pydicom.Dataset], None]) -> None:
    """Apply `change(slice_index, dataset)` to each written slice file and save it in place."""
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        change(k, ds)
        ds.save_as(path)


def shuffle_names(paths: list[Path], seed: int = 1) -> list[Path]:
    """Rename the files to a random permutation of opaque names; returns the new paths in slice order."""
    order = np.random.default_rng(seed).permutation(len(paths))
    renamed = [p.with_name(f"tmp_{i}") for i, p in enumerate(paths)]
    for path, temporary in zip(paths, renamed, strict=True):
        path.rename(temporary)
    final = [p.with_name(f"IM{order[i]:05d}") for i, p in enumerate(paths)]
    for temporary, target in zip(renamed, final, strict=True):
        temporary.rename(target)
    return final
