"""Preprocessing pipelines built from a plan: MONAI dictionary transforms with an exact spatial inverse.

`preprocessing(plan)` gives ``Compose([load, Orientationd, Spacingd, intensity])``:

* orientation: to ``plan.orientation`` (RAS for 3D; 2D images are left as they are);
* spacing: to ``plan.target_spacing``, linear for images and nearest for labels;
* intensity, per channel, the modality presets of the plan's ``normalization`` entries:

  - ``ct``: clip to the dataset's foreground 0.5-99.5 percentiles, then z-score with the dataset's
    foreground mean and std;
  - ``window``: clip to a fixed window (``low``/``high``, e.g. -160..240 HU) and scale it to 0..1;
  - ``zscore`` (MR): z-score each case on its own (``nonzero``: only nonzero voxels, others stay 0);
  - ``percentile`` (X-ray): map each case's ``lower``/``upper`` percentiles to 0..1 and clip.

* slice context (2.5D), for a slice plan with ``context_slices``: each slice gets its neighbours as extra
  channels (`SliceContextd`), after normalisation, so the padding beyond the volume is 0 in normalised
  units in training and inference alike.

`inverse(pipeline, key)` undoes the spatial steps for a prediction, landing exactly on the input grid
(same shape and affine) with nearest-neighbour interpolation for labels.
"""

from __future__ import annotations

from typing import Any

from monai.transforms import (
    Compose,
    EnsureTyped,
    Invertd,
    NormalizeIntensity,
    Orientationd,
    ScaleIntensityRange,
    ScaleIntensityRangePercentiles,
    Spacingd,
    Transform,
)

from medseg.data.planner import Plan
from medseg.data.transforms import ClipZScore, LoadMedsegImaged, PerChanneld, SliceContextd
from medseg.errors import ConfigError


def normalizer(entry: dict[str, Any]) -> Transform:
    """The MONAI array transform for one channel's plan ``normalization`` entry."""
    scheme = entry.get("scheme")
    try:
        if scheme == "ct":
            return ClipZScore(entry["clip_low"], entry["clip_high"], entry["mean"], entry["std"])
        if scheme == "window":
            return ScaleIntensityRange(entry["low"], entry["high"], 0.0, 1.0, clip=True)
        if scheme == "zscore":
            return NormalizeIntensity(nonzero=bool(entry.get("nonzero", False)))
        if scheme == "percentile":
            return ScaleIntensityRangePercentiles(entry["lower"], entry["upper"], 0.0, 1.0, clip=True)
    except KeyError as missing:
        raise ConfigError(f"normalization scheme {scheme!r} needs the key {missing}") from None
    raise ConfigError(f"unknown normalization scheme {scheme!r}; use ct, window, zscore or percentile")


def preprocessing(
    plan: Plan, image_key: str = "image", label_key: str | None = "label", load: bool = True
) -> Compose:
    """The plan's preprocessing for case records (or, with ``load=False``, dicts of MetaTensors).

    Pass ``label_key=None`` for inference, when there is no label.
    """
    keys = [image_key] if label_key is None else [image_key, label_key]
    modes = ["bilinear", "nearest"][: len(keys)]
    steps: list[Transform] = []
    if load:
        steps.append(LoadMedsegImaged(image_key, label_key or "label"))
    if plan.orientation:
        steps.append(Orientationd(keys, axcodes=plan.orientation, labels=None))
    steps.append(Spacingd(keys, pixdim=plan.target_spacing, mode=modes, padding_mode="border"))
    steps.append(PerChanneld(image_key, [normalizer(entry) for entry in plan.normalization]))
    if plan.context_slices:
        steps.append(SliceContextd(image_key, plan.slice_axis, plan.context_slices))
    steps.append(EnsureTyped(image_key, dtype="float32", track_meta=True))
    return Compose(steps)


def inverse(pipeline: Compose, key: str = "pred", orig_key: str = "image", nearest: bool = True) -> Invertd:
    """A transform that brings ``data[key]`` from the preprocessed grid back onto the input grid.

    `nearest` for label maps; pass False to interpolate probabilities linearly.
    """
    return Invertd(key, transform=pipeline, orig_keys=orig_key, nearest_interp=nearest)
