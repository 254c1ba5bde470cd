"""Test-time zooming: settings, alignment of the zoomed copies, and its place in `Ensemble.predict`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from infer_models import GAIN, THRESHOLD_HU, save_threshold_checkpoint, threshold_network
from scipy import ndimage

from medseg.bundles import SHIPPED_DIR
from medseg.checkpoint import ModelConfig
from medseg.errors import ConfigError, InputError
from medseg.inference import ensemble as inference
from medseg.inference import tta_zoom
from medseg.inference.ensemble import load_ensemble
from medseg.inference.sliding_window import WindowSettings, segment_scores
from medseg.inference.tta_zoom import resize, zoomed_scores, zoomed_shape
from medseg.io.image import ScalarImage
from medseg.models.slicewise import SliceWise


def test_settings_always_hold_the_unzoomed_pass_and_refuse_extreme_factors():
    assert WindowSettings((8, 8)).zooms == (1.0,)
    assert WindowSettings((8, 8), zooms=(1.1, 0.9, 1.1)).zooms == (0.9, 1.0, 1.1)
    for bad in [(0.2,), (1.1, 3.0), (float("nan"),)]:
        with pytest.raises(ConfigError, match="test-time zooms"):
            WindowSettings((8, 8), zooms=bad)


def test_zoomed_copies_resize_back_onto_the_same_voxels():
    """A field linear in the voxel index survives zooming and resizing back, away from the border
    (linear interpolation reproduces it; a copy shifted by half a voxel would be off by 0.5)."""
    rows, cols = torch.meshgrid(torch.arange(60.0), torch.arange(44.0), indexing="ij")
    field = (rows + 2 * cols)[None]
    for factor in (0.9, 1.1, 1.37):
        back = resize(resize(field, zoomed_shape((60, 44), factor)), (60, 44))
        torch.testing.assert_close(back[:, 3:-3, 3:-3], field[:, 3:-3, 3:-3], atol=1e-3, rtol=0)
    assert zoomed_shape((60, 44), 0.9) == (54, 40) and zoomed_shape((3, 1), 0.1) == (1, 1)


def test_slices_of_a_2d_network_on_volumes_are_zoomed_in_plane_only(monkeypatch):
    """A 2D network run slice by slice (windows one or more slices deep): each zoomed copy
    keeps the volume's slices, so no slice is interpolated between two real ones, and the scores of a
    voxel-wise network on a ramp that differs from slice to slice stay its unzoomed scores."""
    options = {"channels": [2, 2], "strides": [1], "num_res_units": 0, "norm": "batch"}
    network = SliceWise(threshold_network(ModelConfig("unet", 2, 1, 2, options), 0.2), slice_axis=2)
    rows, cols, slices = torch.meshgrid(
        torch.arange(40.0), torch.arange(30.0), torch.arange(5.0), indexing="ij"
    )
    image = ((rows - 20) / 15 + (cols - 15) / 20 + (slices - 2) * 0.7)[None]
    settings = dict(network_dims=2, slice_axis=2, precision="fp32", accumulate="fp32")
    shapes: list[tuple[int, ...]] = []

    def recorded(networks, volume, *args, **kwargs):
        shapes.append(tuple(volume.shape[1:]))
        return segment_scores(networks, volume, *args, **kwargs)

    monkeypatch.setattr(tta_zoom, "segment_scores", recorded)
    scores, _ = zoomed_scores([network], image, WindowSettings((16, 16, 1), zooms=(1.2,), **settings))
    assert shapes == [(40, 30, 5), (48, 36, 5)]
    zoomed_scores([network], image, WindowSettings((16, 16, 3), zooms=(1.2,), **settings))
    assert shapes[2:] == [(40, 30, 5), (48, 36, 5)]
    reference, _ = segment_scores([network], image, WindowSettings((16, 16, 1), **settings))
    error = (scores - reference.float())[:, 3:-3, 3:-3].abs().max().item() / GAIN
    assert error < 2e-3, error  # interpolating across slices would be off by up to 0.35


def test_zoomed_scores_of_a_voxel_wise_network_on_a_ramp_are_its_scores():
    """A threshold network scores each voxel by its own intensity, linearly, so on a linear ramp every
    zoomed copy, resized back, gives the unzoomed scores away from the border (a copy resized back with
    the other corner convention is off by up to a tenth of a voxel); without zooms the result is
    `segment_scores`'."""
    options = {"channels": [2, 2], "strides": [1], "num_res_units": 0, "norm": "batch"}
    network = threshold_network(ModelConfig("unet", 2, 1, 2, options), 0.2)
    rows, cols = torch.meshgrid(torch.arange(70.0), torch.arange(50.0), indexing="ij")
    image = ((rows - 35) / 20 + (cols - 25) / 30)[None]
    plain = WindowSettings((32, 32), precision="fp32", accumulate="fp32")
    # One zoom: a pair around 1 would cancel a misalignment that grows across the image.
    zoomed = WindowSettings((32, 32), zooms=(1.25,), precision="fp32", accumulate="fp32")
    reference, _ = segment_scores([network], image, plain)
    torch.testing.assert_close(zoomed_scores([network], image, plain)[0], reference.float())
    scores, entropy = zoomed_scores([network], image, zoomed, uncertainty=True)
    assert scores.dtype == torch.float32 and scores.shape == (2, 70, 50) and entropy.shape == (70, 50)
    inside = (slice(None), slice(3, -3), slice(3, -3))
    error = (scores - reference.float())[inside].abs().max().item() / GAIN
    assert error < 2e-3, error  # intensity units (float16 scores): 6e-4 measured, 4e-3 misaligned
    assert float(entropy.min()) >= 0 and float(entropy.max()) <= 1


