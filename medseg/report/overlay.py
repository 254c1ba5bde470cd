"""Overlay pictures a radiologist can read: the image, the AI mask and (optionally) the disagreement.

What is drawn:
* the grey image with a window suited to the modality: CT soft tissue (W400/L40) by default for CT,
  the 1st-99th percentile of the whole image for anything else (MR, X-ray, unknown);
* every class as a translucent fill plus a solid outline, one colour per class (`medseg.utils.colours`);
* with a reference mask, the disagreement on top: *missed* (reference only), *added* (AI only) and
  *other class* (both labelled, differently), each in a colour no class uses;
* a legend strip below the image (classes on the slice, disagreement colours, slice position in mm).

`render_uncertainty` draws a per-voxel uncertainty map (e.g. entropy) as a heat map on chosen slices.

Which slices: for a 3D image, the axial slices through each structure's centroid and through its largest
cross-section (`medseg.report.structures`), each slice once. A 2D image gives one overlay.

Display convention: radiological. A 3D image is reoriented exactly to LPS (array axis 0 towards the
patient's Left, 1 towards Posterior, 2 towards Superior) and ``array[:, :, k].T`` is shown, so image
columns run from the patient's right (left edge) to their left, and rows from anterior (top) to
posterior; orientation letters mark the edges. A 2D image is shown as stored (``array.T``: rows as in the
file), which is how radiographs and PNGs are meant to be viewed. Pixels are scaled to physical size
(anisotropic spacing is not squashed) and upsampled so the long side has at least `MIN_LONG_SIDE_PX`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
from scipy import ndimage

from medseg.errors import GeometryError
from medseg.io.image import Image, LabelMap, ScalarImage
from medseg.io.resample import reorient
from medseg.metrics.evaluate import describe_grid
from medseg.report.structures import axial_axis, class_names_for, structure_stats
from medseg.utils.atomic import atomic_path
from medseg.utils.colours import class_colour

#: CT soft-tissue window (width, level) in HU, the default for CT.
CT_SOFT_TISSUE_WINDOW = (400.0, 40.0)
#: Percentiles of the whole image mapped to black and white for MR, X-ray and unknown modalities.
DISPLAY_PERCENTILES = (1.0, 99.0)
#: The long side of an overlay is at least this many pixels, and at most `MAX_LONG_SIDE_PX`.
MIN_LONG_SIDE_PX, MAX_LONG_SIDE_PX = 384, 1024
#: Opacity of class fills and of disagreement fills; outline thickness in display pixels.
FILL_ALPHA, DISAGREEMENT_ALPHA, OUTLINE_PX = 0.35, 0.75, 2
#: Disagreement categories and their colours, in legend order.
DISAGREEMENT_COLOURS = {
    "missed (reference only)": (255, 225, 25),
    "added (AI only)": (240, 50, 230),
    "other class": (255, 255, 255),
}
#: Uncertainty heat map: colour ramp from low to high, largest opacity, values named in the legend.
HEAT_ANCHORS = [(0, 0, 255), (0, 255, 255), (255, 255, 0), (255, 0, 0)]
HEAT_ALPHA = 0.7
HEAT_LEGEND_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Legend text size and padding in pixels.
FONT_SIZE, LEGEND_PAD = 14, 6


@dataclass
class Overlay:
    """One rendered overlay: its file name (no patient data), what it shows and the picture."""

    filename: str
    caption: str
    picture: PIL.Image.Image
    slice_index: int | None = None  # axial slice in the image's own numbering; None for a 2D image


def display_range(image: ScalarImage, window: tuple[float, float] | None, modality: str | None) -> tuple:
    """Grey values (low, high) shown black and white; `window` is (width, level), e.g. (400, 40)."""
    modality = (modality or str(image.meta.get("modality", ""))).upper()
    if window is None and modality == "CT":
        window = CT_SOFT_TISSUE_WINDOW
    if window is not None:
        width, level = window
        return level - width / 2.0, level + width / 2.0
    low, high = np.percentile(image.array, DISPLAY_PERCENTILES)
    return float(low), float(max(high, low + np.finfo(np.float32).eps))


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "class"


def _check_grid(image: Image, other: Image | None, role: str) -> None:
    if other is not None and not image.same_grid(other):
        raise GeometryError(
            other.meta.get("source"),
            f"{role} grid ({describe_grid(other)}) does not match the image grid ({describe_grid(image)});"
            " resample it first",
        )


def _nearest_upsample(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = np.minimum((np.arange(height) + 0.5) * plane.shape[0] / height, plane.shape[0] - 1).astype(int)
    cols = np.minimum((np.arange(width) + 0.5) * plane.shape[1] / width, plane.shape[1] - 1).astype(int)
    return plane[np.ix_(rows, cols)]


def _display_size(shape: tuple[int, int], spacing: tuple[float, float]) -> tuple[int, int]:
    """(height, width) in pixels of a (rows, cols) plane with (row, col) spacing, to physical scale."""
    height_mm, width_mm = shape[0] * spacing[0], shape[1] * spacing[1]
    per_mm = max(MIN_LONG_SIDE_PX / max(height_mm, width_mm), 1.0 / min(spacing))
    per_mm = min(per_mm, MAX_LONG_SIDE_PX / max(height_mm, width_mm))
    return max(1, round(height_mm * per_mm)), max(1, round(width_mm * per_mm))


def _blend(rgb: np.ndarray, where: np.ndarray, colours: np.ndarray, alpha: float) -> None:
    rgb[where] = (1.0 - alpha) * rgb[where] + alpha * colours


def _outline(labels: np.ndarray) -> np.ndarray:
    """Labelled pixels within `OUTLINE_PX` of another label or of the picture's edge."""
    size = 2 * OUTLINE_PX + 1
    highest = ndimage.maximum_filter(labels, size=size, mode="nearest")
    lowest = ndimage.minimum_filter(labels, size=size, mode="constant", cval=0)
    return (labels > 0) & ((highest != labels) | (lowest != labels))


