"""Sliding-window stitching, ensembling, mirroring, post-processing and SEG codes, checked independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from infer_models import GAIN, threshold_network
from monai.inferers import sliding_window_inference
from scipy import ndimage

from medseg.checkpoint import ModelConfig
from medseg.errors import ConfigError, InputError
from medseg.inference.ensemble import checkpoint_paths, load_ensemble
from medseg.inference.postprocess import PostProcessing, postprocess
from medseg.inference.sliding_window import (
    WindowSettings,
    segment,
    segment_scores,
    segment_with_uncertainty,
    window_starts,
)
from medseg.io.image import LabelMap
from medseg.io.seg_writer import segment_codes
from medseg.models import create_model


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("unet", 3, 1, 4, channels=(8, 16, 32), strides=(2, 2), num_res_units=1).eval()


@pytest.fixture(scope="module")
def volume() -> torch.Tensor:
    """An image that is not a multiple of the window, so windows overlap unevenly and the last is clamped."""
    return torch.randn(1, 42, 34, 30, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(("overlap", "batch_size"), [(0.5, 3), (0.6, 2), (0.5, 4)])
def test_slab_stitching_equals_monai_full_volume_blending(network, volume, overlap, batch_size):
    """fp32 everywhere: the rolling slab buffer must give MONAI's gaussian-blended argmax exactly.

    6 windows start at each of 3 places on the last axis: batches of 3 fit them, batches of 4 span two."""
    settings = WindowSettings((24, 24, 16), overlap, batch_size, precision="fp32", accumulate="fp32")
    ours = segment([network], volume, settings)
    with torch.no_grad():
        expected = sliding_window_inference(volume[None], (24, 24, 16), 4, network, overlap, mode="gaussian")
    assert ours.dtype == torch.uint8 and ours.shape == volume.shape[1:]
    top_two = expected[0].topk(2, dim=0).values
    decided = (top_two[0] - top_two[1]) > 1e-5  # MONAI divides by a count map: ties may round either way
    torch.testing.assert_close(ours.long()[decided], expected[0].argmax(0)[decided])
    assert decided.float().mean() > 0.999


def test_window_batches_span_slabs_so_only_the_last_is_short(network, volume):
    """18 windows (6 at each of 3 starts on the last axis) in batches of 4: five passes, not six."""
    sizes: list[int] = []
    hook = network.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    try:
        segment([network], volume, WindowSettings((24, 24, 16), 0.5, 4, precision="fp32"))
    finally:
        hook.remove()
    assert sizes == [4, 4, 4, 4, 2]


def test_half_precision_paths_agree_with_fp32(network, volume):
    settings = WindowSettings((24, 24, 16), precision="fp32", accumulate="fp32")
    reference = segment([network], volume, settings)
    fast = segment([network], volume, WindowSettings((24, 24, 16)))  # bf16 forward, fp16 buffer
    assert (fast == reference).float().mean() > 0.98


def test_compiled_networks_give_the_eager_labels_with_a_padded_last_batch(network, volume):
    """torch.compile path: 18 windows in batches of 4 (spanning slabs) leave a last batch of 2, padded."""
    from torch._dynamo.utils import counters

    def settings(compile: bool) -> WindowSettings:
        return WindowSettings((24, 24, 16), 0.5, 4, precision="fp32", accumulate="fp32", compile=compile)

    reference = segment([network], volume, settings(compile=False))
    torch._dynamo.reset()
    counters.clear()
    ours = segment([network], volume, settings(compile=True))
    ours_again = segment([network], volume, settings(compile=True))  # a second volume: no new compiling
    assert counters["stats"]["unique_graphs"] == 1  # one batch shape, compiled once
    assert (ours == reference).float().mean() > 0.999  # fused kernels may round near-ties differently
    torch.testing.assert_close(ours_again, ours)
    torch._dynamo.reset()  # leave no compiled graph behind for other tests


def test_small_image_is_padded_and_cropped_back(network):
    image = torch.randn(1, 20, 40, 9)
    labels = segment([network], image, WindowSettings((32, 32, 16), precision="fp32", accumulate="fp32"))
    padded = torch.nn.functional.pad(image, (3, 4, 0, 0, 6, 6))  # what MONAI does (symmetric zero pad)
    with torch.no_grad():
        expected = sliding_window_inference(padded[None], (32, 32, 16), 1, network, 0.5, mode="gaussian")
    torch.testing.assert_close(labels.long(), expected[0].argmax(0)[6:26, :, 3:12])


def test_mirroring_and_ensemble_average_the_flipped_and_member_scores(network, volume):
    """Two members and x-mirroring equal the sum of four explicit full-image runs."""
    torch.manual_seed(5)
    other = create_model("unet", 3, 1, 4, channels=(8, 16, 32), strides=(2, 2), num_res_units=1).eval()
    roi = tuple(volume.shape[1:])  # one window: no blending, so the sum is easy to write down
    settings = WindowSettings(roi, mirror_axes=(0,), precision="fp32", accumulate="fp32")
    ours = segment([network, other], volume, settings)
    with torch.no_grad():
        x = volume[None]
        total = sum(net(x) + net(x.flip(2)).flip(2) for net in (network, other))
    torch.testing.assert_close(ours.long(), total[0].argmax(0))


def test_uncertainty_is_the_entropy_of_the_members_mean_softmax(volume):
    """Two voxel-wise threshold networks (scores +-g(x - t)) that disagree between their thresholds.

    Each voxel's scores do not depend on the window, so the gaussian blending must give exactly the
    entropy of the two members' mean softmax at that voxel, written down here with numpy.
    """
    config = ModelConfig(
        "unet", 3, 1, 2, {"channels": [2, 2], "strides": [1], "num_res_units": 0, "norm": "batch"}
    )
    thresholds = (-0.5, 0.5)
    members = [threshold_network(config, t) for t in thresholds]
    settings = WindowSettings((24, 24, 16), precision="fp32", accumulate="fp32")
    labels, entropy = segment_with_uncertainty(members, volume, settings)
    torch.testing.assert_close(labels, segment(members, volume, settings))
    x = volume[0].double().numpy()
    foreground = np.mean([1 / (1 + np.exp(-2 * GAIN * (x - t))) for t in thresholds], axis=0)
    p = np.clip(np.stack([1 - foreground, foreground]), 1e-12, 1)
    expected = -(p * np.log(p)).sum(0) / np.log(2)
    assert entropy.dtype == torch.float16 and entropy.shape == volume.shape[1:]
    np.testing.assert_allclose(entropy.float().numpy(), expected, atol=2e-3)
    between = (x > thresholds[0] + 0.2) & (x < thresholds[1] - 0.2)
    outside = np.abs(x) > 1.0
    assert entropy.numpy()[between].min() > 0.99 and entropy.numpy()[outside].max() < 0.01


def test_mean_scores_of_voxel_wise_members_are_their_mean_output(volume):
    """Two threshold networks (scores +-g(x - t), voxel by voxel) under mirroring: every window, member
    and mirrored copy scores a voxel the same way, so the weighted mean is the members' mean output."""
    config = ModelConfig(
        "unet", 3, 1, 2, {"channels": [2, 2], "strides": [1], "num_res_units": 0, "norm": "batch"}
    )
    thresholds = (-0.5, 0.3)
    members = [threshold_network(config, t) for t in thresholds]
    settings = WindowSettings((24, 24, 16), 0.5, 4, mirror_axes=(0, 2), precision="fp32", accumulate="fp32")
    scores, entropy = segment_scores(members, volume, settings)
    assert scores.dtype == torch.float16 and scores.shape == (2, *volume.shape[1:]) and entropy is None
    x = volume[0].double().numpy()
    foreground = np.mean([GAIN * (x - t) for t in thresholds], axis=0)
    np.testing.assert_allclose(scores[1].double().numpy(), foreground, rtol=2e-3, atol=2e-2)
    np.testing.assert_allclose(scores[0].double().numpy(), -foreground, rtol=2e-3, atol=2e-2)
    decided = np.abs(foreground) > 0.1
    labels = segment(members, volume, settings)
    np.testing.assert_array_equal(scores.argmax(0).numpy()[decided], labels.numpy()[decided])
    _, entropy = segment_scores(members, volume, settings, uncertainty=True)
    torch.testing.assert_close(entropy, segment_with_uncertainty(members, volume, settings)[1])


