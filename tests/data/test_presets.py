"""Presets: plan-driven MONAI preprocessing with an exact inverse, checked against direct numpy maths."""

from __future__ import annotations

import dataclasses

import numpy as np
import PIL.Image
import pytest
import torch

from medseg.data.datasets import read_image_folders, read_msd
from medseg.data.metatensor import image_to_metatensor, metatensor_to_image
from medseg.data.planner import Plan
from medseg.data.presets import inverse, normalizer, preprocessing
from medseg.data.transforms import ClipZScore
from medseg.errors import ConfigError
from medseg.inference.ensemble import Ensemble
from medseg.io.image import LabelMap, ScalarImage
from medseg.io.resample import reorient
from medseg.io.volume import read_volume, write_volume

CT_NORMALIZATION = {
    "modality": "CT",
    "scheme": "ct",
    "clip_low": -200.0,
    "clip_high": 300.0,
    "mean": 50.0,
    "std": 80.0,
}


def _plan(dim, spacing, normalization, orientation="RAS"):
    return Plan(
        dataset={"name": "test"},
        dim=dim,
        orientation=orientation,
        target_spacing=spacing,
        patch_size=[16] * dim,
        batch_size=2,
        pool_counts=[2] * dim,
        normalization=normalization,
    )


@pytest.fixture(scope="module")
def lps_case(tmp_path_factory, datasets_dir):
    """A real CT and its labels stored in LPS orientation, so preprocessing has to reorient."""
    folder = tmp_path_factory.mktemp("lps")
    source = datasets_dir / "totalseg_ct_mr_examples"
    image = reorient(read_volume(source / "example_ct_sm.nii.gz"), "LPS")
    label = reorient(read_volume(source / "example_seg.nii.gz", LabelMap), "LPS")
    record = {
        "id": "ct",
        "image": str(write_volume(image, folder / "ct.nii.gz")),
        "label": str(write_volume(label, folder / "seg.nii.gz")),
    }
    return record, read_volume(record["image"]), read_volume(record["label"], LabelMap)


def test_metatensor_conversion_round_trips_3d_and_2d(lps_case):
    _, image, label = lps_case
    tensor = image_to_metatensor(image)
    assert tuple(tensor.shape) == (1, *image.shape)
    back = metatensor_to_image(tensor)
    np.testing.assert_array_equal(back.array, image.array)
    np.testing.assert_allclose(back.affine, image.affine)
    again = metatensor_to_image(image_to_metatensor(label).float(), LabelMap)
    assert np.issubdtype(again.array.dtype, np.integer)
    np.testing.assert_array_equal(again.array, label.array)
    flat = ScalarImage(np.arange(12.0).reshape(4, 3), np.diag([-0.5, -2.0, 1.0, 1.0]))
    assert metatensor_to_image(image_to_metatensor([flat, flat]), channel=1).same_grid(flat)


def test_ct_preset_reorients_resamples_normalises_and_inverts_exactly(lps_case):
    record, image, label = lps_case
    pipeline = preprocessing(_plan(3, [2.0, 2.0, 2.5], [CT_NORMALIZATION]))
    data = pipeline(dict(record))
    out = data["image"]
    assert metatensor_to_image(out).orientation == "RAS"
    np.testing.assert_allclose(metatensor_to_image(out).spacing, [2.0, 2.0, 2.5])
    low, high = (np.array([-200.0, 300.0]) - 50.0) / 80.0
    assert out.dtype == torch.float32 and low <= out.min() and out.max() <= high
    assert (out == low).float().mean() > 0.05  # the clip is active on a real CT (air, fat)

    data["pred"] = data["label"].clone()
    restored = inverse(pipeline)(data)["pred"]
    back = metatensor_to_image(restored, LabelMap)
    assert back.shape == label.shape and back.same_grid(image)
    np.testing.assert_allclose(back.affine, label.affine, atol=1e-6)
    agreement = (back.array == label.array).mean()
    assert agreement > 0.97
    assert np.array_equal(np.unique(back.array), np.unique(label.array))