def test_ensembles_zoom_every_image_and_refuse_images_too_large_for_it(tmp_path, monkeypatch):
    """Three passes (0.9, 1.0, 1.1 times the plan grid) whose labels land on the image's grid and
    follow the threshold away from it; an image whose zoomed scores would not fit is refused by name."""
    field = ndimage.gaussian_filter(np.random.default_rng(1).normal(0, 1, (48, 40, 24)), 3)
    array = (field / field.std() * 150 + 50).astype(np.float32)
    image = ScalarImage(array, np.diag([-1.0, -1.0, 1.0, 1.0]), {"source": "case.nii.gz"})
    ensemble = load_ensemble([save_threshold_checkpoint(tmp_path / "m.pt", 3, [1.0, 1.0, 1.0], [16, 16, 16])])
    settings = ensemble.settings(zooms=(0.9, 1.1), precision="fp32", accumulate="fp32")
    shapes: list[tuple[int, ...]] = []

    def recorded(networks, volume, *args, **kwargs):
        shapes.append(tuple(volume.shape[1:]))
        return segment_scores(networks, volume, *args, **kwargs)

    monkeypatch.setattr(tta_zoom, "segment_scores", recorded)
    labels = ensemble.predict(image, settings)
    assert shapes == [(43, 36, 22), (48, 40, 24), (53, 44, 26)]
    assert labels.same_grid(image)
    clear = np.abs(array - THRESHOLD_HU) > 40  # the zoomed copies blur the field by a fraction of a voxel
    np.testing.assert_array_equal(labels.array[clear], (array > THRESHOLD_HU)[clear])
    monkeypatch.setattr(inference, "ZOOMED_SCORE_VOXELS", 2 * array.size)
    with pytest.raises(InputError, match=r"case\.nii\.gz.*too many for test-time zooms"):
        ensemble.predict(image, settings)


def test_a_slice_model_zooms_its_slices_in_plane():
    """The tumour bundle's 2D network steps through axis 2 of its volumes: its window settings say so,
    so zooms keep that axis (and the memory check sizes the copies the same way)."""
    ensemble = load_ensemble([SHIPPED_DIR / "lgg_flair_2d" / "models" / "model.pt"])
    settings = ensemble.settings(zooms=(1.1,))
    assert settings.slice_axis == ensemble.plan.slice_axis == 2
    assert zoomed_shape((256, 256, 30), 1.1, settings.slice_axis) == (282, 282, 30)