def test_window_starts_cover_the_axis_like_monai():
    assert window_starts(100, 32, 0.5) == [0, 16, 32, 48, 64, 68]
    assert window_starts(20, 32, 0.5) == [0]
    assert window_starts(32, 32, 0.5) == [0]
    with pytest.raises(ConfigError, match="overlap"):
        WindowSettings((32, 32), overlap=1.0)


def _balls(shape, centres_radii) -> np.ndarray:
    grid = np.indices(shape)
    out = np.zeros(shape, dtype=bool)
    for centre, radius in centres_radii:
        out |= ((grid - np.reshape(centre, (3, 1, 1, 1))) ** 2).sum(0) <= radius**2
    return out


def test_postprocessing_rules_in_physical_units():
    spacing = np.diag([2.0, 2.0, 2.0, 1.0])  # 8 mm3 voxels
    big, small = _balls((40, 40, 40), [((12, 12, 12), 7)]), _balls((40, 40, 40), [((30, 30, 30), 2)])
    array = np.zeros((40, 40, 40), np.uint8)
    array[big | small] = 1
    hole = _balls((40, 40, 40), [((12, 12, 12), 2)])
    array[hole] = 0
    array[30:34, 5:9, 5:9] = 2  # class 2: never touched by the class 1 rules
    labels = LabelMap(array, spacing)

    largest = postprocess(labels, PostProcessing(largest_component={1})).array
    assert not (largest[small] == 1).any() and (largest[big & ~hole] == 1).all()
    small_ml = small.sum() * 8 / 1000
    dropped = postprocess(labels, PostProcessing(min_volume_ml=small_ml * 1.01)).array
    assert not (dropped[small] == 1).any() and (dropped[big & ~hole] == 1).all()
    assert (dropped == 2).sum() == 64  # 0.512 mL: above the threshold
    kept = postprocess(labels, PostProcessing(min_volume_ml=small_ml * 0.99)).array
    assert (kept[small] == 1).all()
    filled = postprocess(labels, PostProcessing(fill_holes={1})).array
    assert (filled[hole] == 1).all() and (filled[small] == 1).all()
    np.testing.assert_array_equal(labels.array, array)  # the input is not changed

    flat = np.zeros((30, 30), np.uint8)
    flat[2:4, 2:4], flat[10:20, 10:20] = 1, 1  # 4 and 100 pixels of 0.5 x 0.5 mm: 0.01 and 0.25 cm²
    cleaned = postprocess(LabelMap(flat, np.diag([0.5, 0.5, 1.0, 1.0])), PostProcessing(min_volume_ml=0.02))
    assert cleaned.array.sum() == 100  # in 2D the minimum size is an area in cm²