def test_slice_context_gives_each_slice_its_normalised_neighbours_in_training_and_inference(lps_case):
    record, image, _ = lps_case
    one_slice = dataclasses.replace(
        _plan(3, [2.0, 2.0, 2.5], [CT_NORMALIZATION]), patch_size=[16, 16, 1], slice_axis=2
    )
    plan = dataclasses.replace(one_slice, context_slices=2)
    assert plan.network_in_channels == 5
    alone = preprocessing(one_slice)(dict(record))["image"][0]
    pipeline = preprocessing(plan)
    data = pipeline(dict(record))
    stacked = data["image"]
    assert stacked.shape == (5, *alone.shape)
    np.testing.assert_allclose(stacked.affine, data["label"].affine)
    for j, shift in enumerate(range(-2, 3)):  # channel j of slice k is slice k + shift, zero off the volume
        inside = range(max(0, -shift), min(alone.shape[2], alone.shape[2] - shift))
        for k in (inside[0], inside[-1], len(alone[0, 0]) // 2):
            torch.testing.assert_close(stacked[j, :, :, k], alone[:, :, k + shift])
        outside = [k for k in range(alone.shape[2]) if k not in inside]
        assert bool((stacked[j][..., outside] == 0).all())

    # inference normalises CT slab by slab: the network must see exactly what training saw
    ensemble = Ensemble(networks=[], plan=plan, class_names={0: "background"})
    inferred = ensemble._preprocess(preprocessing(plan, label_key=None, load=False), image)
    torch.testing.assert_close(inferred.as_tensor(), stacked.as_tensor())
    data["pred"] = data["label"].clone()
    restored = metatensor_to_image(inverse(pipeline)(data)["pred"], LabelMap)
    assert restored.same_grid(image)  # the stacked channels leave the way back to the source grid alone


def test_mr_zscore_preset_per_case(datasets_dir):
    record = read_msd(datasets_dir / "msd_hippocampus").cases[5]
    plan = _plan(3, [1.0, 1.0, 1.0], [{"modality": "MRI", "scheme": "zscore", "nonzero": False}])
    data = preprocessing(plan, label_key=None)({"image": record["image"]})
    raw = read_volume(record["image"]).array.astype(np.float64)
    expected = (raw - raw.mean()) / raw.std()
    np.testing.assert_allclose(data["image"][0].numpy(), expected, atol=1e-4)  # RAS, 1 mm: grid unchanged


def test_xray_percentile_preset_matches_numpy_on_the_pil_pixels(datasets_dir):
    record = read_image_folders(datasets_dir / "cxr_lung_mc_shenzhen").cases[3]
    plan = _plan(
        2,
        [1.0, 1.0],
        [{"modality": "XRAY", "scheme": "percentile", "lower": 0.5, "upper": 99.5}],
        orientation=None,
    )
    data = preprocessing(plan)(dict(record))
    pixels = np.asarray(PIL.Image.open(record["image"])).T.astype(np.float64)
    low, high = np.percentile(pixels, [0.5, 99.5])
    expected = np.clip((pixels - low) / (high - low), 0, 1)
    np.testing.assert_allclose(data["image"][0].numpy(), expected, atol=1e-5)
    mask = np.asarray(PIL.Image.open(record["label"])).T > 127
    np.testing.assert_array_equal(data["label"][0].numpy(), mask)


def test_window_and_clip_zscore_arrays_and_bad_entries():
    values = torch.tensor([[-1000.0, -160.0, 40.0, 240.0, 1500.0]])
    window = normalizer({"scheme": "window", "low": -160.0, "high": 240.0})(values)
    np.testing.assert_allclose(np.asarray(window), [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-6)
    clipped = ClipZScore(-160.0, 240.0, 40.0, 100.0)(values)
    np.testing.assert_allclose(clipped.numpy(), [[-2.0, -2.0, 0.0, 2.0, 2.0]])
    with pytest.raises(ConfigError, match="clip_low"):
        normalizer({"scheme": "ct", "mean": 0.0})
    with pytest.raises(ConfigError, match="unknown"):
        normalizer({"scheme": "minmax"})


def test_2d_spacing_change_inverts_onto_the_png_grid(datasets_dir):
    record = read_image_folders(datasets_dir / "cxr_lung_mc_shenzhen").cases[7]
    plan = _plan(
        2,
        [2.0, 1.5],
        [{"modality": "XRAY", "scheme": "percentile", "lower": 0.5, "upper": 99.5}],
        orientation=None,
    )
    pipeline = preprocessing(plan)
    data = pipeline(dict(record))
    assert data["image"].shape[1] == 256 and abs(data["image"].shape[2] - 512 / 1.5) < 1
    np.testing.assert_allclose(metatensor_to_image(data["image"]).spacing, [2.0, 1.5])
    data["pred"] = data["label"].clone()
    back = metatensor_to_image(inverse(pipeline)(data)["pred"], LabelMap)
    mask = (np.asarray(PIL.Image.open(record["label"])).T > 127).astype(np.uint8)
    assert back.shape == mask.shape
    np.testing.assert_allclose(back.affine, np.diag([-1.0, -1.0, 1.0, 1.0]))
    assert (back.array == mask).mean() > 0.99