def _colour_table(labels: np.ndarray) -> np.ndarray:
    """RGB colour of every label value up to the largest in `labels` (row 0, background, unused)."""
    return np.array([(0, 0, 0)] + [class_colour(v) for v in range(1, int(labels.max()) + 1)], np.float32)


def _legend_entries(
    labels: np.ndarray, names: Mapping[int, str], with_reference: bool
) -> list[tuple[str, tuple[int, int, int]]]:
    entries = [(names[int(v)], class_colour(int(v))) for v in labels if int(v) in names]
    if with_reference:
        entries += list(DISAGREEMENT_COLOURS.items())
    return entries


def _draw_legend(picture: PIL.Image.Image, caption: str, entries: list) -> PIL.Image.Image:
    """`picture` with a strip below it: the caption, then a swatch and name per entry, wrapped."""
    font = PIL.ImageFont.load_default(size=FONT_SIZE)
    line = FONT_SIZE + LEGEND_PAD
    width = picture.width
    positions, x, y = [], LEGEND_PAD, LEGEND_PAD + line
    for name, colour in entries:
        item_width = FONT_SIZE + LEGEND_PAD + int(font.getlength(name)) + 2 * LEGEND_PAD
        if x + item_width > width and x > LEGEND_PAD:
            x, y = LEGEND_PAD, y + line
        positions.append((x, y, name, colour))
        x += item_width
    canvas = PIL.Image.new("RGB", (width, picture.height + y + line), (0, 0, 0))
    canvas.paste(picture, (0, 0))
    draw = PIL.ImageDraw.Draw(canvas)
    top = picture.height
    draw.text((LEGEND_PAD, top + LEGEND_PAD), caption, fill=(255, 255, 255), font=font)
    for x, y, name, colour in positions:
        draw.rectangle((x, top + y, x + FONT_SIZE, top + y + FONT_SIZE), fill=colour, outline=(255, 255, 255))
        draw.text((x + FONT_SIZE + LEGEND_PAD, top + y), name, fill=(255, 255, 255), font=font)
    return canvas


def _draw_orientation(picture: PIL.Image.Image) -> None:
    """Mark the patient directions at the edges of an axial picture in radiological convention."""
    font = PIL.ImageFont.load_default(size=FONT_SIZE + 2)
    draw = PIL.ImageDraw.Draw(picture)
    w, h, pad = picture.width, picture.height, LEGEND_PAD
    for text, anchor, xy in (("R", "lm", (pad, h / 2)), ("L", "rm", (w - pad, h / 2))):
        draw.text(xy, text, fill=(255, 255, 0), font=font, anchor=anchor, stroke_width=2, stroke_fill=0)
    for text, anchor, xy in (("A", "mt", (w / 2, pad)), ("P", "mb", (w / 2, h - pad))):
        draw.text(xy, text, fill=(255, 255, 0), font=font, anchor=anchor, stroke_width=2, stroke_fill=0)


