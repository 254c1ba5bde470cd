"""What a label map contains, per class, in physical units: size, lesions, centroid, best slice.

All figures come from the voxel grid and its affine (RAS+ mm, see `medseg.io.image`); nothing that could
identify the patient is read or returned. Lesions are connected components with full connectivity
(26 in 3D, 8 in 2D; `medseg.metrics.components`).

The "axial axis" of a 3D label map is the array axis closest to the patient's superior-inferior
direction; slice indices are along that axis in the label map's own array order, as a viewer opening the
file numbers them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from medseg.io.image import Image, LabelMap
from medseg.metrics.components import label_components
from medseg.metrics.units import size_key, voxel_size

#: Row of the RAS+ direction matrix that points to the patient's Superior.
_SUPERIOR = 2


def axial_axis(image: Image) -> int:
    """The array axis of a 3D image closest to the superior-inferior direction."""
    if image.ndim != 3:
        raise ValueError(f"a {image.ndim}D image has no axial axis")
    return int(np.argmax(np.abs(image.direction[_SUPERIOR, :3])))


def class_names_for(mask: LabelMap, class_names: Mapping[int, str]) -> dict[int, str]:
    """`class_names` without background, plus ``label_<v>`` for any label in `mask` it does not name."""
    names = {int(value): str(name) for value, name in class_names.items() if int(value) != 0}
    for value in np.unique(mask.array):
        if int(value) != 0 and int(value) not in names:
            names[int(value)] = f"label_{int(value)}"
    return dict(sorted(names.items()))


def _bounding_boxes(mask: LabelMap, labels: list[int]) -> dict[int, tuple[slice, ...] | None]:
    """Bounding box of every label value in `labels` (None when absent), in one pass over the array."""
    if not labels:
        return {}
    array = mask.array.astype(np.int64, copy=False)
    array = np.where((array > 0) & (array <= max(labels)), array, 0)
    boxes = ndimage.find_objects(array, max_label=max(labels))
    return {value: boxes[value - 1] for value in labels}


def _centroid_mm(mask: LabelMap, region: np.ndarray, box: tuple[slice, ...]) -> list[float]:
    offset = np.array([part.start for part in box], dtype=np.float64)
    index = np.argwhere(region).mean(axis=0) + offset
    return [float(value) for value in mask.index_to_world(index[None])[0]]


def _largest_slice(region: np.ndarray, box: tuple[slice, ...], axis: int) -> int:
    """Index (along `axis`, whole-array numbering) of the slice with the most voxels of `region`."""
    other_axes = tuple(a for a in range(region.ndim) if a != axis)
    return int(np.argmax(region.sum(axis=other_axes))) + box[axis].start


def structure_stats(mask: LabelMap, class_names: Mapping[int, str]) -> dict[str, dict]:
    """Per non-zero class (by name): voxel count, volume, lesion count, centroid and largest slice.

    Keys of each entry: ``label``; ``voxels``; ``volume_ml`` (3D) or ``area_cm2`` (2D); ``lesions``
    (connected components); ``centroid_ras_mm`` ([x, y, z] or None when the class is absent);
    ``largest_slice`` (3D: index along `axial_axis` of the slice with the largest cross-section; None
    in 2D or when absent). Classes of `class_names` that are absent are listed with zero voxels, and
    labels present but not named appear as ``label_<v>``: nothing in the mask goes unreported.
    """
    names = class_names_for(mask, class_names)
    boxes = _bounding_boxes(mask, list(names))
    axis = axial_axis(mask) if mask.ndim == 3 else None
    stats: dict[str, dict] = {}
    for value, name in names.items():
        box = boxes[value]
        entry: dict = {"label": value, "voxels": 0, size_key(mask): 0.0, "lesions": 0}
        entry.update(centroid_ras_mm=None, largest_slice=None)
        if box is not None:
            region = mask.array[box] == value
            voxels = int(region.sum())
            entry.update(
                {size_key(mask): voxels * voxel_size(mask)},
                voxels=voxels,
                lesions=label_components(region)[1],
                centroid_ras_mm=_centroid_mm(mask, region, box),
                largest_slice=None if axis is None else _largest_slice(region, box, axis),
            )
        stats[name] = entry
    return stats


def lesion_list(mask: LabelMap, label: int) -> list[dict]:
    """The connected components of class `label`, largest first: voxels, size (`size_key`), centroid."""
    components, count = label_components(mask.array == label)
    if count == 0:
        return []
    voxels = np.bincount(components.ravel(), minlength=count + 1)[1:]
    centres = ndimage.center_of_mass(np.ones_like(components), components, range(1, count + 1))
    world = mask.index_to_world(np.asarray(centres, dtype=np.float64))
    lesions = [
        {
            "voxels": int(size),
            size_key(mask): float(size) * voxel_size(mask),
            "centroid_ras_mm": [float(v) for v in point],
        }
        for size, point in zip(voxels, world, strict=True)
    ]
    return sorted(lesions, key=lambda lesion: -lesion["voxels"])
