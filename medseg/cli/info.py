"""`medseg info PATH`: describe a DICOM folder, a DICOM file, a volume or a 2D image as JSON.

For a DICOM folder only headers are read: studies, series (slice counts, orientation, grid, and the
problem that would stop a series from being read) and the files skipped, grouped by reason. No patient
names, IDs or dates are printed.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from medseg.io.image import grid_summary
from medseg.io.reader import is_dicom_file, read_image

if TYPE_CHECKING:  # DICOM modules load pydicom (0.3 s): imported where a DICOM input needs them
    from medseg.io.dicom.scan import FolderScan

#: Skipped files listed by name for each reason; the rest are only counted.
SKIPPED_EXAMPLES = 3
#: Image meta keys printed besides the modality (none identifies a patient).
IMAGE_META_KEYS = ("series_description", "spacing_unknown", "spacing_source", "inverted", "note")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", type=Path, help="DICOM folder, DICOM file, volume (.nii.gz, .nrrd, .mha) or PNG"
    )


def run(args: argparse.Namespace) -> int:
    info = describe_folder(args.path) if args.path.is_dir() else describe_file(args.path)
    print(compact_json(info))
    return 0


def compact_json(value: object) -> str:
    """Indented JSON with lists of numbers (shape, spacing, affine rows) kept on one line."""
    text = json.dumps(value, indent=2)
    return re.sub(r"\[\s+([-0-9.eE,\s]+?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)


def describe_file(path: Path) -> dict[str, object]:
    image = read_image(path)
    info: dict[str, object] = {"path": str(path), "kind": "file"}
    info["modality"] = image.meta.get("modality") or _dicom_modality(path)
    info.update(grid_summary(image.shape, image.affine))
    info["dtype"] = str(image.array.dtype)
    info.update({key: image.meta[key] for key in IMAGE_META_KEYS if key in image.meta})
    return info


def _dicom_modality(path: Path) -> str | None:
    """Modality from a DICOM file's header (e.g. SEG), None for other files."""
    if not is_dicom_file(path):
        return None
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).get("Modality", "")) or None


def describe_folder(folder: Path) -> dict[str, object]:
    from medseg.io.dicom.scan import scan_folder

    scan = scan_folder(folder)
    info: dict[str, object] = {"path": str(folder), "kind": "dicom_folder"}
    if len(scan.series) == 1 and scan.series[0].affine is not None:
        only = scan.series[0]
        info["modality"] = only.modality
        info.update(grid_summary(only.shape, only.affine))
    index = {id(series): n for n, series in enumerate(scan.series, start=1)}
    info["studies"] = [
        {"study_instance_uid": uid, "series": [{"index": index[id(s)], **s.summary()} for s in series]}
        for uid, series in scan.studies.items()
    ]
    info["skipped"] = _skipped_by_reason(scan)
    return info


def _skipped_by_reason(scan: FolderScan) -> list[dict[str, object]]:
    by_reason: dict[str, list[Path]] = defaultdict(list)
    for skipped in scan.skipped:
        by_reason[skipped.reason].append(skipped.path)
    return [
        {
            "reason": reason,
            "count": len(paths),
            "examples": [str(p.relative_to(scan.folder)) for p in paths[:SKIPPED_EXAMPLES]],
        }
        for reason, paths in sorted(by_reason.items())
    ]