def render_plane(
    grey: np.ndarray,
    labels: np.ndarray,
    spacing: tuple[float, float],
    grey_range: tuple[float, float],
    reference: np.ndarray | None = None,
) -> PIL.Image.Image:
    """The overlay of one plane given in display order (rows, cols) with (row, col) spacing in mm."""
    height, width = _display_size(grey.shape, spacing)
    low, high = grey_range
    scaled = np.clip((grey.astype(np.float32) - low) / (high - low), 0.0, 1.0) * 255.0
    base = PIL.Image.fromarray(scaled.astype(np.uint8)).resize((width, height), PIL.Image.BILINEAR)
    rgb = np.repeat(np.asarray(base, dtype=np.float32)[..., None], 3, axis=2)
    shown = _nearest_upsample(labels, height, width).astype(np.int64)
    colours = _colour_table(shown)
    _blend(rgb, shown > 0, colours[shown[shown > 0]], FILL_ALPHA)
    edge = _outline(shown)
    rgb[edge] = colours[shown[edge]]
    if reference is not None:
        expected = _nearest_upsample(reference, height, width)
        regions = [(expected > 0) & (shown == 0), (shown > 0) & (expected == 0)]
        regions.append((shown > 0) & (expected > 0) & (shown != expected))
        for region, colour in zip(regions, DISAGREEMENT_COLOURS.values(), strict=True):
            _blend(rgb, region, np.asarray(colour, np.float32), DISAGREEMENT_ALPHA)
    return PIL.Image.fromarray(rgb.round().astype(np.uint8))


def _axial_slices(stats: dict[str, dict], fallback: dict[str, dict] | None) -> dict[int, str]:
    """Slice index -> the first class (by label) that asked for it: its centroid and largest slice."""
    wanted: dict[int, str] = {}
    for name, entry in stats.items():
        source = entry if entry["voxels"] or fallback is None else fallback.get(name, entry)
        if source["voxels"]:
            for k in (source["centroid_slice"], source["largest_slice"]):
                wanted.setdefault(k, name)
    return dict(sorted(wanted.items()))


def _with_centroid_slice(stats: dict[str, dict], mask: LabelMap, axis: int) -> dict[str, dict]:
    inverse = np.linalg.inv(mask.affine)
    for entry in stats.values():
        if entry["voxels"]:
            index = inverse @ np.append(entry["centroid_ras_mm"], 1.0)
            entry["centroid_slice"] = int(np.clip(round(index[axis]), 0, mask.shape[axis] - 1))
    return stats


class _Display:
    """Images on one grid, ready to be cut into display planes (rows, cols) in radiological order."""

    def __init__(self, image: Image, others: list[Image | None]) -> None:
        self.image = image
        if image.ndim == 2:
            self.arrays = [None if x is None else x.array for x in (image, *others)]
            self.spacing = (float(image.spacing[1]), float(image.spacing[0]))
            return
        self.axis = axial_axis(image)
        lps = [None if x is None else reorient(x, "LPS") for x in (image, *others)]
        self.arrays = [None if x is None else x.array for x in lps]
        self.spacing = (float(lps[0].spacing[1]), float(lps[0].spacing[0]))
        self._to_lps = np.linalg.inv(lps[0].affine) @ image.affine

    def _point(self, k: int) -> np.ndarray:
        point = (np.asarray(self.image.shape, dtype=np.float64) - 1.0) / 2.0
        point[self.axis] = k
        return point

    def planes(self, k: int | None) -> list[np.ndarray | None]:
        """Every image's plane: the whole 2D image, or axial slice `k` (the image's own numbering)."""
        if k is None:
            return [None if a is None else a.T for a in self.arrays]
        k_lps = round(float((self._to_lps @ np.append(self._point(k), 1.0))[2]))
        return [None if a is None else a[:, :, k_lps].T for a in self.arrays]

    def caption(self, k: int | None) -> str:
        if k is None:
            return f"2D image, pixel {self.spacing[1]:.3g} x {self.spacing[0]:.3g} mm"
        z_mm = float(self.image.index_to_world(self._point(k)[None])[0, 2])
        return f"axial slice {k} (of {self.image.shape[self.axis]}), z = {z_mm:+.1f} mm"

    def finish(self, picture: PIL.Image.Image, k: int | None, entries: list) -> PIL.Image.Image:
        """Orientation letters (axial slices) and the legend strip."""
        if k is not None:
            _draw_orientation(picture)
        return _draw_legend(picture, self.caption(k), entries)


