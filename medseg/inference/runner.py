"""Segment every image under an input path and write a result folder per image, surviving bad inputs.

For each `medseg.inference.discovery.Job` the runner (behind `Segmenter.run_folder`) writes, into
``OUT/<job key>/``:

* ``mask.nii.gz``: the labels on the exact source grid (and ``mask.png`` for a PNG/JPEG input, in the
  picture's own orientation, so that its pixels line up with the input's);
* ``seg.dcm``: a DICOM SEG referencing the source instances (DICOM inputs only), with the source's
  patient module, or with ``anonymize`` a pseudonym (``ANON-<job key>``) instead;
* ``overlays/*.png``: pictures for a reader (`medseg.report.overlay.write_overlays`) and
  ``report.html``, the same with the structure table on one page (`medseg.report.study`);
* with ``uncertainty``, ``uncertainty.nii.gz``: the normalised entropy (0..1) of the mean softmax over
  the ensemble's members and mirrored copies, on the source grid, also drawn in ``report.html``;
* ``result.json``, written last: per structure its volume (mL) and lesion count, source UIDs, grid,
  and what made it: the checkpoints' digests, the settings and the outputs asked for.

One failing image is recorded with its reason and the others go on; a folder whose ``result.json`` was made
by the same model, settings and outputs is skipped (pass ``force`` to redo it); one made by another model or
with other settings is redone, and the log says why. Every file is written under a temporary name and
renamed, so a run killed at any point (even SIGKILL) leaves only complete files; run it again and it redoes
the unfinished images, clearing the temporaries the killed run left. ``OUT/summary.json`` lists every job as
done, skipped or failed. With several processes (``RANK``/``WORLD_SIZE``, e.g. under ``torchrun``) each
takes every WORLD_SIZE-th job, writes ``summary.rank-<r>-of-<w>.json``, and whichever finishes last merges
the parts into ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import medseg
from medseg.errors import InputError, MedsegError, OutOfDomainError
from medseg.inference.comparison import (
    DISAGREEMENT_NAMES,
    DISAGREEMENT_SEG_COLOURS,
    Comparison,
    compare,
    disagreement,
)
from medseg.inference.discovery import Discovery, Job, shard
from medseg.inference.domain import OK, OUT_OF_DOMAIN, DomainCheck
from medseg.inference.output_names import (
    DISAGREEMENT_SEG_NAME,
    MASK_NAME,
    MASK_PNG_NAME,
    OVERLAYS_DIR,
    REPORT_NAME,
    RESULT_NAME,
    RTSTRUCT_NAME,
    SEG_NAME,
    SUMMARY_NAME,
    UNCERTAINTY_NAME,
)
from medseg.io.dicom import read_series
from medseg.io.image import Image, LabelMap, ScalarImage
from medseg.io.png import is_png_file, write_png
from medseg.io.reader import read_image
from medseg.io.volume import write_volume
from medseg.utils.atomic import atomic_path, remove_temporaries, write_text_atomic

if TYPE_CHECKING:
    from medseg.inference.segmenter import Segmenter

logger = logging.getLogger(__name__)

#: With anonymisation, a SEG's PatientName and PatientID are this and the job key (not patient data).
PSEUDONYM_PREFIX = "ANON-"
#: Exit status of a run in which some inputs failed (0: every input done or skipped).
EXIT_SOME_FAILED = 3


@dataclass(frozen=True)
class RunOptions:
    """What to write, and how this process shares the work."""

    write_seg: bool = True
    #: binary or labelmap (`medseg.io.seg_writer.SEG_TYPES`).
    seg_type: str = "binary"
    #: Also an RT Structure Set (3D DICOM series).
    write_rtstruct: bool = False
    write_overlays: bool = True
    anonymize: bool = False  # exported DICOM carries a pseudonym instead of the patient's identity
    uncertainty: bool = False  # write the entropy map and show it in the report
    force: bool = False
    rank: int = 0
    world_size: int = 1
    progress: bool = False
    #: Segment inputs the domain check calls out of domain instead of skipping them.
    force_domain: bool = False
    #: Of a DICOM series stacking several volumes, the frames with these header values.
    select: tuple[tuple[str, str], ...] = ()
    #: The clinician's labels to compare with (one input); otherwise a SEG/RTSTRUCT found with the series.
    reference: Path | None = None
    #: Reference structure name or value -> model class name or value (default: by name).
    reference_map: tuple[tuple[str, str], ...] = ()

    def outputs(self) -> dict[str, bool]:
        """The options that change what a result folder holds (recorded in result.json)."""
        return {
            "write_seg": self.write_seg,
            "seg_type": self.seg_type,
            "write_rtstruct": self.write_rtstruct,
            "write_overlays": self.write_overlays,
            "anonymize": self.anonymize,
            "uncertainty": self.uncertainty,
            "select": dict(self.select),
            "reference": None if self.reference is None else str(self.reference),
            "reference_map": dict(self.reference_map),
        }


def read_job_image(job: Job, select: tuple[tuple[str, str], ...] = ()) -> ScalarImage:
    """The image of `job`, read with the reader its kind needs (`select`: see `read_series`)."""
    if job.kind == "dicom-series":
        return read_series(job.files, select=dict(select))
    image = read_image(job.files[0])
    assert isinstance(image, ScalarImage)
    return image


def _grid(image: Image) -> dict[str, Any]:
    return {
        "shape": list(image.shape),
        "spacing_mm": [round(float(v), 6) for v in image.spacing],
        "orientation": image.orientation,
        "affine_ras": [[round(float(v), 6) for v in row] for row in image.affine],
    }


def _source_uids(job: Job, image: ScalarImage) -> dict[str, Any]:
    uids = dict(job.uids)
    for key in ("frame_of_reference_uid", "sop_instance_uids"):
        if image.meta.get(key):
            uids[key] = image.meta[key]
    return uids


def _write_seg(
    job: Job,
    image: ScalarImage,
    labels: LabelMap,
    out: Path,
    segmenter: Segmenter,
    anonymize: bool,
    flag: str,
    seg_type: str,
) -> dict[int, int]:
    from medseg.io.seg_writer import SERIES_DESCRIPTION, read_source_headers, write_seg  # highdicom: slow

    uids = image.meta["sop_instance_uids"] if job.kind == "dicom-series" else None
    headers = read_source_headers(job.files, uids)
    pseudonym = f"{PSEUDONYM_PREFIX}{job.key}" if anonymize else None
    try:
        return write_seg(
            labels,
            headers,
            out / SEG_NAME,
            segmenter.class_names,
            segmenter.name,
            medseg.__version__,
            pseudonym,
            # the standing warning, and the domain flag where it is not ok
            series_description=SERIES_DESCRIPTION if flag == OK else f"{SERIES_DESCRIPTION} [{flag}]",
            frame_numbers=image.meta.get("frame_numbers"),
            seg_type=seg_type,
        )
    except (ValueError, TypeError, AttributeError) as error:  # highdicom refusing what the source holds
        reason = f"{type(error).__name__}: {' '.join(str(error).split())}"
        raise InputError(job.label, f"cannot write its DICOM SEG ({reason})") from None


def _no_rtstruct_reason(image: ScalarImage, labels: LabelMap, segmenter: Segmenter) -> str | None:
    """Why an RTSTRUCT cannot be written for this series (its contours reference single-slice images,
    one per slice, and a structure set lists at least one ROI), or None."""
    if image.meta.get("mosaic") or image.meta.get("frame_numbers"):
        return "its contours reference single-slice images; this series holds its slices in one file"
    if not np.isin(labels.array, [value for value in segmenter.class_names if value]).any():
        return "the mask is empty (a structure set needs at least one ROI)"
    return None


def _write_rtstruct(
    job: Job, image: ScalarImage, labels: LabelMap, out: Path, segmenter: Segmenter, anonymize: bool
) -> None:
    from medseg.io.rtstruct_writer import write_rtstruct
    from medseg.io.seg_writer import read_source_headers

    headers = read_source_headers(job.files, image.meta["sop_instance_uids"])
    pseudonym = f"{PSEUDONYM_PREFIX}{job.key}" if anonymize else None
    write_rtstruct(labels, headers, out / RTSTRUCT_NAME, segmenter.class_names, segmenter.name, pseudonym)


def _second_opinion(
    job: Job,
    image: ScalarImage,
    labels: LabelMap,
    segmenter: Segmenter,
    options: RunOptions,
    out: Path,
    outputs: list[str],
    warnings: list[str],
) -> Comparison | None:
    """The comparison with the clinician's labels (`medseg.inference.comparison`), and the disagreement
    SEG beside the AI's for a DICOM series; a reference that cannot be compared is a warning, not a
    failure: the AI's mask stands on its own."""
    path = options.reference or job.reference
    if path is None:
        return None
    try:
        comparison = compare(image, labels, path, segmenter.class_names, dict(options.reference_map))
    except MedsegError as error:
        warnings.append(f"not compared with the clinician's labels: {error}")
        logger.warning("%s: %s", job.label, warnings[-1])
        return None
    logger.info("%s: compared with %s", job.label, Path(path).name)
    if options.write_seg and job.kind == "dicom-series" and not image.meta.get("mosaic"):
        from medseg.io.seg_writer import read_source_headers, write_seg

        try:
            write_seg(
                disagreement(labels, comparison.reference, comparison.classes),
                read_source_headers(job.files, image.meta["sop_instance_uids"]),
                out / DISAGREEMENT_SEG_NAME,
                DISAGREEMENT_NAMES,
                f"{segmenter.name} vs clinician",
                medseg.__version__,
                f"{PSEUDONYM_PREFIX}{job.key}" if options.anonymize else None,
                series_description="AI vs clinician disagreement - not for clinical use",
                frame_numbers=image.meta.get("frame_numbers"),
                seg_type=options.seg_type,
                colours=DISAGREEMENT_SEG_COLOURS,
            )
            outputs.append(DISAGREEMENT_SEG_NAME)
        except (MedsegError, ValueError) as error:  # the comparison stands without its SEG
            warnings.append(f"no disagreement SEG: {' '.join(str(error).split())}")
            logger.warning("%s: %s", job.label, warnings[-1])
    return comparison


