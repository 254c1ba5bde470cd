"""`medseg infer INPUT --model MODEL --out DIR`: segment DICOM folders, NIfTI files or 2D images.

Exit status: 0 when every input was done or skipped, 3 when some inputs failed (see OUT/summary.json),
2 for a usage error (no model, no input). Under ``torchrun`` (or with RANK/WORLD_SIZE set) each process
takes its share of the inputs; with CUDA, process LOCAL_RANK uses GPU LOCAL_RANK.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

NAME = "infer"
HELP = "segment every series in a DICOM folder (or NIfTI/PNG files) with a trained model"

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input", type=Path, help="DICOM folder (any depth), NIfTI/NRRD/MHA, PNG/JPEG or DICOM file"
    )
    parser.add_argument(
        "--model",
        "-m",
        nargs="+",
        required=True,
        type=Path,
        help="checkpoint(s) or model folder(s) with models/*.pt; several are ensembled",
    )
    parser.add_argument(
        "--trust-bundle",
        action="store_true",
        help="allow a model folder that is a bundle not shipped with medseg (bundle configs can run code)",
    )
    parser.add_argument(
        "--out",
        "-o",
        type=Path,
        required=True,
        help="output folder: one sub-folder per series and summary.json; exit status 3 if some inputs failed",
    )
    windows = parser.add_argument_group("sliding window")
    windows.add_argument("--overlap", type=float, default=0.5, help="window overlap (default: %(default)s)")
    windows.add_argument("--batch-size", type=int, default=None, help="windows per forward pass (default: 4)")
    windows.add_argument(
        "--roi", type=int, nargs="+", default=None, help="window size (default: the plan's patch)"
    )
    windows.add_argument(
        "--tta",
        action="store_true",
        help="mirroring test-time augmentation along the axes the model was trained to mirror (the "
        "plan's mirror_axes: none for radiographs)",
    )
    windows.add_argument(
        "--tta-zooms",
        type=float,
        nargs="+",
        metavar="FACTOR",
        help="test-time zooming: also segment the image magnified by these factors (0.5-2) and average "
        "the class scores, e.g. 0.9 1.1 for radiographs, which are not mirrored (default: a bundle's "
        "inference.json zooms, else none; 1: none)",
    )
    windows.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp16", "fp32"),
        default="auto",
        help="autocast (default: %(default)s: bf16 on GPUs and on CPUs with native bf16, else fp32)",
    )
    windows.add_argument(
        "--accumulate",
        choices=("fp16", "fp32"),
        default="fp16",
        help="stitching buffer type (default: %(default)s)",
    )
    windows.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        default="auto",
        help="keep the networks in channels-first memory format (default: channels-last on GPUs and for "
        "3D on CPUs, where it is faster)",
    )
    windows.add_argument(
        "--compile",
        action="store_true",
        help="run the networks through torch.compile: 1.6x faster 3D forward passes on a CPU after "
        "3-17 s of compiling once; worth it for folders of 3D studies",
    )
    windows.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    post = parser.add_argument_group("post-processing")
    post.add_argument(
        "--largest-component",
        nargs="*",
        metavar="CLASS",
        help="keep only the largest component of these classes (names or values; none given: all)",
    )
    post.add_argument(
        "--min-lesion-ml", type=float, default=0.0, help="remove components smaller than this (mL)"
    )
    post.add_argument(
        "--fill-holes",
        nargs="*",
        metavar="CLASS",
        help="fill enclosed holes of these classes (none given: all)",
    )
    select = parser.add_argument_group("selection and outputs")
    select.add_argument("--modality", action="append", default=[], help="only DICOM series of this modality")
    select.add_argument("--no-seg", action="store_true", help="do not write DICOM SEG files")
    select.add_argument("--no-overlays", action="store_true", help="do not write overlay PNGs")
    select.add_argument(
        "--anonymize",
        action="store_true",
        help="DICOM SEGs name the patient ANON-<output folder> instead of copying the source's identity",
    )
    select.add_argument(
        "--uncertainty",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write uncertainty.nii.gz (entropy of the mean softmax) and show it in report.html "
        "(default: on with --tta or several models, whose disagreement it shows)",
    )
    select.add_argument("--force", action="store_true", help="redo inputs whose results already exist")
    select.add_argument("--progress", action="store_true", help="show a progress bar over windows")


def _classes(requested: list[str] | None, class_names: dict[int, str]) -> frozenset[int]:
    from medseg.errors import ConfigError

    if requested is None:
        return frozenset()
    if not requested:
        return frozenset(value for value in class_names if value > 0)
    by_name = {name.lower(): value for value, name in class_names.items()}
    values = set()
    for item in requested:
        if item.isdigit() and int(item) in class_names:
            values.add(int(item))
        elif item.lower() in by_name:
            values.add(by_name[item.lower()])
        else:
            raise ConfigError(f"unknown class {item!r}; the model has {', '.join(class_names.values())}")
    return frozenset(values)


def _device(requested: str, local_rank: int) -> str:
    import torch

    if requested == "auto":
        return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    return requested


def run(args: argparse.Namespace) -> int:
    from medseg.bundle import inference_zooms, is_bundle, require_trust
    from medseg.engine.batch import RunOptions, exit_status, run_batch
    from medseg.engine.inference import load_ensemble
    from medseg.engine.jobs import discover
    from medseg.engine.postprocess import PostProcessing
    from medseg.errors import InputError
    from medseg.io.dicom.scan import SeriesRules

    zooms = args.tta_zooms
    for source in args.model:
        if source.is_dir() and is_bundle(source):
            require_trust(source, args.trust_bundle)
            if zooms is None and (zooms := inference_zooms(source)):
                logger.info("bundle inference.json test-time zooms %s (--tta-zooms 1: off)", zooms)
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = _device(args.device, int(os.environ.get("LOCAL_RANK", 0)))
    ensemble = load_ensemble(args.model, device).to(device)
    if args.tta and not ensemble.plan.mirroring:
        logger.warning(
            "--tta does nothing: the model was trained without mirroring (plan mirror_axes: []); "
            "--tta-zooms is the test-time augmentation for such models"
        )
    settings = ensemble.settings(
        roi_size=tuple(args.roi) if args.roi else None,
        overlap=args.overlap,
        batch_size=args.batch_size,
        tta=args.tta,
        zooms=tuple(zooms) if zooms else None,
        precision=args.precision,
        accumulate=args.accumulate,
        channels_last=args.channels_last,
        compile=args.compile,
        device=device,
    )
    postprocessing = PostProcessing(
        largest_component=_classes(args.largest_component, ensemble.class_names),
        min_volume_ml=args.min_lesion_ml,
        fill_holes=_classes(args.fill_holes, ensemble.class_names),
    )
    discovery = discover(args.input, SeriesRules(modalities=tuple(m.upper() for m in args.modality)))
    if not discovery.jobs:
        raise InputError(args.input, f"nothing to segment ({len(discovery.skipped)} file(s) skipped)")
    options = RunOptions(
        write_seg=not args.no_seg,
        write_overlays=not args.no_overlays,
        anonymize=args.anonymize,
        uncertainty=args.uncertainty
        if args.uncertainty is not None
        else bool(settings.mirror_axes) or len(settings.zooms) > 1 or len(ensemble.networks) > 1,
        force=args.force,
        rank=rank,
        world_size=world_size,
        progress=args.progress,
        postprocessing=postprocessing,
    )
    summary = run_batch(discovery, ensemble, settings, args.out, options)
    counts = summary["counts"]
    logger.info(
        "%d done, %d skipped, %d failed; summary in %s",
        counts["done"],
        counts["skipped"],
        counts["failed"],
        args.out,
    )
    return exit_status(summary)