def render_overlays(
    image: ScalarImage,
    mask: LabelMap,
    class_names: Mapping[int, str],
    reference: LabelMap | None = None,
    window: tuple[float, float] | None = None,
    modality: str | None = None,
    slices: Sequence[int] | None = None,
) -> list[Overlay]:
    """The overlays `write_overlays` writes, as pictures in memory (see the module docstring).

    `slices` (3D only) replaces the automatic choice of axial slices, e.g. to draw a second mask on the
    slices chosen for the first; those overlays are named ``overlay_slice_axial_<k>.png``.
    """
    _check_grid(image, mask, "mask")
    _check_grid(image, reference, "reference")
    names = class_names_for(mask, class_names)
    if reference is not None:
        names = {**class_names_for(reference, class_names), **names}
    grey_range = display_range(image, window, modality)
    display = _Display(image, [mask, reference])
    if image.ndim == 2:
        chosen: dict = {None: "2d"}
    elif slices is not None:
        chosen = {int(k): "slice" for k in slices}
    else:
        stats = _with_centroid_slice(structure_stats(mask, names), mask, display.axis)
        fallback = None
        if reference is not None:
            fallback = _with_centroid_slice(structure_stats(reference, names), reference, display.axis)
        chosen = _axial_slices(stats, fallback)
    overlays = []
    for k, name in chosen.items():
        grey, labels, expected = display.planes(k)
        picture = render_plane(grey, labels, display.spacing, grey_range, expected)
        shown = np.unique(np.concatenate([np.unique(p) for p in (labels, expected) if p is not None]))
        picture = display.finish(picture, k, _legend_entries(shown, names, reference is not None))
        filename = "overlay_2d.png" if k is None else f"overlay_{_safe_name(name)}_axial_{k}.png"
        overlays.append(Overlay(filename, display.caption(k), picture, k))
    return overlays


def heat_colour(values: np.ndarray) -> np.ndarray:
    """RGB (float) of values in [0, 1] on the `HEAT_ANCHORS` colour ramp."""
    positions = np.linspace(0.0, 1.0, len(HEAT_ANCHORS))
    anchors = np.asarray(HEAT_ANCHORS, dtype=np.float32)
    return np.stack([np.interp(values, positions, anchors[:, c]) for c in range(3)], axis=-1)


def render_uncertainty(
    image: ScalarImage,
    uncertainty: ScalarImage,
    slices: list[int | None],
    window: tuple[float, float] | None = None,
    modality: str | None = None,
) -> list[Overlay]:
    """Uncertainty (e.g. entropy from TTA or an ensemble) as a heat map over the image, per slice.

    `slices` are the axial slice indices to show (None for a 2D image), e.g. those of the overlays.
    The colour ramp runs from 0 to the largest uncertainty in the image; low values stay transparent.
    """
    _check_grid(image, uncertainty, "uncertainty map")
    grey_range = display_range(image, window, modality)
    top = float(np.max(uncertainty.array)) or 1.0
    display = _Display(image, [uncertainty])
    pictures = []
    for k in slices:
        grey, heat = display.planes(k)
        base = render_plane(grey, np.zeros(grey.shape, np.uint8), display.spacing, grey_range)
        level = np.asarray(
            PIL.Image.fromarray((heat / top).astype(np.float32)).resize(base.size, PIL.Image.BILINEAR)
        ).clip(0.0, 1.0)
        rgb = np.asarray(base, dtype=np.float32)
        alpha = (HEAT_ALPHA * level)[..., None]
        rgb = (1.0 - alpha) * rgb + alpha * heat_colour(level)
        picture = PIL.Image.fromarray(rgb.round().astype(np.uint8))
        entries = [(f"{fraction * top:.3g}", tuple(int(c) for c in heat_colour(np.array(fraction))))
                   for fraction in HEAT_LEGEND_STEPS]  # fmt: skip
        picture = display.finish(picture, k, entries)
        name = "uncertainty_2d.png" if k is None else f"uncertainty_axial_{k}.png"
        pictures.append(Overlay(name, display.caption(k), picture, k))
    return pictures


def write_overlays(
    image: ScalarImage,
    mask: LabelMap,
    out_dir: str | os.PathLike,
    class_names: Mapping[int, str],
    reference: LabelMap | None = None,
    window: tuple[float, float] | None = None,
    modality: str | None = None,
) -> list[Path]:
    """Write the overlay PNGs of `mask` (and its disagreement with `reference`) into `out_dir`.

    `window` is (width, level) in image units, e.g. ``(400, 40)``; by default it follows `modality`
    (or ``image.meta["modality"]``): see the module docstring. All images must share one grid
    (GeometryError otherwise). Files are written atomically as ``overlay_<class>_axial_<k>.png`` (3D)
    or ``overlay_2d.png``; the returned paths are in slice order.
    """
    paths = []
    for overlay in render_overlays(image, mask, class_names, reference, window, modality):
        path = Path(out_dir) / overlay.filename
        with atomic_path(path) as temporary:
            overlay.picture.save(temporary, format="PNG")
        paths.append(path)
    return paths
