"""One study from the PACS to results and back: retrieve -> `medseg infer`'s batch runner -> store SEGs.

`process_study` retrieves the study's image series into ``OUT/<study key>/images/series_<n>/``, segments
them with `Segmenter.run_folder`, as ``medseg infer`` does (results in ``OUT/<study key>/results/<series
key>/``: mask, seg.dcm, overlays, result.json) and stores each new DICOM SEG on the PACS (with the overlays
as a Secondary Capture series when asked). Before storing it asks the PACS for SEGs that medseg (same model
name) already made for the same source series, so a rerun or a restart never stores a result twice.
Retrieved images are deleted afterwards unless asked to keep them.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from medseg.errors import InputError
from medseg.inference.output_names import OVERLAYS_DIR, SEG_NAME
from medseg.inference.segmenter import Segmenter
from medseg.io import seg_writer
from medseg.io.annotations import MANUFACTURER
from medseg.pacs import capture
from medseg.pacs.capture import write_captures
from medseg.pacs.client import PacsClient, Series, Study

logger = logging.getLogger(__name__)

#: Series modalities that hold no image to segment (results, reports, presentation states).
NON_IMAGE_MODALITIES = frozenset({"SEG", "SR", "PR", "KO", "RTSTRUCT", "RTPLAN", "RTDOSE", "REG", "DOC"})
#: Series descriptions of the results medseg stores back (SEG, overlay Secondary Captures): never inputs.
#: A SEG's may go on with its input check's flag ("... [caution]"), so descriptions are matched by start.
RESULT_DESCRIPTIONS = (seg_writer.SERIES_DESCRIPTION, capture.SERIES_DESCRIPTION)


@dataclass(frozen=True)
class PacsOptions:
    """Which series to segment, what to write and keep."""

    modalities: tuple[str, ...] = ()  # empty: every image modality
    keep_images: bool = False
    write_overlays: bool = True
    store_overlays: bool = False  # also store the overlay pictures as a Secondary Capture series


@dataclass
class StudyOutcome:
    """What happened to one study (no patient data: the study is named by its key)."""

    key: str
    segmented: int = 0  # series with results (new or from an earlier run)
    stored: int = 0  # SEGs sent to the PACS
    already_stored: int = 0  # SEGs the PACS already had
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def stored_results(client: PacsClient, study_instance_uid: str) -> set[tuple[str, str]]:
    """(model name, source SeriesInstanceUID) of every medseg SEG already in the study on the PACS."""
    found = set()
    for series in client.find_series(study_instance_uid, "SEG"):
        for ds in client.series_headers(study_instance_uid, series.series_instance_uid):
            if str(ds.get("Manufacturer", "")) != MANUFACTURER:
                continue
            model = str(ds.get("ManufacturerModelName", ""))
            for item in ds.get("ReferencedSeriesSequence", []):
                found.add((model, str(item.SeriesInstanceUID)))
    return found


def _seg_identity(path: Path) -> set[tuple[str, str]]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    model = str(ds.get("ManufacturerModelName", ""))
    return {(model, str(item.SeriesInstanceUID)) for item in ds.ReferencedSeriesSequence}


def is_input_series(series: Series, modalities: tuple[str, ...] = ()) -> bool:
    """True for an image series to segment: not a non-image object, not a result medseg stored back."""
    if series.modality in NON_IMAGE_MODALITIES or series.description.startswith(RESULT_DESCRIPTIONS):
        return False
    return not modalities or series.modality in modalities


def retrieve_study(client: PacsClient, study: Study, folder: Path, modalities: tuple[str, ...] = ()) -> int:
    """Retrieve the image series of `study` (of `modalities`, if given) into `folder`; return how many."""
    wanted = [
        series
        for series in client.find_series(study.study_instance_uid)
        if is_input_series(series, modalities)
    ]
    for number, series in enumerate(wanted, start=1):
        client.retrieve_series(
            study.study_instance_uid, series.series_instance_uid, folder / f"series_{number:03d}"
        )
    return len(wanted)


def _store_result(
    client: PacsClient,
    study: Study,
    item: dict[str, str],
    result: Path,
    source: Path,
    options: PacsOptions,
    existing: set[tuple[str, str]],
    outcome: StudyOutcome,
) -> None:
    """Store the SEG of one result (with its overlays as Secondary Captures, if asked) unless it is there."""
    seg = result / SEG_NAME
    if not seg.is_file():
        return
    if _seg_identity(seg) <= existing:
        outcome.already_stored += 1
        logger.info("study %s: SEG of series %s already on the PACS", study.key, item["key"])
        return
    files = [seg]
    overlays = sorted((result / OVERLAYS_DIR).glob("*.png"))
    if options.store_overlays and overlays and item["kind"] == "dicom-series":
        header = pydicom.dcmread(min(source.glob("*.dcm")), stop_before_pixels=True)
        files += write_captures(overlays, header, result / "captures")
    client.store(files)
    outcome.stored += 1
    logger.info("study %s: SEG of series %s stored (%d file(s))", study.key, item["key"], len(files))


def process_study(
    client: PacsClient,
    study: Study,
    segmenter: Segmenter,
    out_dir: str | os.PathLike,
    options: PacsOptions,
) -> StudyOutcome:
    """Retrieve, segment and store back one study; failures of single series are listed, not raised."""
    outcome = StudyOutcome(study.key)
    study_dir = Path(out_dir) / study.key
    images = study_dir / "images"
    shutil.rmtree(images, ignore_errors=True)  # left over from an interrupted run
    retrieved = retrieve_study(client, study, images, options.modalities)
    logger.info("study %s: %d image series retrieved", study.key, retrieved)
    if not retrieved:
        return outcome
    try:
        summary = segmenter.run_folder(
            images,
            study_dir / "results",
            modalities=options.modalities,
            write_overlays=options.write_overlays,
        )
    except InputError as error:  # only non-image objects arrived
        logger.info("study %s: %s", study.key, error)
        return outcome
    existing = stored_results(client, study.study_instance_uid)
    for item in summary["items"]:
        if item["status"] == "failed":
            outcome.failures.append(f"series {item['key']}: {item['reason']}")
        elif "output" in item:  # done now or in an earlier run
            outcome.segmented += 1
            result = study_dir / "results" / item["output"]
            _store_result(client, study, item, result, images / item["input"], options, existing, outcome)
    if not options.keep_images:
        shutil.rmtree(images, ignore_errors=True)
    return outcome
