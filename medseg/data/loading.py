"""Read one case record (see `medseg.data.datasets`) into images and a label map on one grid.

Images come back as float32 `ScalarImage` (datasets mix uint8 and float32 files); labels as integer
`LabelMap` (float label files holding whole numbers are cast; anything else is refused). A label in
another orientation than its image (e.g. a NIfTI y-flipped relative to its DICOM series) is reoriented
exactly. Label values are read as they are, unless the record sets a ``mask_threshold`` or the values are
those of an 8-bit picture of a mask (0/255, anti-aliased; `medseg.io.masks`): then they are binarised and
``label.meta["interpretation"]`` says how; after that, image and label must share their grid or a
`GeometryError` names both files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.errors import ConfigError, GeometryError, InputError
from medseg.io.image import Image, LabelMap, ScalarImage
from medseg.io.masks import interpret_mask
from medseg.io.reader import read_image
from medseg.io.resample import reorient
from medseg.io.rtstruct import is_rtstruct_file, paint, read_rtstruct
from medseg.io.seg import read_seg

#: A DICOM SEG label file ends like this (a DICOM series is a folder).
SEG_SUFFIX = ".dcm"


def channel_paths(record: dict) -> list[Path]:
    """The image path(s) of a record, one per channel."""
    image = record["image"]
    return [Path(p) for p in (image if isinstance(image, list) else [image])]


def _read(path: Path, kind: type[Image]) -> Image:
    try:
        return read_image(path, kind)
    except InputError as error:
        if error.path is None:  # some readers report the problem without the file: name it here
            raise InputError(path, error.problem.removeprefix(f"{path}: ")) from None
        raise


def _describe(image: Image) -> str:
    spacing, origin = np.round(image.spacing, 4).tolist(), np.round(image.origin, 3).tolist()
    return f"shape {image.shape}, spacing {spacing}, origin {origin}"


def _check_grid(image: Image, image_path: Path, other: Image, other_path: Path) -> None:
    if not image.same_grid(other):
        raise GeometryError(
            other_path,
            f"grid ({_describe(other)}) does not match image {image_path} ({_describe(image)})",
        )


def rtstruct_classes(path: Path, reference: ScalarImage, roi_map: dict[str, int]) -> LabelMap:
    """An RTSTRUCT label as classes: each ROI whose name `roi_map` knows (any case) becomes its class,
    larger structures painted first; a class none of whose names this case has is an error naming the
    file (never silently background)."""
    if not roi_map:
        raise InputError(
            path,
            "an RTSTRUCT label needs class names for its ROIs, e.g. --labels "
            + """'{"1": ["Lung-Left", "Lung_L"]}'""",
        )
    structures = read_rtstruct(path, reference)
    labels = paint(structures, reference.shape, lambda structure: roi_map.get(structure.name.strip().lower()))
    found = {roi_map.get(structure.name.strip().lower()) for structure in structures}
    missing = sorted(set(roi_map.values()) - found)
    if missing:
        names = sorted(s.name for s in structures)
        raise InputError(path, f"no ROI for class(es) {missing}; its ROIs are {', '.join(names)}")
    return LabelMap(labels, reference.affine.copy(), {"source": path.name})


def load_images(record: dict) -> list[ScalarImage]:
    """The image channels of `record` as float32, checked to share one grid (no label needed)."""
    paths = channel_paths(record)
    images = [_read(path, ScalarImage) for path in paths]
    for image, path in zip(images[1:], paths[1:], strict=True):
        _check_grid(images[0], paths[0], image, path)
    return [ScalarImage(im.array.astype(np.float32, copy=False), im.affine, im.meta) for im in images]


def load_case_channels(record: dict) -> tuple[list[ScalarImage], LabelMap]:
    """All image channels (float32) and the label map of `record`, checked to share one grid."""
    paths = channel_paths(record)
    images = load_images(record)
    label_path = Path(record["label"])
    if is_rtstruct_file(label_path):
        label = rtstruct_classes(label_path, images[0], record.get("roi_map") or {})
    elif label_path.suffix.lower() == SEG_SUFFIX:
        label = read_seg(label_path, reference=images[0])
    else:
        label = _read(label_path, LabelMap)
    threshold = record.get("mask_threshold")
    reading = interpret_mask(label, None if threshold is None else float(threshold))
    label = reading.labels
    if reading.kind:  # a picture of a mask: the fingerprint counts these and the plan shows them
        label.meta["interpretation"] = reading.kind
    if label.orientation != images[0].orientation:
        label = reorient(label, images[0].orientation)
    _check_grid(images[0], paths[0], label, label_path)
    return images, label


def load_case(record: dict) -> tuple[ScalarImage, LabelMap]:
    """The single-channel image (float32) and the label map of `record`, on the same grid."""
    if len(channel_paths(record)) != 1:
        raise ConfigError(f"case {record.get('id')!r} has several channels; use load_case_channels")
    images, label = load_case_channels(record)
    return images[0], label
