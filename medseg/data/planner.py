"""Turn a dataset fingerprint into a training plan (plans.json), in the spirit of nnU-Net's planner.

Every heuristic is a named class attribute of `Planner` with the reason next to it, and every decision
is a small method, so a subclass (or a person editing plans.json) can change one thing at a time:

* `target_spacing`: the median spacing; for anisotropic data the coarse axis gets a finer percentile.
* `pool_counts`: how often the network may halve each axis (not below a minimum feature map size, and
  not an axis much coarser than the finest one, so anisotropic voxels become roughly isotropic first).
* `patch_size`: the median image size at the target spacing, rounded up to what the network divides,
  then shrunk along its longest physical axis until it fits the voxel budget.
* `batch_size`: as many patches as fit the batch voxel budget, but not more than a small share of the
  dataset, and at least `MIN_BATCH_SIZE`.
* `normalization`: per channel, chosen from the modality: CT clips to the foreground 0.5-99.5
  percentiles and z-scores with the foreground mean/std of the whole dataset; MR z-scores each case on
  its own; X-ray maps each case's 0.5-99.5 percentiles to 0-1.
* `mirror_axes`: the axes that training flips and test-time mirroring may use: none for radiographs,
  not the left-right axis when a label names a side, every axis otherwise.
* `slice_axis`: whether a 3D dataset gets a 2D network run on its slices (nnU-Net's "2d") and along
  which axis: proposed for strongly anisotropic data, forced by ``dims=2`` (``medseg train --dims 2``).
  Patch size, pooling and batch size are then planned for the slices (`in_plane`).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medseg.errors import ConfigError, InputError
from medseg.utils.atomic import write_text_atomic

#: Version of the plans.json layout; bump when a field changes meaning.
PLAN_VERSION = 1

#: Normalisation schemes understood by `medseg.data.presets`.
NORMALIZATION_SCHEMES = ("ct", "zscore", "percentile", "window")


@dataclass
class Plan:
    """What training and inference need to preprocess and patch a dataset (stored as plans.json)."""

    dataset: dict[str, Any]
    dim: int
    #: Orientation codes every case is turned to first (3D); None leaves 2D images as they are.
    orientation: str | None
    target_spacing: list[float]
    patch_size: list[int]
    batch_size: int
    #: Times the network halves each axis; patch sizes are multiples of 2**pool_counts.
    pool_counts: list[int]
    #: One dict per channel: {"modality", "scheme", ...scheme parameters}.
    normalization: list[dict[str, Any]]
    interpolation: dict[str, str] = field(default_factory=lambda: {"image": "linear", "label": "nearest"})
    fingerprint: dict[str, Any] = field(default_factory=dict)
    heuristics: dict[str, Any] = field(default_factory=dict)
    #: Spatial axes (0 = first array axis) that training flips and test-time mirroring may use. None, as
    #: in plans written before this field existed, means every axis. A slice plan's `slice_axis` is never
    #: mirrored, listed or not (see `mirroring`).
    mirror_axes: list[int] | None = None
    #: A 3D plan whose network is 2D: the spatial axis it slices along (its patch size there is 1), and
    #: why the planner chose slices. None for a network of the data's own rank.
    slice_axis: int | None = None
    slice_reason: str | None = None
    #: A slice plan whose 2D network also sees this many neighbouring slices on either side as extra
    #: input channels (2.5D, `medseg.data.transforms.SliceContext`); 0 for one slice.
    context_slices: int = 0
    version: int = PLAN_VERSION

    @property
    def network_dims(self) -> int:
        """Spatial rank of the network: 2 for a slice plan, else the data's."""
        return 2 if self.slice_axis is not None else self.dim

    @property
    def network_in_channels(self) -> int:
        """Input channels of the network: the image's, times the slices each one sees."""
        return len(self.normalization) * (2 * self.context_slices + 1)

    @property
    def mirroring(self) -> tuple[int, ...]:
        """The axes mirroring may use (`mirror_axes`, or every axis when it is None), never a slice plan's
        `slice_axis`: its 2D network was not trained flipped along it, and a 2.5D stack would reverse."""
        axes = range(self.dim) if self.mirror_axes is None else self.mirror_axes
        return tuple(axis for axis in axes if axis != self.slice_axis)

    @property
    def label_names(self) -> dict[int, str]:
        return {int(k): v for k, v in self.dataset.get("labels", {}).items()}

    @property
    def num_classes(self) -> int:
        """Number of output classes including background (largest label + 1)."""
        return max(self.label_names, default=1) + 1