def test_coded_segment_descriptions():
    category, kind = segment_codes("liver")
    assert (category.meaning, kind.meaning) == ("Anatomical Structure", "Liver")
    category, kind = segment_codes("Liver tumour")
    assert category.meaning == "Morphologically Abnormal Structure" and kind.value == "108369006"
    assert segment_codes("kidney_left")[1].meaning == "Kidney"
    assert segment_codes("widget")[1].meaning == "Anatomical Structure"


def test_model_folders_and_mismatched_ensembles(tmp_path):
    from infer_models import save_threshold_checkpoint

    bundle = tmp_path / "bundle"
    first = save_threshold_checkpoint(bundle / "models" / "fold0.pt", 3, [2.0, 2.0, 2.0], [16, 16, 16])
    second = save_threshold_checkpoint(bundle / "models" / "fold1.pt", 3, [2.0, 2.0, 2.0], [16, 16, 16])
    assert checkpoint_paths([bundle]) == [first, second]
    assert len(load_ensemble([bundle]).networks) == 2
    other = save_threshold_checkpoint(tmp_path / "other.pt", 3, [1.0, 1.0, 1.0], [16, 16, 16])
    with pytest.raises(InputError, match="plan differs"):
        load_ensemble([first, other])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no"):
        checkpoint_paths([tmp_path / "empty"])


