"""2D PNG and JPEG images and masks (chest X-rays, microscopy, masks drawn in image editors).

Array layout follows `medseg.io.image`: ``array[i, j]`` with i along a row (the column index) and j down
the image (the row index). PIL and numpy give ``(row, column)``, so the medseg array is the transpose of
``np.asarray(PIL.Image.open(path))``.

Geometry: a PNG carries none. medseg uses the same grid SimpleITK gives a PNG: origin 0, the given pixel
spacing (1 mm unless told) and an identity direction in ITK's LPS+ world, i.e. in RAS+ the affine
``diag(-sx, -sy, 1, 1)``: i (columns) points to patient Left, j (rows) to Posterior. The plane is not
anatomical; it only makes 2D images, masks and predictions agree with each other and with SimpleITK.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL.Image

from medseg.errors import InputError
from medseg.io.image import LPS_TO_RAS, Image, LabelMap, ScalarImage
from medseg.utils.atomic import atomic_path

log = logging.getLogger(__name__)

#: File endings read by `read_png` (PIL reads them; JPEG is lossy, so binarise JPEG masks).
PNG_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Anti-aliased 8-bit masks (resized with interpolation) are foreground where value > this.
#: The chest X-ray masks in cxr_lung_mc_shenzhen document exactly this threshold.
MASK_THRESHOLD = 127
#: Alpha value meaning fully opaque in 8-bit RGBA/LA images.
OPAQUE_ALPHA = 255
#: PIL modes whose values are kept as they are (8-bit, 16-bit, 32-bit integer, float, 1-bit).
_SINGLE_CHANNEL_MODES = {"L", "I;16", "I;16B", "I;16L", "I", "F", "1"}


def is_png_file(path: str | os.PathLike) -> bool:
    """True when the file name ends in one of `PNG_SUFFIXES`."""
    return str(path).lower().endswith(PNG_SUFFIXES)


def png_affine(spacing: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """The RAS+ affine medseg gives a 2D image file with this pixel spacing (column, row) in mm."""
    return LPS_TO_RAS @ np.diag([float(spacing[0]), float(spacing[1]), 1.0, 1.0])


def _grey_palette(picture: PIL.Image.Image) -> bool:
    """True when every colour of the picture's palette that its pixels use is a grey (R = G = B)."""
    palette = np.asarray(picture.getpalette() or [], dtype=np.int64).reshape(-1, 3)
    used = np.unique(np.asarray(picture.getchannel(0) if picture.mode == "PA" else picture))
    used = used[used < len(palette)]
    colours = palette[used]
    return bool(np.all(colours[:, 0] == colours[:, 1]) and np.all(colours[:, 1] == colours[:, 2]))


def _pixels(picture: PIL.Image.Image, path: Path, kind: type[Image]) -> tuple[np.ndarray, str | None]:
    """The single-channel (row, column) array of `picture` and a note on any conversion made."""
    mode = picture.mode
    if mode in _SINGLE_CHANNEL_MODES:
        array = np.asarray(picture)
        return (array.astype(np.uint8) if mode == "1" else array), None
    if mode == "P" and kind is LabelMap:
        return np.asarray(picture), "palette indices read as labels"
    if mode in ("P", "PA") and not _grey_palette(picture):
        raise InputError(path, "palette-colour image: its values index colours, not intensities to segment")
    if mode in ("P", "PA"):
        picture = picture.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA"):
        alpha = np.asarray(picture.getchannel("A"))
        if np.any(alpha != OPAQUE_ALPHA):
            raise InputError(path, f"{mode} image has transparent pixels; flatten it to grayscale first")
        if mode == "LA":
            return np.asarray(picture.getchannel("L")), None
    rgb = np.asarray(picture.convert("RGB"))
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        return rgb[..., 0].copy(), None
    return np.asarray(picture.convert("L")), f"{mode} converted to luminance (L = .299R + .587G + .114B)"


def read_png(
    path: str | os.PathLike, kind: type[Image] = ScalarImage, spacing: tuple[float, float] = (1.0, 1.0)
) -> Image:
    """Read a 2D PNG or JPEG as `kind`, grayscale, with `spacing` (column, row) in mm.

        16-bit PNGs stay 16-bit. Colour images become luminance (noted in ``meta["note"]``); RGBA is refused
        unless every pixel is opaque; a palette-colour image is refused unless its palette is grey. Masks read
    as `LabelMap` keep their values: `medseg.io.masks.interpret_mask` recognises 0/255 and anti-aliased ones.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        with PIL.Image.open(path) as picture:
            picture.load()
            array, note = _pixels(picture, path, kind)
    except PIL.UnidentifiedImageError:
        raise InputError(path, "not a readable PNG/JPEG image") from None
    except PIL.Image.DecompressionBombError as error:  # a header promising billions of pixels
        raise InputError(path, f"refused: {' '.join(str(error).split())}") from None
    except OSError as error:
        raise InputError(path, f"cannot read image ({error})") from None
    if note:
        log.info("%s: %s", path.name, note)
    image = kind(np.ascontiguousarray(array.T), png_affine(spacing), {"source": path.name})
    if note:
        image.meta["note"] = note
    return image


def binarize_mask(mask: Image, threshold: float = MASK_THRESHOLD) -> LabelMap:
    """Label 1 where ``mask > threshold``, else 0, on the same grid (for anti-aliased or JPEG masks)."""
    return LabelMap((mask.array > threshold).astype(np.uint8), mask.affine.copy(), dict(mask.meta))


def write_png(
    image: Image, path: str | os.PathLike, palette: Sequence[tuple[int, int, int]] | None = None
) -> Path:
    """Write a 2D integer image (a label map or an 8/16-bit image) as PNG, atomically.

    Label values must fit 8 bits (0-255) or 16 bits; geometry is not stored (PNG has none), so reading
    the file back gives the default `png_affine` with the spacing you pass to `read_png`. With
    `palette` (one RGB colour per label value), an 8-bit label map is written as a colour-indexed PNG:
    viewers show the colours and `read_png(path, LabelMap)` still reads the label values.
    """
    path = Path(path)
    if image.ndim != 2:
        raise ValueError(f"{path}: PNG holds 2D images, got shape {image.shape}")
    array = image.array.astype(np.uint8) if image.array.dtype == bool else image.array
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{path}: PNG needs integer values, got {array.dtype}; scale and cast first")
    low, high = int(array.min(initial=0)), int(array.max(initial=0))
    if low < 0 or high > np.iinfo(np.uint16).max:
        raise ValueError(f"{path}: values {low}..{high} do not fit an 8- or 16-bit PNG")
    pixels = np.ascontiguousarray(array.T.astype(np.uint8 if high <= 255 else np.uint16))
    picture = PIL.Image.fromarray(pixels)
    if palette is not None:
        if high >= len(palette) or high > 255:
            raise ValueError(f"{path}: palette has {len(palette)} colours for labels up to {high}")
        picture = picture.convert("P") if picture.mode != "P" else picture
        picture.putpalette([channel for colour in palette for channel in colour])
    with atomic_path(path) as temporary:
        picture.save(temporary, format="PNG")
    return path
