"""Overlay PNGs: radiological orientation, physical aspect, disagreement colours, windows, file names."""

from __future__ import annotations

import json
import re

import numpy as np
import PIL.Image
import pytest

from medseg.errors import GeometryError
from medseg.io.image import LabelMap, ScalarImage
from medseg.io.png import binarize_mask, read_png
from medseg.io.reader import read_image
from medseg.io.resample import reorient
from medseg.report.boxplot import box_plot_svg, box_statistics
from medseg.report.overlay import (
    DISAGREEMENT_ALPHA,
    DISAGREEMENT_COLOURS,
    HEAT_ALPHA,
    MIN_LONG_SIDE_PX,
    display_range,
    render_overlays,
    render_uncertainty,
    write_overlays,
)
from medseg.utils.colours import class_colour

MISSED, ADDED, _ = DISAGREEMENT_COLOURS.values()


@pytest.fixture(scope="module")
def ct_case(datasets_dir):
    folder = datasets_dir / "totalseg_ct_mr_examples"
    names = json.loads((folder / "class_map_total_and_total_mr.json").read_text())["total"]
    image = read_image(folder / "example_ct_sm.nii.gz")
    mask = read_image(folder / "example_seg.nii.gz", LabelMap)
    return image, mask, {int(k): v for k, v in names.items()}


@pytest.fixture(scope="module")
def chest_image(datasets_dir):
    return read_png(datasets_dir / "cxr_lung_mc_shenzhen" / "images" / "CHNCXR_0006_0.png")


@pytest.fixture(scope="module")
def ct_overlays(ct_case, tmp_path_factory):
    image, mask, names = ct_case
    out = tmp_path_factory.mktemp("ct")
    return write_overlays(image, mask, out, names, modality="CT")


def _pixels(path) -> np.ndarray:
    return np.asarray(PIL.Image.open(path).convert("RGB"))


def _columns_and_rows_of(picture: np.ndarray, colour, height: int) -> tuple[float, float]:
    rows, cols = np.nonzero(np.all(picture[:height] == colour, axis=2))
    assert rows.size > 20, f"colour {colour} barely drawn"
    return cols.mean() / picture.shape[1], rows.mean() / height


def test_axial_ct_overlay_is_radiological_and_to_physical_scale(ct_case, ct_overlays):
    image, _, _ = ct_case
    liver = next(p for p in ct_overlays if p.name.startswith("overlay_liver_axial_"))
    picture = _pixels(liver)
    width_mm, height_mm = image.shape[0] * image.spacing[0], image.shape[1] * image.spacing[1]
    assert max(picture.shape[1], picture.shape[1] * height_mm / width_mm) >= MIN_LONG_SIDE_PX
    height = round(picture.shape[1] * height_mm / width_mm)  # image part above the legend strip
    assert not np.all(picture[height - 3] == 0)
    liver_x, _ = _columns_and_rows_of(picture, class_colour(5), height)
    spleen_x, _ = _columns_and_rows_of(picture, class_colour(1), height)
    _, cord_y = _columns_and_rows_of(picture, class_colour(79), height)
    _, aorta_y = _columns_and_rows_of(picture, class_colour(52), height)
    assert liver_x < 0.5 < spleen_x  # patient's right (liver) on the left of the picture
    assert aorta_y < cord_y  # anterior (aorta) above posterior (spinal cord)


def test_display_does_not_depend_on_how_the_volume_is_stored(ct_case, ct_overlays):
    image, mask, names = ct_case
    flipped = render_overlays(reorient(image, "LAI"), reorient(mask, "LAI"), names, modality="CT")
    last = image.shape[2] - 1
    by_name = {overlay.filename: np.asarray(overlay.picture) for overlay in flipped}
    height = round(flipped[0].picture.width * image.shape[1] / image.shape[0])  # above the legend
    compared = 0
    for path in ct_overlays:
        prefix, k = re.fullmatch(r"(overlay_.+_axial_)(\d+)\.png", path.name).groups()
        twin = by_name.get(f"{prefix}{last - int(k)}.png")
        if twin is not None:
            np.testing.assert_array_equal(twin[:height], _pixels(path)[:height])
            compared += 1
    assert compared >= 10


def test_file_names_are_class_and_slice_only_and_unique(ct_overlays):
    names = [p.name for p in ct_overlays]
    assert len(set(names)) == len(names)
    slices = [int(re.fullmatch(r"overlay_[A-Za-z0-9_-]+_axial_(\d+)\.png", n).group(1)) for n in names]
    assert len(set(slices)) == len(slices)  # each slice drawn once
    assert not [p for p in ct_overlays[0].parent.iterdir() if p.name.startswith(".")]  # no temporaries


def test_anisotropic_pixels_are_not_squashed(tmp_path):
    spacing = (1.0, 3.0, 2.0)
    labels = np.zeros((40, 20, 5), dtype=np.uint8)
    labels[10:22, 5:9, 2] = 1  # 12 mm x 12 mm in the axial plane
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])  # LPS storage
    image = ScalarImage(np.zeros(labels.shape, dtype=np.float32), affine, {"source": "PATIENT_DOE.nii"})
    (path,) = write_overlays(image, LabelMap(labels, affine), tmp_path, {1: "lesion"}, window=(1.0, 0.5))
    picture = _pixels(path)
    assert path.name == "overlay_lesion_axial_2.png"
    assert picture.shape[1] == round(MIN_LONG_SIDE_PX * 40 / 60)  # 40 mm wide, 60 mm tall
    rows, cols = np.nonzero(np.all(picture[:MIN_LONG_SIDE_PX] == class_colour(1), axis=2))
    assert np.ptp(rows) == pytest.approx(np.ptp(cols), abs=2)  # a square in mm is a square on screen


