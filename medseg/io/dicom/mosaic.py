"""Siemens mosaics: the slices of one volume tiled in a grid inside one image (ImageType MOSAIC).

Siemens EPI (fMRI, diffusion) stores each volume as one 2D image whose tiles are the slices, row by row
in a square grid of ``ceil(sqrt(n))`` tiles a side. The private CSA image header says how many tiles
hold slices (``NumberOfImagesInMosaic``) and the slice normal (``SliceNormalVector``); nibabel's CSA
reader parses it. ImagePositionPatient gives the top-left corner of the *whole* mosaic as if it were one
slice, so the first slice's position is moved by half the difference between the mosaic and a tile
along the row and column directions (the correction dcm2niix and nibabel apply). Slice k then lies
k x SpacingBetweenSlices (or SliceThickness) along the normal.

Each tile becomes one `Frame`, so a mosaic file reads like a multi-frame one: `medseg.io.dicom.geometry`
stacks and checks the slices, and a series of mosaics (one per time point) stacks its volumes.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pydicom

from medseg.errors import InputError
from medseg.io.dicom.values import integer, number, text

if TYPE_CHECKING:
    from medseg.io.dicom.frames import Frame

#: The ImageType value that marks a mosaic.
MOSAIC = "MOSAIC"


@dataclass(frozen=True)
class MosaicLayout:
    """How the slices sit in the mosaic: their number, the grid side, one tile's size, the slice normal
    (LPS, unit length) and the distance between slices (mm)."""

    slices: int
    grid: int
    tile_rows: int
    tile_columns: int
    normal: np.ndarray
    slice_spacing: float


def is_mosaic(ds: pydicom.Dataset) -> bool:
    """Whether ImageType marks `ds` as a Siemens mosaic."""
    return MOSAIC in text(ds, "ImageType").upper().replace("\\", " ").split()


def mosaic_layout(ds: pydicom.Dataset, path: Path) -> MosaicLayout:
    """The tiling of mosaic `ds`, from its CSA header; an `InputError` naming `path` when it is missing
    or does not fit the image."""
    with warnings.catch_warnings():  # nibabel warns that its DICOM readers are experimental on import
        warnings.simplefilter("ignore")
        from nibabel.nicom import csareader
    try:
        header = csareader.get_csa_header(ds, "image")
    except (csareader.CSAError, ValueError, TypeError, KeyError, IndexError) as error:
        raise InputError(path, f"a Siemens mosaic whose CSA header cannot be read ({error})") from None
    count = csareader.get_n_mosaic(header) if header else None
    if not isinstance(count, (int, np.integer)) or count < 1:
        raise InputError(path, "a Siemens mosaic without NumberOfImagesInMosaic: its slices are unknown")
    rows, columns = integer(ds, "Rows"), integer(ds, "Columns")
    grid = math.ceil(math.sqrt(int(count)))
    if rows % grid or columns % grid or rows < grid or columns < grid:  # dcm2niix and nibabel disagree
        raise InputError(path, f"a {rows}x{columns} mosaic is not a {grid}x{grid} grid of whole slices")
    tile_rows, tile_columns = rows // grid, columns // grid
    spacing = number(ds, "SpacingBetweenSlices") or number(ds, "SliceThickness")
    if spacing is None or spacing <= 0:
        raise InputError(path, "a Siemens mosaic without SpacingBetweenSlices or SliceThickness")
    normal = csareader.get_slice_normal(header)
    if normal is None:
        orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
        normal = np.cross(orientation[:3], orientation[3:])
    normal = np.asarray(normal, dtype=np.float64)
    if normal.shape != (3,) or not np.isfinite(normal).all() or np.linalg.norm(normal) < 0.5:
        raise InputError(path, f"a Siemens mosaic with slice normal {normal.tolist()}")
    return MosaicLayout(int(count), grid, tile_rows, tile_columns, normal / np.linalg.norm(normal), spacing)


def mosaic_frames(mosaic: Frame, ds: pydicom.Dataset) -> list[Frame]:
    """One frame per slice of the mosaic whose whole-image frame is `mosaic`."""
    layout = mosaic_layout(ds, mosaic.path)
    row_direction, column_direction = mosaic.orientation[:3], mosaic.orientation[3:]
    row_spacing, column_spacing = mosaic.pixel_spacing
    first = (
        mosaic.position
        + row_direction * column_spacing * (mosaic.columns - layout.tile_columns) / 2
        + column_direction * row_spacing * (mosaic.rows - layout.tile_rows) / 2
    )
    return [
        dataclasses.replace(
            mosaic,
            index=k,
            multi_frame=True,
            position=first + k * layout.slice_spacing * layout.normal,
            rows=layout.tile_rows,
            columns=layout.tile_columns,
            slice_thickness=mosaic.slice_thickness,
        )
        for k in range(layout.slices)
    ]


def untile(image: np.ndarray, layout: MosaicLayout) -> np.ndarray:
    """The slices of one mosaic image ``(rows, columns)`` as ``(slices, tile_rows, tile_columns)``."""
    tiles = [
        image[
            (k // layout.grid) * layout.tile_rows : (k // layout.grid + 1) * layout.tile_rows,
            (k % layout.grid) * layout.tile_columns : (k % layout.grid + 1) * layout.tile_columns,
        ]
        for k in range(layout.slices)
    ]
    return np.stack(tiles)
