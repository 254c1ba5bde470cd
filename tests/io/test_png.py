"""PNG/JPEG reading and writing: orientation against PIL and SimpleITK, colour handling, masks."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import SimpleITK as sitk

from medseg.errors import InputError
from medseg.io.image import LabelMap, ScalarImage
from medseg.io.png import MASK_THRESHOLD, binarize_mask, png_affine, read_png, write_png
from medseg.io.sitk_bridge import affine_from_sitk


def test_planted_pattern_survives_read_write_read_and_i_indexes_columns(tmp_path):
    rows, cols = 5, 8
    pattern = np.zeros((rows, cols), dtype=np.uint8)  # PIL layout: (row, column)
    pattern[0, 6] = 200  # top row, near the right edge
    pattern[4, 1] = 90  # bottom row, near the left edge
    PIL.Image.fromarray(pattern).save(tmp_path / "a.png")

    image = read_png(tmp_path / "a.png", LabelMap)
    assert image.shape == (cols, rows)
    assert image.array[6, 0] == 200 and image.array[1, 4] == 90  # array[i = column, j = row]

    write_png(image, tmp_path / "b.png")
    again = read_png(tmp_path / "b.png", LabelMap)
    np.testing.assert_array_equal(again.array, image.array)
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(tmp_path / "b.png")), pattern)


def test_real_xray_matches_pil_and_simpleitk_geometry(datasets_dir):
    path = datasets_dir / "cxr_lung_mc_shenzhen" / "images" / "CHNCXR_0006_0.png"
    image = read_png(path, spacing=(0.5, 0.7))
    np.testing.assert_array_equal(image.array, np.asarray(PIL.Image.open(path)).T)
    reference = sitk.ReadImage(str(path))
    reference.SetSpacing((0.5, 0.7))
    np.testing.assert_array_equal(image.array, sitk.GetArrayFromImage(reference).T)
    np.testing.assert_allclose(image.affine, affine_from_sitk(reference))
    np.testing.assert_allclose(image.spacing, (0.5, 0.7))


def test_antialiased_mask_binarised_at_documented_threshold(datasets_dir):
    path = datasets_dir / "cxr_lung_mc_shenzhen" / "masks" / "CHNCXR_0006_0.png"
    raw = read_png(path, LabelMap)
    assert len(np.unique(raw.array)) > 2  # anti-aliased edges
    mask = binarize_mask(raw)
    assert set(np.unique(mask.array)) == {0, 1}
    np.testing.assert_array_equal(mask.array, (np.asarray(PIL.Image.open(path)).T > MASK_THRESHOLD))


def test_sixteen_bit_png_kept(tmp_path):
    values = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)
    PIL.Image.fromarray(values).save(tmp_path / "deep.png")
    image = read_png(tmp_path / "deep.png")
    assert image.array.max() == 55000
    np.testing.assert_array_equal(image.array, values.T)
    write_png(image.with_array(image.array, LabelMap), tmp_path / "deep2.png")
    np.testing.assert_array_equal(read_png(tmp_path / "deep2.png").array, values.T)


def test_rgb_becomes_luminance_with_note_and_grey_rgb_stays_exact(tmp_path):
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[1, 2] = (0, 0, 255)
    PIL.Image.fromarray(rgb).save(tmp_path / "colour.png")
    image = read_png(tmp_path / "colour.png")
    assert "luminance" in image.meta["note"]
    assert image.array[0, 0] == 76 and image.array[2, 1] == 29  # 0.299 * 255, 0.114 * 255

    grey = np.repeat(np.arange(6, dtype=np.uint8).reshape(2, 3, 1) * 40, 3, axis=2)
    PIL.Image.fromarray(grey).save(tmp_path / "grey.png")
    grey_image = read_png(tmp_path / "grey.png")
    assert "note" not in grey_image.meta
    np.testing.assert_array_equal(grey_image.array, grey[..., 0].T)


def test_rgba_refused_unless_opaque(tmp_path):
    rgba = np.full((2, 2, 4), 255, dtype=np.uint8)
    PIL.Image.fromarray(rgba).save(tmp_path / "opaque.png")
    assert read_png(tmp_path / "opaque.png").array.dtype == np.uint8
    rgba[0, 0, 3] = 10
    PIL.Image.fromarray(rgba).save(tmp_path / "clear.png")
    with pytest.raises(InputError, match=r"clear\.png: .*transparent"):
        read_png(tmp_path / "clear.png")


def test_jpeg_read_and_bad_inputs(tmp_path):
    grey = np.tile(np.arange(0, 256, 32, dtype=np.uint8), (4, 1))
    PIL.Image.fromarray(grey).save(tmp_path / "g.jpg", quality=100)
    image = read_png(tmp_path / "g.jpg")
    assert isinstance(image, ScalarImage) and image.shape == (8, 4)
    assert np.abs(image.array.astype(int) - grey.T).max() <= 3
    np.testing.assert_allclose(image.affine, png_affine())

    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"junk\.png"):
        read_png(tmp_path / "junk.png")
    with pytest.raises(ValueError, match="integer"):
        write_png(image.with_array(image.array.astype(np.float32)), tmp_path / "f.png")


def test_palette_png_shows_colours_and_reads_back_labels(tmp_path):
    labels = LabelMap(np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8), png_affine())
    write_png(labels, tmp_path / "p.png", palette=[(0, 0, 0), (255, 0, 0), (0, 255, 0)])
    with PIL.Image.open(tmp_path / "p.png") as picture:
        assert picture.mode == "P"
        assert picture.convert("RGB").getpixel((1, 0)) == (0, 255, 0)  # PIL (x=column 1, y=row 0): label 2
    np.testing.assert_array_equal(read_png(tmp_path / "p.png", LabelMap).array, labels.array)
    with pytest.raises(ValueError, match="palette has 2 colours"):
        write_png(labels, tmp_path / "q.png", palette=[(0, 0, 0), (255, 0, 0)])
