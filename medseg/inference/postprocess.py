"""Clean a predicted label map: keep the largest component, drop small lesions, fill holes.

Each rule works class by class inside the class's bounding box (so a 600-slice CT never needs a
full-size int32 component map), and removed voxels become background. Sizes are physical: a component
smaller than ``min_volume_ml`` millilitres (cm² for a 2D image) is removed whatever the voxel spacing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from medseg.errors import ConfigError
from medseg.io.image import LabelMap
from medseg.metrics.units import voxel_size

#: Voxels touching by a face, an edge or a corner belong to the same component.
FULL_CONNECTIVITY = True


@dataclass(frozen=True)
class PostProcessing:
    """Which clean-up rules to apply. Class sets hold label values; empty means no class."""

    largest_component: Collection[int] = field(default_factory=frozenset)
    min_volume_ml: float = 0.0
    fill_holes: Collection[int] = field(default_factory=frozenset)

    @property
    def active(self) -> bool:
        return bool(self.largest_component) or self.min_volume_ml > 0 or bool(self.fill_holes)

    def notes(self, class_names: Mapping[int, str]) -> list[str]:
        """One sentence per active rule, for the reader of a report: what it did to the model's mask."""

        def named(values: Collection[int]) -> str:
            return ", ".join(class_names.get(value, str(value)) for value in sorted(values))

        notes = []
        if self.largest_component:
            notes.append(
                f"Post-processing kept only the largest connected region of {named(self.largest_component)}: "
                "its lesion count is at most 1 and any smaller separate lesion was removed."
            )
        if self.min_volume_ml > 0:
            notes.append(f"Post-processing removed regions smaller than {self.min_volume_ml:g} ml.")
        if self.fill_holes:
            notes.append(f"Post-processing filled holes in {named(self.fill_holes)}.")
        return notes


def class_values(requested: Sequence[str | int] | None, class_names: Mapping[int, str]) -> frozenset[int]:
    """Label values of the classes `requested` by name or value; None: no class; empty: every class."""
    if requested is None:
        return frozenset()
    if not requested:
        return frozenset(value for value in class_names if value > 0)
    by_name = {name.lower(): value for value, name in class_names.items()}
    values = set()
    for item in requested:
        text = str(item).strip()
        if text.isdigit() and int(text) in class_names:
            values.add(int(text))
        elif text.lower() in by_name:
            values.add(by_name[text.lower()])
        else:
            raise ConfigError(f"unknown class {item!r}; the model has {', '.join(class_names.values())}")
    return frozenset(values)


def _structure(ndim: int) -> np.ndarray:
    return ndimage.generate_binary_structure(ndim, ndim if FULL_CONNECTIVITY else 1)


def _keep_largest(mask: np.ndarray) -> np.ndarray:
    components, count = ndimage.label(mask, _structure(mask.ndim))
    if count <= 1:
        return mask
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def _drop_small(mask: np.ndarray, min_voxels: float) -> np.ndarray:
    components, count = ndimage.label(mask, _structure(mask.ndim))
    if count == 0:
        return mask
    sizes = np.bincount(components.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[components]


def postprocess(labels: LabelMap, rules: PostProcessing) -> LabelMap:
    """A cleaned copy of `labels` (the input is not changed)."""
    array = labels.array.copy()
    if not rules.active:
        return labels.with_array(array)
    min_voxels = rules.min_volume_ml / voxel_size(labels)  # mL in 3D, cm² in 2D
    boxes = ndimage.find_objects(array)
    for value, box in enumerate(boxes, start=1):
        if box is None:
            continue
        region = array[box]  # a view: edits land in `array`
        mask = region == value
        cleaned = mask
        if value in rules.largest_component:
            cleaned = _keep_largest(cleaned)
        if rules.min_volume_ml > 0:
            cleaned = _drop_small(cleaned, min_voxels)
        region[mask & ~cleaned] = 0
        if value in rules.fill_holes:
            holes = ndimage.binary_fill_holes(cleaned) & ~cleaned & (region == 0)
            region[holes] = value
    return labels.with_array(array)