def test_test_time_mirroring_uses_only_the_axes_the_plan_allows(tmp_path):
    from dataclasses import replace

    from infer_models import save_threshold_checkpoint

    ensemble = load_ensemble([save_threshold_checkpoint(tmp_path / "m.pt", 3, [1.0, 1.0, 1.0], [16, 16, 16])])
    assert ensemble.plan.mirror_axes is None  # a plan from before the field: every axis
    assert ensemble.settings(tta=True).mirror_axes == (0, 1, 2)
    assert ensemble.settings().mirror_axes == ()
    ensemble.plan = replace(ensemble.plan, mirror_axes=[1, 2])  # e.g. labels that name a side
    assert ensemble.settings(tta=True).mirror_axes == (1, 2)
    ensemble.plan = replace(ensemble.plan, mirror_axes=[])  # e.g. a radiograph model
    assert ensemble.settings(tta=True).mirror_axes == ()


def test_labels_are_exact_for_a_threshold_model_on_the_plan_grid(tmp_path):
    """A 1 mm RAS image under a 1 mm plan: preprocessing is the identity, so labels equal the threshold."""
    from infer_models import THRESHOLD_HU, save_threshold_checkpoint

    from medseg.io.image import ScalarImage

    rng = np.random.default_rng(0)
    array = ndimage.gaussian_filter(rng.normal(0, 150, (30, 26, 20)), 2) * 4
    image = ScalarImage(array.astype(np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    ensemble = load_ensemble([save_threshold_checkpoint(tmp_path / "m.pt", 3, [1.0, 1.0, 1.0], [16, 16, 16])])
    original = image.array.copy()
    labels = ensemble.predict(image, ensemble.settings(precision="fp32", accumulate="fp32"))
    assert labels.same_grid(image)
    np.testing.assert_array_equal(image.array, original)  # preprocessing works on a view: never in place
    margin = np.abs(array - THRESHOLD_HU) > 0.5  # voxels right at the threshold may go either way
    np.testing.assert_array_equal(labels.array[margin], (array > THRESHOLD_HU)[margin])


def test_labels_return_to_a_finer_image_through_interpolated_scores(tmp_path, monkeypatch):
    """A 1 mm image under a 2 mm plan: labels interpolated as scores follow the 1 mm threshold more
    closely than nearest-neighbour labels, which are blocks of 2 voxels; a 1 mm plan needs neither."""
    from infer_models import THRESHOLD_HU, save_threshold_checkpoint

    from medseg.inference import ensemble as inference
    from medseg.io.image import ScalarImage

    field = ndimage.gaussian_filter(np.random.default_rng(0).normal(0, 1, (40, 36, 30)), 3)
    array = (field / field.std() * 150 + 50).astype(np.float32)  # 40% above the threshold
    image = ScalarImage(array, np.diag([-1.0, -1.0, 1.0, 1.0]))  # LPS-like: flipped axes
    truth = array > THRESHOLD_HU
    coarse = load_ensemble([save_threshold_checkpoint(tmp_path / "c.pt", 3, [2.0, 2.0, 2.0], [16, 16, 16])])
    fine = load_ensemble([save_threshold_checkpoint(tmp_path / "f.pt", 3, [1.0, 1.0, 1.0], [16, 16, 16])])
    settings = coarse.settings(precision="fp32", accumulate="fp32")
    calls: list[int] = []

    def counted(*args, **kwargs):
        calls.append(1)
        return segment_scores(*args, **kwargs)

    monkeypatch.setattr(inference, "segment_scores", counted)
    interpolated = coarse.predict(image, settings)
    assert calls == [1] and interpolated.same_grid(image) and interpolated.array.dtype == np.uint8
    assert fine.predict(image, settings).array[np.abs(array - THRESHOLD_HU) > 0.5].tolist() == (
        truth[np.abs(array - THRESHOLD_HU) > 0.5].tolist()
    )
    assert calls == [1]  # the image's own grid, flipped: labels invert exactly, no scores kept
    monkeypatch.setattr(inference, "SMOOTH_INVERSION_VOXELS", 0)  # too large a case: nearest labels
    nearest = coarse.predict(image, settings)
    assert calls == [1]

    def errors(labels: LabelMap) -> int:
        return int((labels.array.astype(bool) != truth).sum())

    edge = truth ^ ndimage.binary_erosion(truth)
    assert errors(interpolated) < 0.3 * errors(nearest)  # measured: 566 against 3673
    assert errors(interpolated) < 0.1 * edge.sum()  # 7681 edge voxels