def test_chest_xray_disagreement_is_drawn_where_masks_differ(datasets_dir, tmp_path):
    folder = datasets_dir / "cxr_lung_mc_shenzhen"
    reference = binarize_mask(read_png(folder / "masks" / "CHNCXR_0006_0.png"))
    prediction = reference.with_array(np.roll(reference.array, 12, axis=0))  # shifted 12 px to the right
    black = ScalarImage(np.zeros(reference.shape, dtype=np.float32), reference.affine)
    (path,) = write_overlays(black, prediction, tmp_path, {1: "lung"}, reference, window=(1.0, 0.5))
    assert path.name == "overlay_2d.png"
    picture = _pixels(path)[: reference.shape[1]]  # 512 x 512 at 1 mm: one pixel per voxel
    missed = np.all(picture == np.round(DISAGREEMENT_ALPHA * np.array(MISSED)), axis=2)
    expected = (reference.array == 1) & (prediction.array == 0)
    np.testing.assert_array_equal(missed, expected.T)
    added = np.all(np.abs(picture.astype(int) - DISAGREEMENT_ALPHA * np.array(ADDED)) < 70, axis=2)
    np.testing.assert_array_equal(added, ((prediction.array == 1) & (reference.array == 0)).T)


def test_display_windows_follow_the_modality(ct_case):
    image, _, _ = ct_case
    assert display_range(image, None, "CT") == (-160.0, 240.0)
    assert display_range(image, (1500.0, -600.0), "CT") == (-1350.0, 150.0)
    mr = ScalarImage(image.array, image.affine, {"modality": "MR"})
    assert display_range(mr, None, None) == pytest.approx(tuple(np.percentile(image.array, [1, 99])))


def test_mask_on_another_grid_is_refused(ct_case, tmp_path):
    image, mask, names = ct_case
    shifted = LabelMap(mask.array, mask.affine + np.pad(np.eye(3, 1, 0) * 5, ((0, 1), (3, 0))))
    with pytest.raises(GeometryError, match="does not match the image grid"):
        write_overlays(image, shifted, tmp_path, names)


def test_uncertainty_heat_map_is_drawn_where_the_map_is_high(chest_image):
    image = chest_image
    heat = np.zeros(image.shape, dtype=np.float32)
    heat[100:200, 300:350] = 2.0  # i = columns 100-199, j = rows 300-349
    (overlay,) = render_uncertainty(image, ScalarImage(heat, image.affine), [None])
    picture = np.asarray(overlay.picture.convert("RGB")).astype(int)[: image.shape[1]]
    grey = np.asarray(render_uncertainty(image, ScalarImage(heat * 0, image.affine), [None])[0].picture)
    changed = np.any(picture != np.asarray(grey)[: image.shape[1]], axis=2)
    assert changed[310:340, 110:190].all() and not changed[:250].any()
    expected = (1 - HEAT_ALPHA) * np.asarray(grey)[320, 150] + HEAT_ALPHA * np.array([255, 0, 0])
    np.testing.assert_allclose(picture[320, 150], expected, atol=1.0)  # the top of the ramp is red


def test_box_statistics_match_numpy():
    values = [0.1, 0.5, 0.55, 0.6, 0.62, 0.7, 0.71, 0.9, 3.0]
    stats = box_statistics(values)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    assert (stats["q1"], stats["median"], stats["q3"]) == (q1, median, q3)
    assert stats["outliers"] == [v for v in values if v < q1 - 1.5 * (q3 - q1) or v > q3 + 1.5 * (q3 - q1)]
    assert stats["high"] == 0.9 and 3.0 in stats["outliers"]
    svg = box_plot_svg({"a <b>": values}, "Dice", "Dice")
    assert "a &lt;b&gt;" in svg and svg.count("<circle") == len(stats["outliers"])


def test_structure_missed_by_the_ai_is_shown_on_the_reference_slices(datasets_dir, tmp_path):
    folder = datasets_dir / "msd_hippocampus"
    image = read_image(folder / "imagesTr" / "hippocampus_025.nii.gz")
    reference = read_image(folder / "labelsTr" / "hippocampus_025.nii.gz", LabelMap)
    prediction = reference.with_array(np.where(reference.array == 2, 0, reference.array))
    paths = write_overlays(image, prediction, tmp_path, {1: "anterior", 2: "posterior"}, reference)
    per_slice = (reference.array == 2).sum(axis=(0, 1))
    posterior = [int(re.search(r"_axial_(\d+)", p.name).group(1)) for p in paths if "posterior" in p.name]
    assert posterior and any(per_slice[k] == per_slice.max() for k in posterior)
    picture = _pixels(next(p for p in paths if "posterior" in p.name)).astype(int)
    picture = picture[: round(picture.shape[1] * image.shape[1] / image.shape[0])]  # above the legend
    red, green, blue = picture[..., 0], picture[..., 1], picture[..., 2]
    yellowish = (red >= 0.75 * MISSED[0]) & (green >= 0.75 * MISSED[1]) & (blue <= 0.25 * 255 + MISSED[2])
    assert yellowish.sum() > 100  # the missed posterior hippocampus, drawn in the "missed" colour
