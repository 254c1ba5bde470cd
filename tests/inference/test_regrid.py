"""Axis-aligned linear interpolation of scores back onto the source grid (`medseg.inference.regrid`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.data.utils import to_affine_nd

from medseg.data.planner import Plan
from medseg.data.presets import inverse, preprocessing
from medseg.inference import regrid
from medseg.inference.ensemble import _metatensor_view
from medseg.inference.regrid import AxisAlignedInterpolator
from medseg.io.image import ScalarImage

#: A 3D image whose array axes run along -y, +x and -z (swapped and flipped), 0.9 × 0.7 × 2.5 mm.
SWAPPED_AFFINE = np.array([[0, 0.7, 0, 5.0], [-0.9, 0, 0, 3.0], [0, 0, -2.5, 1.0], [0, 0, 0, 1.0]])


def world_points(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """World coordinates (x, y, z) of every voxel centre, shape (*shape, 3)."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    homogeneous = np.concatenate([grid, np.zeros((*shape, 3 - len(shape))), np.ones((*shape, 1))], axis=-1)
    return (homogeneous @ affine.T)[..., :3]


def test_a_linear_field_of_world_coordinates_is_reproduced_exactly():
    """Independent of MONAI: a field linear in x, y, z sampled on a coarse grid, interpolated onto a
    finer, swapped and flipped grid, equals the field at the fine voxel centres inside the coarse one
    (and the border value outside it)."""
    coarse_affine = np.diag([1.5, 1.5, 2.0, 1.0])
    coarse_affine[:3, 3] = [-20.0, -40.0, -30.0]
    coarse_shape = (40, 50, 30)
    fine_shape = (70, 60, 20)
    slope = np.array([0.3, -1.2, 0.7])
    field = world_points(coarse_affine, coarse_shape) @ slope
    interpolator = AxisAlignedInterpolator.between(coarse_affine, coarse_shape, SWAPPED_AFFINE, fine_shape)
    assert interpolator is not None
    result = interpolator(torch.from_numpy(np.stack([field, -field])).float())
    # The coarse voxel index of each fine voxel centre; outside the coarse grid, border padding takes
    # the nearest coarse border value, i.e. the field at the clamped index.
    fine_in_coarse = world_points(SWAPPED_AFFINE, fine_shape) @ np.linalg.inv(coarse_affine)[:3, :3].T
    fine_in_coarse += np.linalg.inv(coarse_affine)[:3, 3]
    inside = np.all((fine_in_coarse >= 0) & (fine_in_coarse <= np.array(coarse_shape) - 1), axis=-1)
    assert 0.2 < inside.mean() < 0.8
    clamped = np.clip(fine_in_coarse, 0, np.array(coarse_shape) - 1)
    expected = (clamped @ coarse_affine[:3, :3].T + coarse_affine[:3, 3]) @ slope
    np.testing.assert_allclose(result[0].numpy(), expected, atol=1e-3)
    np.testing.assert_allclose(
        result[0].numpy()[inside], (world_points(SWAPPED_AFFINE, fine_shape) @ slope)[inside], atol=1e-3
    )
    np.testing.assert_allclose(result[1].numpy(), -result[0].numpy())


@pytest.mark.parametrize("ndim", [2, 3])
def test_interpolation_equals_monai_inverting_the_plan_spacing(ndim):
    """The same values as MONAI's inverse of the plan's Spacingd with linear interpolation."""
    shape = (90, 80, 24)[:ndim]
    affine = SWAPPED_AFFINE if ndim == 3 else np.diag([0.6, 0.6, 1.0, 1.0])
    image = ScalarImage(np.random.default_rng(0).random(shape, dtype=np.float32), affine)
    plan = Plan(
        dataset={"labels": {"0": "background", "1": "a"}},
        dim=ndim,
        orientation="RAS" if ndim == 3 else None,
        target_spacing=[1.3, 1.1, 2.0][:ndim],
        patch_size=[32] * ndim,
        batch_size=2,
        pool_counts=[3] * ndim,
        normalization=[{"scheme": "window", "low": 0, "high": 1}],
    )
    pipeline = preprocessing(plan, label_key=None, load=False)
    tensor = pipeline({"image": _metatensor_view(image)})["image"]
    scores = torch.from_numpy(np.random.default_rng(1).random((4, *tensor.shape[1:]), dtype=np.float32))
    trace = MetaTensor(torch.zeros(1), meta=dict(tensor.meta), applied_operations=tensor.applied_operations)

    def monai_inverse(volume: torch.Tensor) -> torch.Tensor:
        pred = MetaTensor(volume, meta=dict(tensor.meta))
        return inverse(pipeline, nearest=False)({"image": trace, "pred": pred})["pred"].as_tensor()

    interpolator = AxisAlignedInterpolator.between(
        to_affine_nd(3, np.asarray(tensor.affine, float)), tensor.shape[1:], image.affine, image.shape
    )
    result = interpolator(scores)
    assert result.shape == (4, *shape) and result.dtype == torch.float32
    torch.testing.assert_close(result, monai_inverse(scores), atol=1e-5, rtol=0)
    half = scores.half()  # the stitched scores' type
    torch.testing.assert_close(interpolator(half), monai_inverse(half.float()), atol=1e-5, rtol=0)


def test_labels_slab_by_slab_equal_the_argmax_of_the_whole_volume(monkeypatch):
    interpolator = AxisAlignedInterpolator.between(
        np.diag([2.0, 2.0, 3.0, 1.0]), (20, 18, 9), SWAPPED_AFFINE, (30, 40, 21)
    )
    scores = torch.from_numpy(np.random.default_rng(2).random((5, 20, 18, 9), dtype=np.float32)).half()
    whole = interpolator(scores).argmax(dim=0)
    monkeypatch.setattr(regrid, "SLAB_ELEMENTS", 5 * 30 * 40 * 4)  # slabs of 4 slices, the last one of 1
    labels = interpolator.labels(scores)
    assert labels.dtype == torch.uint8 and labels.shape == (30, 40, 21) and labels.is_contiguous()
    assert torch.equal(labels, whole.to(torch.uint8))


def test_grids_that_are_not_parallel_have_no_interpolator():
    angle = np.radians(30)
    rotated = np.eye(4)
    rotated[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    assert AxisAlignedInterpolator.between(np.eye(4), (10, 10, 10), rotated, (10, 10, 10)) is None
    shifted_plane = np.eye(4)
    shifted_plane[2, 3] = 4.0  # a 2D target on another plane than the 2D source
    assert AxisAlignedInterpolator.between(np.eye(4), (10, 10), shifted_plane, (10, 10)) is None