def segment_job(job: Job, segmenter: Segmenter, options: RunOptions, out: Path) -> dict[str, Any]:
    """Segment one job into `out` and return its result record (also written as result.json)."""
    from medseg.report.overlay import write_overlays
    from medseg.report.structures import structure_stats
    from medseg.report.study import write_study_report

    start = time.perf_counter()
    if job.problem:
        raise MedsegError(job.problem)
    image = read_job_image(job, options.select)
    domain = segmenter.check_domain(image)
    if domain.flag == OUT_OF_DOMAIN and not options.force_domain:
        raise OutOfDomainError(
            job.label, f"out of domain: {'; '.join(domain.reasons)} (--force-domain runs it)"
        )
    notes = [f"Input check: {domain.summary()}."] if domain.reasons else []
    notes += segmenter.postprocessing.notes(segmenter.class_names)
    uncertainty = None
    if options.uncertainty:
        labels, uncertainty = segmenter.predict_with_uncertainty(image, options.progress)
    else:
        labels = segmenter.predict(image, options.progress)
    with atomic_path(out / MASK_NAME) as temporary:
        write_volume(labels, temporary)
    outputs = [MASK_NAME]
    if job.kind == "file" and is_png_file(job.files[0]):  # beside the NIfTI, as the picture's pixels lie
        write_png(labels, out / MASK_PNG_NAME)
        outputs.append(MASK_PNG_NAME)
    if uncertainty is not None:
        with atomic_path(out / UNCERTAINTY_NAME) as temporary:
            write_volume(uncertainty, temporary)
        outputs.append(UNCERTAINTY_NAME)
    segments, warnings = {}, []
    if options.write_seg and job.kind.startswith("dicom") and image.meta.get("mosaic"):
        warnings.append(
            "no DICOM SEG: a SEG references single-slice images, and a Siemens mosaic holds all its "
            "slices in one image (the mask is written)"
        )
        logger.warning("%s: %s", job.label, warnings[-1])
        notes.append(f"{warnings[-1]}.")
    elif options.write_seg and job.kind.startswith("dicom"):
        segments = _write_seg(
            job, image, labels, out, segmenter, options.anonymize, domain.flag, options.seg_type
        )
        outputs.append(SEG_NAME)
    if options.write_rtstruct and job.kind == "dicom-series" and labels.ndim == 3:
        why = _no_rtstruct_reason(image, labels, segmenter)
        if why:
            warnings.append(f"no RTSTRUCT: {why}")
            logger.warning("%s: %s", job.label, warnings[-1])
        else:
            _write_rtstruct(job, image, labels, out, segmenter, options.anonymize)
            outputs.append(RTSTRUCT_NAME)
    comparison = _second_opinion(job, image, labels, segmenter, options, out, outputs, warnings)
    if comparison is not None:
        notes += comparison.notes
    if options.write_overlays:
        overlays = write_overlays(image, labels, out / OVERLAYS_DIR, segmenter.class_names)
        outputs += [f"{OVERLAYS_DIR}/{path.name}" for path in overlays]
        write_study_report(
            out / REPORT_NAME,
            image,
            labels,
            segmenter.class_names,
            model_name=segmenter.name,
            model_version=segmenter.model_version,
            reference=None if comparison is None else comparison.reference,
            uncertainty=uncertainty,
            title=f"Second opinion: {image.meta.get('series_description') or job.label}",
            notes=notes,
        )
        outputs.append(REPORT_NAME)
    result = {
        "key": job.key,
        "input": job.label,
        "kind": job.kind,
        "source_uids": _source_uids(job, image),
        "grid": _grid(image),
        "structures": structure_stats(labels, segmenter.class_names),
        "seg_segments": {str(number): segmenter.class_names[value] for number, value in segments.items()},
        "comparison": None if comparison is None else comparison.as_dict(),
        "uncertainty": None if uncertainty is None else uncertainty_stats(uncertainty, labels, segmenter),
        "domain": domain.as_dict(),
        "model": {
            "name": segmenter.name,
            "checkpoints": [path.name for path in segmenter.ensemble.sources],
            "digest": segmenter.model_digest,
            "class_names": {str(k): v for k, v in segmenter.class_names.items()},
            "version": segmenter.model_version,
            "medseg_version": medseg.__version__,
        },
        **segmenter.describe_settings(),
        "options": options.outputs(),
        "outputs": outputs,
        "warnings": warnings,
        "anonymized": options.anonymize,
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_text_atomic(out / RESULT_NAME, json.dumps(result, indent=2, default=_json_default) + "\n")
    return result


def uncertainty_stats(uncertainty: ScalarImage, labels: LabelMap, segmenter: Segmenter) -> dict[str, Any]:
    """Mean normalised entropy over the image and inside each structure found (for triage)."""
    by_structure = {
        segmenter.class_names.get(int(value), str(value)): round(
            float(uncertainty.array[labels.array == value].mean()), 4
        )
        for value in np.unique(labels.array)
        if value > 0
    }
    return {
        "file": UNCERTAINTY_NAME,
        "measure": "normalised entropy of the mean softmax (0: certain, 1: uniform)",
        "mean": round(float(uncertainty.array.mean()), 4),
        "mean_in_structure": by_structure,
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text if isinstance(error, MedsegError) else f"{type(error).__name__}: {text}"


def redo_reason(result_file: Path, segmenter: Segmenter, options: RunOptions) -> str | None:
    """Why the result in `result_file` must be made again, or None when this run would make the same."""
    try:
        previous = json.loads(result_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return "its result.json cannot be read"
    model = previous.get("model", {}) if isinstance(previous, dict) else {}
    if model.get("digest") == segmenter.model_digest and previous.get("options") == options.outputs():
        return None
    if model.get("checkpoints") != [p.name for p in segmenter.ensemble.sources]:
        return "it was made by another model"
    now = segmenter.describe_settings()
    changed = [
        f"{group}.{key}"
        for group in ("settings", "postprocessing")
        for key, value in now[group].items()
        if previous.get(group, {}).get(key) != value
    ]
    if previous.get("options") != options.outputs():
        return "it was made with other outputs"
    if changed:
        return f"it was made with other settings ({', '.join(changed)})"
    return "it was made by another model (same file names, other weights)"


def clear_result(out: Path) -> None:
    """Remove an earlier result before redoing it: result.json first (so that a redo killed half-way is
    never taken for a finished one), then every file it listed (so none of another run's outputs stays)."""
    result_file = out / RESULT_NAME
    listed: list[str] = []
    if result_file.is_file():
        try:
            listed = [
                str(name) for name in json.loads(result_file.read_text(encoding="utf-8")).get("outputs", [])
            ]
        except (OSError, json.JSONDecodeError, AttributeError):
            listed = []
        result_file.unlink()
    for name in listed:
        path = (out / name).resolve()
        if path.is_relative_to(out.resolve()) and path.is_file():
            path.unlink()


def run_batch(
    discovery: Discovery, segmenter: Segmenter, out_dir: str | os.PathLike, options: RunOptions
) -> dict[str, Any]:
    """Process this rank's share of `discovery` into `out_dir`; return (and write) the run summary.

    A summary that cannot be written (a full disk, a read-only folder) is one `InputError` naming it."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(out_dir, f"cannot write results here ({error.strerror or error})") from None
    mine = shard(discovery.jobs, options.rank, options.world_size)
    records: list[dict[str, Any]] = []
    for number, job in enumerate(mine, start=1):
        out = out_dir / job.key
        record = {"key": job.key, "input": job.label, "kind": job.kind, "output": job.key}
        if (out / RESULT_NAME).is_file() and not options.force:
            reason = redo_reason(out / RESULT_NAME, segmenter, options)
            if reason is None:
                records.append({**record, "status": "skipped", "reason": "result exists from an earlier run"})
                logger.info("[%d/%d] %s: already done", number, len(mine), job.key)
                continue
            logger.info("[%d/%d] %s: redoing: %s", number, len(mine), job.key, reason)
        if out.is_dir():
            remove_temporaries(out)  # left by a process killed while writing this job's files
            clear_result(out)
        try:
            result = segment_job(job, segmenter, options, out)
        except OutOfDomainError as error:  # not a failure of the input: the wrong model for it
            unwritten = {key: value for key, value in record.items() if key != "output"}  # nothing written
            records.append(
                {**unwritten, "status": "skipped", "reason": _one_line(error), "domain": OUT_OF_DOMAIN}
            )
            logger.warning(
                "[%d/%d] %s (%s): skipped: %s", number, len(mine), job.key, job.kind, _one_line(error)
            )
            continue
        except (Exception, MemoryError) as error:  # one bad input must not stop the batch
            logger.debug("job %s failed:\n%s", job.key, traceback.format_exc())
            records.append({**record, "status": "failed", "reason": _one_line(error)})
            logger.warning(
                "[%d/%d] %s (%s): failed: %s", number, len(mine), job.key, job.kind, _one_line(error)
            )
            continue
        flag = result["domain"]["flag"]
        records.append({**record, "status": "done", "seconds": result["seconds"], "domain": flag})
        shown = "" if flag == OK else f" [{DomainCheck(**result['domain']).summary()}]"
        log = logger.warning if flag != OK else logger.info
        log(
            "[%d/%d] %s (%s): done in %.1f s%s",
            number,
            len(mine),
            job.key,
            job.kind,
            result["seconds"],
            shown,
        )
    if options.rank == 0:  # files left out are reported once
        records += [
            {"input": item["input"], "status": "skipped", "reason": item["reason"]}
            for item in discovery.skipped
        ]
    try:
        return _write_summary(out_dir, records, options)
    except OSError as error:
        raise InputError(out_dir, f"cannot write {SUMMARY_NAME} ({error.strerror or error})") from None


def _counts(records: list[dict[str, Any]]) -> dict[str, int]:
    return {status: sum(r["status"] == status for r in records) for status in ("done", "skipped", "failed")}


def _write_summary(out_dir: Path, records: list[dict[str, Any]], options: RunOptions) -> dict[str, Any]:
    summary = {"medseg_version": medseg.__version__, "counts": _counts(records), "items": records}
    if options.world_size == 1:
        write_text_atomic(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
        return summary
    part = out_dir / f"summary.rank-{options.rank}-of-{options.world_size}.json"
    write_text_atomic(part, json.dumps(summary, indent=2) + "\n")
    parts = [out_dir / f"summary.rank-{r}-of-{options.world_size}.json" for r in range(options.world_size)]
    if all(path.is_file() for path in parts):  # the last process to finish merges
        merged = [item for path in parts for item in json.loads(path.read_text())["items"]]
        total = {"medseg_version": medseg.__version__, "counts": _counts(merged), "items": merged}
        write_text_atomic(out_dir / SUMMARY_NAME, json.dumps(total, indent=2) + "\n")
    return summary


def exit_status(summary: dict[str, Any]) -> int:
    """0 when nothing failed, `EXIT_SOME_FAILED` otherwise."""
    return EXIT_SOME_FAILED if summary["counts"]["failed"] else 0