class Planner:
    """Propose a `Plan` from a fingerprint (see the module docstring). Override attributes or methods."""

    #: An axis whose spacing is this many times the finest one makes the dataset anisotropic (nnU-Net: 3).
    ANISOTROPY_RATIO: ClassVar[float] = 3.0
    #: ...and it counts only if the coarse axis also has this many times fewer voxels than the others.
    ANISOTROPY_SIZE_RATIO: ClassVar[float] = 3.0
    #: Percentile of the spacings used for the coarse axis of anisotropic data (finer than the median, so
    #: the typical thick-slice case is not squashed further).
    COARSE_AXIS_PERCENTILE: ClassVar[float] = 10.0
    #: Voxels in one patch that the network and a batch of a few fit comfortably (about nnU-Net's default
    #: 3D patch of 128^3, and a 2D patch of 512^2).
    PATCH_VOXEL_BUDGET: ClassVar[dict[int, int]] = {2: 512 * 512, 3: 128**3}
    #: Voxels in one whole batch (patches x batch size).
    BATCH_VOXEL_BUDGET: ClassVar[dict[int, int]] = {2: 12 * 512 * 512, 3: 2 * 128**3}
    #: A batch should not show more than this share of all the dataset's voxels (nnU-Net: 5%).
    MAX_BATCH_DATASET_FRACTION: ClassVar[float] = 0.05
    MIN_BATCH_SIZE: ClassVar[int] = 2
    #: The network never halves an axis more often than this...
    MAX_POOLINGS: ClassVar[int] = 5
    #: ...nor below this many voxels in its smallest feature map.
    MIN_FEATURE_MAP_SIZE: ClassVar[int] = 4
    #: An axis is halved only while its spacing is at most this many times the finest axis spacing.
    POOLING_SPACING_RATIO: ClassVar[float] = 2.0
    #: Modality names (upper case) and the normalisation scheme each gets; unknown ones get z-score.
    MODALITY_SCHEMES: ClassVar[dict[str, str]] = {
        "CT": "ct",
        **dict.fromkeys(
            ("MR", "MRI", "T1", "T1W", "T1C", "T2", "T2W", "FLAIR", "PD", "ADC", "DWI"), "zscore"
        ),
        **dict.fromkeys(("XRAY", "X-RAY", "CXR", "DX", "CR", "XR", "RADIOGRAPH"), "percentile"),
    }
    DEFAULT_SCHEME: ClassVar[str] = "zscore"
    #: Per-case percentiles (in %) mapped to 0 and 1 by the X-ray scheme.
    PERCENTILE_RANGE: ClassVar[tuple[float, float]] = (0.5, 99.5)
    #: Normalisation schemes of images that are never mirrored: a radiograph is one fixed projection
    #: whose left and right (heart, liver) and top and bottom differ, so a mirrored one shows the network
    #: anatomy that does not occur (chest X-ray lungs: 0.966 Dice with flips, see docs/training.md).
    UNMIRRORED_SCHEMES: ClassVar[tuple[str, ...]] = ("percentile",)
    #: Words in a label name that tie it to one side of the body: mirroring left-right would swap such
    #: classes (TotalSegmentator also trains without left-right mirroring for this reason).
    SIDE_WORDS: ClassVar[tuple[str, ...]] = ("left", "right")
    #: The left-right array axis of a plan oriented to RAS (3D).
    LEFT_RIGHT_AXIS: ClassVar[int] = 0
    #: A 3D dataset is proposed a 2D network on its slices when one axis is this many times coarser than
    #: the finest (and holds `ANISOTROPY_SIZE_RATIO` times fewer voxels): thick-slice scans, where a 3D
    #: patch sees few slices and the slices barely correlate (nnU-Net's 2d wins on such data).
    SLICE_ANISOTROPY_RATIO: ClassVar[float] = 5.0

    def __init__(self, fingerprint: dict[str, Any]) -> None:
        self.fingerprint = fingerprint
        self.dim = int(fingerprint["dim"])
        self.spacings = np.asarray(fingerprint["spacings"], dtype=np.float64)
        self.shapes = np.asarray(fingerprint["shapes"], dtype=np.float64)

    def coarse_axis(self, ratio: float) -> tuple[int, float] | None:
        """The axis whose median spacing is over `ratio` times every other axis's and which holds
        `ANISOTROPY_SIZE_RATIO` times fewer voxels, with its spacing ratio; None for other data."""
        target = np.median(self.spacings, axis=0)
        median_shape = np.median(self.shapes, axis=0)
        coarse = int(np.argmax(target))
        others = [axis for axis in range(self.dim) if axis != coarse]
        spacing_ratio = float(target[coarse] / target[others].max())
        few_slices = median_shape[coarse] * self.ANISOTROPY_SIZE_RATIO < median_shape[others].min()
        return (coarse, spacing_ratio) if spacing_ratio > ratio and few_slices else None

    def target_spacing(self) -> list[float]:
        """Median spacing; the coarse axis of anisotropic data gets `COARSE_AXIS_PERCENTILE` instead."""
        target = np.median(self.spacings, axis=0)
        anisotropic = self.coarse_axis(self.ANISOTROPY_RATIO)
        if anisotropic is not None:
            coarse = anisotropic[0]
            finer = np.percentile(self.spacings[:, coarse], self.COARSE_AXIS_PERCENTILE)
            in_plane = max(target[axis] for axis in range(self.dim) if axis != coarse)
            target[coarse] = max(finer, in_plane)  # never finer than the in-plane axes
        return [float(s) for s in target]

    def slice_axis(self, dims: int | None = None) -> tuple[int | None, str | None]:
        """The axis a 2D network slices this 3D data along, and why; (None, None) for a network of the
        data's rank. `dims` 2 forces slices, 3 forbids them, None proposes them for anisotropic data."""
        if dims not in (None, 2, 3):
            raise ConfigError(f"dims must be 2 or 3, got {dims!r}")
        if dims == 3 and self.dim == 2:
            raise ConfigError("dims 3 asked for a 2D dataset")
        if self.dim == 2 or dims == 3:
            return None, None
        anisotropic = self.coarse_axis(self.SLICE_ANISOTROPY_RATIO if dims is None else self.ANISOTROPY_RATIO)
        if anisotropic is not None:
            axis, ratio = anisotropic
            return axis, (
                f"axis {axis} is {ratio:.1f}x coarser than the others and holds few slices: a 2D network "
                "on its slices" + (" (forced by dims 2)" if dims == 2 else " (dims 3 plans a 3D network)")
            )
        if dims is None:
            return None, None
        median_shape = np.median(self.shapes, axis=0)
        axis = int(np.argmin(median_shape))
        return axis, f"dims 2 asked for: slices along axis {axis}, the one with the fewest voxels"

    def in_plane(self, axis: int) -> Planner:
        """A planner for the 2D slices across `axis` of every case."""
        keep = [other for other in range(self.dim) if other != axis]
        slices = {
            **self.fingerprint,
            "dim": 2,
            "spacings": self.spacings[:, keep].tolist(),
            "shapes": self.shapes[:, keep].tolist(),
        }
        return type(self)(slices)

    def median_shape_at(self, spacing: list[float]) -> np.ndarray:
        """Median image shape after resampling every case to `spacing`."""
        return np.median(self.shapes * self.spacings / np.asarray(spacing), axis=0)

    def pool_counts(self, patch_size: list[int], spacing: list[float]) -> list[int]:
        """Times each axis is halved (`MAX_POOLINGS`, `MIN_FEATURE_MAP_SIZE`, `POOLING_SPACING_RATIO`)."""
        size = np.asarray(patch_size, dtype=np.float64)
        current = np.asarray(spacing, dtype=np.float64)
        counts = np.zeros(self.dim, dtype=int)
        for _ in range(self.MAX_POOLINGS):
            pool = (current <= self.POOLING_SPACING_RATIO * current.min()) & (
                size / 2 >= self.MIN_FEATURE_MAP_SIZE
            )
            if not pool.any():
                break
            counts += pool
            size = np.where(pool, size / 2, size)
            current = np.where(pool, current * 2, current)
        return counts.tolist()

    def patch_size(self, spacing: list[float]) -> list[int]:
        """Cover the median image, rounded up to multiples of the network's divisor, within the budget."""
        patch = [max(self.MIN_FEATURE_MAP_SIZE, math.ceil(n)) for n in self.median_shape_at(spacing)]
        while True:
            divisors = [2**count for count in self.pool_counts(patch, spacing)]
            patch = [math.ceil(n / d) * d for n, d in zip(patch, divisors, strict=True)]
            if math.prod(patch) <= self.PATCH_VOXEL_BUDGET[self.dim]:
                return patch
            extent_mm = np.asarray(patch) * np.asarray(spacing)
            axis = int(np.argmax(np.where(np.asarray(patch) > divisors, extent_mm, -1)))
            patch[axis] -= divisors[axis]

    def batch_size(self, patch_size: list[int], dataset_voxels: float | None = None) -> int:
        """Patches per batch: the batch voxel budget, capped by a share of the dataset (`dataset_voxels`,
        by default this planner's cases), at least the min."""
        patch_voxels = math.prod(patch_size)
        by_budget = self.BATCH_VOXEL_BUDGET[self.dim] // patch_voxels
        if dataset_voxels is None:
            dataset_voxels = float(np.prod(self.shapes, axis=1).sum())
        by_dataset = int(self.MAX_BATCH_DATASET_FRACTION * dataset_voxels // patch_voxels)
        return int(max(self.MIN_BATCH_SIZE, min(by_budget, by_dataset)))

    def normalization(self, channel: dict[str, Any]) -> dict[str, Any]:
        """The normalisation of one channel from its fingerprint intensity statistics and modality."""
        modality = str(channel.get("modality", "unknown"))
        scheme = self.MODALITY_SCHEMES.get(modality.upper(), self.DEFAULT_SCHEME)
        if scheme == "ct" and "mean" not in channel:
            raise ConfigError(
                f"channel {channel['channel']}: CT normalisation needs foreground voxels; none found"
            )
        if scheme == "ct":
            return {
                "modality": modality,
                "scheme": "ct",
                "clip_low": channel["percentile_00_5"],
                "clip_high": channel["percentile_99_5"],
                "mean": channel["mean"],
                "std": max(channel["std"], 1e-8),
            }
        if scheme == "percentile":
            low, high = self.PERCENTILE_RANGE
            return {"modality": modality, "scheme": "percentile", "lower": low, "upper": high}
        return {"modality": modality, "scheme": "zscore", "nonzero": False}

    def heuristics(self) -> dict[str, Any]:
        """The settings used (for this dimension), recorded in the plan so a plan says how it was made."""
        used = {}
        for name in dir(type(self)):
            value = getattr(self, name)
            if name.isupper() and name != "MODALITY_SCHEMES":
                used[name] = value[self.dim] if isinstance(value, dict) else value
        return used

    def mirror_axes(self, normalization: list[dict[str, Any]], labels: dict[str, str]) -> list[int]:
        """Axes safe to mirror (`UNMIRRORED_SCHEMES`, `SIDE_WORDS`, `LEFT_RIGHT_AXIS`)."""
        if any(channel["scheme"] in self.UNMIRRORED_SCHEMES for channel in normalization):
            return []
        words = {word for name in labels.values() for word in re.split(r"[^a-z]+", str(name).lower())}
        if self.dim == 3 and words & set(self.SIDE_WORDS):
            return [axis for axis in range(self.dim) if axis != self.LEFT_RIGHT_AXIS]
        return list(range(self.dim))

    def class_names(self, declared: dict[str, str]) -> dict[str, str]:
        """The classes the network outputs: the dataset's names, else every label value the fingerprint
        found, named ``label_<v>`` (background 0 always). Values found but not declared never reach here:
        the fingerprint refuses them by file."""
        if declared:
            return {"0": "background", **{str(k): str(v) for k, v in declared.items()}}
        found = sorted(int(value) for value in self.fingerprint.get("classes", {}) if int(value) > 0)
        return {"0": "background", **{str(value): f"label_{value}" for value in found}}

    def plan(self, dataset_info: dict[str, Any], dims: int | None = None) -> Plan:
        """The full plan; `dataset_info` (name, source, labels, modalities...) is stored as given, with
        its labels completed by `class_names`; `dims` as in `slice_axis`."""
        dataset_info = {**dataset_info, "labels": self.class_names(dataset_info.get("labels") or {})}
        spacing = self.target_spacing()
        axis, reason = self.slice_axis(dims)
        if axis is None:
            patch = self.patch_size(spacing)
            pools, batch, heuristics = (
                self.pool_counts(patch, spacing),
                self.batch_size(patch),
                self.heuristics(),
            )
        else:
            # the slices stay as they are along the axis they are stacked on (nnU-Net's 2d): its median
            # spacing, not the finer percentile a 3D network's patch gets
            spacing[axis] = float(np.median(self.spacings[:, axis]))
            slices = self.in_plane(axis)
            slice_spacing = [s for other, s in enumerate(spacing) if other != axis]
            slice_patch = slices.patch_size(slice_spacing)
            pools = slices.pool_counts(slice_patch, slice_spacing)
            batch = slices.batch_size(slice_patch, dataset_voxels=float(np.prod(self.shapes, axis=1).sum()))
            heuristics = slices.heuristics()
            patch, pools = [*slice_patch[:axis], 1, *slice_patch[axis:]], [*pools[:axis], 0, *pools[axis:]]
        normalization = [self.normalization(channel) for channel in self.fingerprint["intensity"]]
        summary = {key: value for key, value in self.fingerprint.items() if key not in ("spacings", "shapes")}
        return Plan(
            dataset=dataset_info,
            dim=self.dim,
            orientation="RAS" if self.dim == 3 else None,
            target_spacing=spacing,
            patch_size=patch,
            batch_size=batch,
            pool_counts=pools,
            normalization=normalization,
            fingerprint=summary,
            heuristics=heuristics,
            mirror_axes=[
                mirrored
                for mirrored in self.mirror_axes(normalization, dataset_info.get("labels", {}))
                if mirrored != axis  # flipping a one-slice window changes nothing
            ],
            slice_axis=axis,
            slice_reason=reason,
        )


def save_plan(plan: Plan, path: str | os.PathLike) -> Path:
    """Write `plan` as indented, human-editable JSON (atomically)."""
    return write_text_atomic(path, json.dumps(asdict(plan), indent=2) + "\n")


def load_plan(path: str | os.PathLike) -> Plan:
    """Read plans.json, checking the fields training relies on."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(path, f"cannot read plan ({error})") from None
    return plan_from_dict(raw, path)


def plan_from_dict(raw: Any, source: str | os.PathLike | None = None) -> Plan:
    """A `Plan` from its plans.json mapping, checked; a bad one is an `InputError` naming `source`."""
    if not isinstance(raw, dict):
        raise InputError(source, f"not a medseg plan (a {type(raw).__name__}, not a mapping)")
    try:
        plan = Plan(**raw)
    except TypeError as error:
        raise InputError(source, f"not a medseg plan ({error})") from None
    if plan.version != PLAN_VERSION:
        raise InputError(source, f"plan version {plan.version}; this medseg reads version {PLAN_VERSION}")
    if plan.dim not in (2, 3):
        raise InputError(source, f"plan dim must be 2 or 3, got {plan.dim!r}")
    for name in ("target_spacing", "patch_size", "pool_counts"):
        if not isinstance(getattr(plan, name), list) or len(getattr(plan, name)) != plan.dim:
            raise InputError(source, f"{name} must have {plan.dim} values, got {getattr(plan, name)}")
    for axis, (size, count) in enumerate(zip(plan.patch_size, plan.pool_counts, strict=True)):
        if size % 2**count:
            raise InputError(source, f"patch_size[{axis}] = {size} is not divisible by 2**{count}")
    if any(not 0 <= axis < plan.dim for axis in plan.mirroring):
        raise InputError(
            source, f"mirror_axes {plan.mirror_axes} must be axes 0..{plan.dim - 1} (or null for all)"
        )
    if plan.slice_axis is not None and (
        plan.dim != 3 or plan.slice_axis not in range(3) or plan.patch_size[plan.slice_axis] != 1
    ):
        raise InputError(
            source, f"slice_axis {plan.slice_axis!r} needs a 3D plan whose patch_size is 1 along that axis"
        )
    if not isinstance(plan.context_slices, int) or plan.context_slices < 0:
        raise InputError(source, f"context_slices must be a whole number >= 0, got {plan.context_slices!r}")
    if plan.context_slices and plan.slice_axis is None:
        raise InputError(source, "context_slices needs a slice plan (a 2D network on 3D volumes)")
    if not plan.normalization:
        raise InputError(source, "the plan names no channel normalisation")
    for channel in plan.normalization:
        if not isinstance(channel, dict) or channel.get("scheme") not in NORMALIZATION_SCHEMES:
            scheme = channel.get("scheme") if isinstance(channel, dict) else channel
            raise InputError(source, f"normalization scheme {scheme!r}; use {NORMALIZATION_SCHEMES}")
    return plan
