"""Find what to segment under an input path: one `Job` per DICOM series, radiograph or image file.

A folder is searched at any depth: DICOM files are grouped into studies and series
(`medseg.io.dicom.scan.scan_folder`), NIfTI/NRRD/MHA and PNG/JPEG files are jobs of their own, and every
other file (non-image DICOM objects, DICOM SEGs, text) is listed as skipped with the reason; a SEG or
RTSTRUCT drawn on a series of the input (by a clinician: not medseg's own) becomes that job's reference.
A series whose geometry cannot be read, and a ``.dcm`` file that does not parse, stay jobs carrying
their problem, so that they are reported as failed.

Job keys are hashes of the SeriesInstanceUID (DICOM) or of the path relative to the input (files):
output folders are named by them, never by patient data, and stay the same from one run to the next.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from medseg.errors import InputError
from medseg.io.annotations import MANUFACTURER, labelled_series
from medseg.io.dicom.files import NOT_REGULAR, SkippedFile, read_dataset
from medseg.io.dicom.scan import SeriesInfo, SeriesRules, is_radiograph, rejection_reasons, scan_folder
from medseg.io.png import is_png_file
from medseg.io.reader import is_dicom_file
from medseg.io.volume import is_volume_file

logger = logging.getLogger(__name__)

#: Hex digits of the SHA-256 used in output folder names.
KEY_LENGTH = 16


@dataclass
class Job:
    """One image to segment."""

    key: str
    kind: str  # "dicom-series", "dicom-image" or "file"
    label: str  # the input path relative to the input root, for the summary
    files: list[Path] = field(default_factory=list)
    problem: str | None = None  # known before reading: the job fails with it
    uids: dict[str, str] = field(default_factory=dict)
    #: The clinician's SEG or RTSTRUCT found beside the series in the input (the second opinion's reference).
    reference: Path | None = None


@dataclass
class Discovery:
    jobs: list[Job]
    skipped: list[dict[str, str]]


def job_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def _relative(path: Path, root: Path) -> str:
    """`path` relative to the input `root`; the input folder's own name when `path` is the input itself."""
    try:
        relative = path.relative_to(root)
    except ValueError:
        return str(path)
    return str(relative) if relative.parts else root.name


def _series_jobs(series: SeriesInfo, root: Path) -> list[Job]:
    uids = {
        "study_instance_uid": series.study_instance_uid,
        "series_instance_uid": series.series_instance_uid,
    }
    if is_radiograph(series):
        return [
            Job(
                job_key(f"{series.series_instance_uid}/{_relative(path, root)}"),
                "dicom-image",
                _relative(path, root),
                [path],
                uids=uids,
            )
            for path in series.files
        ]
    folder = _relative(Path(os.path.commonpath([str(p.parent) for p in series.files])), root)
    return [
        Job(
            job_key(series.series_instance_uid or folder),
            "dicom-series",
            folder,
            list(series.files),
            series.problem,
            uids,
        )
    ]


def _broken_dicom(item: SkippedFile) -> bool:
    """A ``.dcm`` file that does not parse: a failed input, where other unreadable files are skipped."""
    return item.path.suffix.lower() == ".dcm" and item.reason.startswith(("not a DICOM file", "unreadable"))


def discover(source: str | os.PathLike, rules: SeriesRules | None = None) -> Discovery:
    """Jobs under `source` (a folder of any depth, or one file) and the files left out, with reasons.

    `rules` selects DICOM series (e.g. modalities); series it rejects are skipped, except for unreadable
    geometry, which is a failure (``readable_only`` is ignored).
    """
    source = Path(source)
    rules = replace(rules or SeriesRules(), readable_only=False)
    if source.is_file():
        if is_volume_file(source) or is_png_file(source) or is_dicom_file(source):
            kind = "dicom-image" if is_dicom_file(source) else "file"
            return Discovery([Job(job_key(source.name), kind, source.name, [source])], [])
        return Discovery([], [{"input": source.name, "reason": "not an image file"}])
    scan = scan_folder(source)
    jobs, skipped = [], []
    for series in scan.series:
        if series.problem:  # a radiograph (no slice geometry to check), or a series failing with its problem
            reasons = rejection_reasons(series, replace(rules, min_slices=0))
        else:
            reasons = rejection_reasons(series, rules)
        if reasons:
            where = _relative(Path(os.path.commonpath([str(p) for p in series.files])), source)
            skipped.append({"input": where, "reason": "; ".join(reasons)})
        else:
            jobs += _series_jobs(series, source)
    for item in scan.skipped:
        label = _relative(item.path, source)
        if item.reason != NOT_REGULAR and (is_volume_file(item.path) or is_png_file(item.path)):
            jobs.append(Job(job_key(label), "file", label, [item.path]))
        elif _broken_dicom(item):
            problem = str(InputError(item.path, f"unreadable DICOM file ({item.reason})"))
            jobs.append(Job(job_key(label), "dicom-image", label, [item.path], problem))
        else:
            skipped.append({"input": _relative(item.path, source), "reason": item.reason})
    references = clinician_labels([item.path for item in scan.skipped])
    for job in jobs:
        found = references.get(job.uids.get("series_instance_uid", ""), [])
        if found:
            job.reference = found[0]
            if len(found) > 1:
                logger.warning(
                    "%s: %d clinician label objects reference it; compared with %s",
                    job.label,
                    len(found),
                    _relative(found[0], source),
                )
    jobs.sort(key=lambda job: job.key)
    return Discovery(jobs, skipped)


def clinician_labels(paths: list[Path]) -> dict[str, list[Path]]:
    """SeriesInstanceUID -> the SEG and RTSTRUCT files among `paths` drawn on that series, except the
    results medseg wrote itself (its SEGs and RTSTRUCTs in an input folder are not a clinician's)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(paths):
        header = read_dataset(path, pixels=False)  # never opens what is not a regular file
        if isinstance(header, SkippedFile) or str(header.get("Manufacturer", "")) == MANUFACTURER:
            continue
        for uid in labelled_series(header) or []:
            found.setdefault(uid, []).append(path)
    return found


def shard(jobs: list[Job], rank: int, world_size: int) -> list[Job]:
    """The jobs of process `rank` out of `world_size` (round robin over jobs sorted by key)."""
    return jobs[rank::world_size]
