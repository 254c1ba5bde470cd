"""MONAI-style transforms that MONAI lacks, each an array transform plus a thin dictionary wrapper.

* `LoadMedsegImaged`: read a case record with medseg's readers into MetaTensors (instead of MONAI's
  LoadImage, which logs an nvImageCodec warning each time it is built and knows no DICOM SEG).
* `ClipZScore` / `ClipZScored`: clip to fixed bounds, then z-score with fixed mean/std (CT with
  dataset-wide foreground statistics, as nnU-Net does).
* `PerChannel` / `PerChanneld`: apply a different transform to each channel (mixed modalities).
* `ArrayWrapperd`: the dictionary form every wrapper here shares (apply its array transform per key).
* `SliceContext` / `SliceContextd`: give every slice its neighbours as extra channels (2.5D input for a
  2D network run on the slices of a volume).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type

from medseg.data.loading import load_case_channels, load_images
from medseg.data.metatensor import image_to_metatensor


class LoadMedsegImaged(Transform):
    """Replace the paths under `image_key` (and `label_key`, if present) by channel-first MetaTensors.

    The input is a case record (see `medseg.data.datasets`); images become float32, the label one
    integer channel on the same grid. Other keys pass through unchanged.
    """

    def __init__(self, image_key: str = "image", label_key: str = "label") -> None:
        self.image_key = image_key
        self.label_key = label_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        record = {"image": data[self.image_key], "id": data.get("id")}
        if data.get(self.label_key) is None:
            out[self.image_key] = image_to_metatensor(load_images(record))
            return out
        record.update(
            label=data[self.label_key], mask_threshold=data.get("mask_threshold"), roi_map=data.get("roi_map")
        )
        images, label = load_case_channels(record)
        out[self.image_key] = image_to_metatensor(images)
        out[self.label_key] = image_to_metatensor(label)
        return out


class ArrayWrapperd(MapTransform):
    """The dictionary form of the array transform `self.transform`: applied to each key's value."""

    transform: Transform

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        for key in self.key_iterator(out):
            out[key] = self.transform(out[key])
        return out


class ClipZScore(Transform):
    """``(clip(x, low, high) - mean) / std`` with fixed values (e.g. from a plan)."""

    def __init__(self, low: float, high: float, mean: float, std: float) -> None:
        if not low < high or std <= 0:
            raise ValueError(f"need low < high and std > 0, got {low}, {high}, {std}")
        self.low, self.high, self.mean, self.std = low, high, mean, std

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return (img.float().clamp(self.low, self.high) - self.mean) / self.std


class ClipZScored(ArrayWrapperd):
    """Dictionary wrapper of `ClipZScore`."""

    def __init__(self, keys: KeysCollection, low: float, high: float, mean: float, std: float) -> None:
        super().__init__(keys)
        self.transform = ClipZScore(low, high, mean, std)


class PerChannel(Transform):
    """Apply ``transforms[c]`` to channel c of a channel-first tensor (one transform per channel)."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[0] != len(self.transforms):
            raise ValueError(f"{len(self.transforms)} channel transforms for {img.shape[0]} channels")
        if len(self.transforms) == 1:  # no concatenation: saves a copy of the whole (large) volume
            return self.transforms[0](img)
        channels = [transform(img[c : c + 1]) for c, transform in enumerate(self.transforms)]
        return torch.cat(channels)


class PerChanneld(ArrayWrapperd):
    """Dictionary wrapper of `PerChannel`."""

    def __init__(self, keys: KeysCollection, transforms: Sequence[Transform]) -> None:
        super().__init__(keys)
        self.transform = PerChannel(transforms)


class SliceContext(Transform):
    """Stack each slice with its `count` neighbours on either side along spatial `axis` as channels.

    ``(C, *spatial)`` becomes ``(C * (2 * count + 1), *spatial)``: channel ``c * (2 * count + 1) + j`` at
    slice ``k`` holds channel ``c`` of slice ``k + j - count``, zero beyond the first and last slice. A
    2D network given one slice of the result sees that slice in the middle of its neighbours (2.5D); the
    grid, and a MetaTensor's affine and transform trace, stay as they are.
    """

    def __init__(self, axis: int, count: int) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        self.axis, self.count = axis, count

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        dim = self.axis + 1  # the channel comes first
        depth, width = img.shape[dim], 2 * self.count + 1
        stacked = torch.zeros((img.shape[0], width, *img.shape[1:]), dtype=img.dtype, device=img.device)
        plain = img.as_tensor() if hasattr(img, "as_tensor") else img
        for j in range(width):
            shift = j - self.count  # neighbour k + shift lands on slice k
            first, last = max(0, -shift), min(depth, depth - shift)
            if first < last:
                stacked[:, j].narrow(dim, first, last - first).copy_(
                    plain.narrow(dim, first + shift, last - first)
                )
        context, *_ = convert_to_dst_type(stacked.flatten(0, 1), img)
        return context


class SliceContextd(ArrayWrapperd):
    """Dictionary wrapper of `SliceContext`."""

    def __init__(self, keys: KeysCollection, axis: int, count: int) -> None:
        super().__init__(keys)
        self.transform = SliceContext(axis, count)
