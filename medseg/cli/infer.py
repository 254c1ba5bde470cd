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

from medseg.cli.json_values import json_object

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
        help="a shipped bundle's name (see 'medseg models'), a bundle folder, a training run folder "
        "(its best.pt), or checkpoint file(s); several are ensembled",
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
    windows.add_argument(
        "--overlap", type=float, default=None, help="window overlap (default: the bundle's, else 0.5)"
    )
    windows.add_argument("--batch-size", type=int, default=None, help="windows per forward pass (default: 4)")
    windows.add_argument(
        "--roi", type=int, nargs="+", default=None, help="window size (default: the plan's patch)"
    )
    windows.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mirroring test-time augmentation along the axes the model was trained to mirror (the "
        "plan's mirror_axes: none for radiographs); --no-tta turns a bundle's off (default: the bundle's, "
        "else off)",
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
    select.add_argument(
        "--seg-type",
        choices=("binary", "labelmap"),
        default="binary",
        help="DICOM SEG kind: binary (every viewer reads it) or labelmap (DICOM 2024c: one frame per "
        "slice, far smaller for many classes; OHIF 3.11 and recent Slicer read it)",
    )
    select.add_argument(
        "--reference",
        metavar="PATH",
        help="the clinician's labels to compare with (SEG, RTSTRUCT or mask); by default a SEG or "
        "RTSTRUCT drawn on the series and found in the input is used",
    )
    select.add_argument(
        "--reference-map",
        metavar="JSON",
        type=json_object,
        help='reference structure -> model class, e.g. \'{"Lung-Left": "lung_left", "GTV-1": 2}\' '
        "(default: the names that match, ignoring case and punctuation)",
    )
    select.add_argument(
        "--rtstruct",
        action="store_true",
        help="also write rtstruct.dcm: an RT Structure Set with one ROI per class (3D DICOM series)",
    )
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
    select.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        type=key_value,
        help="of DICOM series that stack several volumes at the same positions (echoes, magnitude/phase, "
        "time points), segment the one with this header value, e.g. EchoNumbers=1 (repeatable)",
    )
    select.add_argument(
        "--force-domain",
        action="store_true",
        help="segment inputs the model was not trained for (another modality, 2D for a 3D model), which "
        "are otherwise skipped with the reason; their outputs stay flagged out-of-domain",
    )
    select.add_argument("--progress", action="store_true", help="show a progress bar over windows")


def key_value(text: str) -> tuple[str, str]:
    """``--select KEY=VALUE`` as a pair."""
    key, separator, value = text.partition("=")
    if not separator or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. EchoNumbers=1; got {text!r}")
    return key.strip(), value.strip()


def run(args: argparse.Namespace) -> int:
    from medseg.inference.runner import exit_status
    from medseg.inference.segmenter import Segmenter

    segmenter = Segmenter.load(
        args.model,
        args.device,
        tta=args.tta,
        tta_zooms=args.tta_zooms,
        overlap=args.overlap,
        roi_size=args.roi,
        batch_size=args.batch_size,
        precision=args.precision,
        accumulate=args.accumulate,
        channels_last=args.channels_last,
        compile=args.compile,
        largest_component=args.largest_component,
        min_lesion_ml=args.min_lesion_ml,
        fill_holes=args.fill_holes,
        trust_bundle=args.trust_bundle,
    )
    summary = segmenter.run_folder(
        args.input,
        args.out,
        modalities=args.modality,
        write_seg=not args.no_seg,
        seg_type=args.seg_type,
        write_rtstruct=args.rtstruct,
        reference=args.reference,
        reference_map=args.reference_map,
        write_overlays=not args.no_overlays,
        anonymize=args.anonymize,
        uncertainty=args.uncertainty,
        force=args.force,
        force_domain=args.force_domain,
        select=dict(args.select),
        progress=args.progress,
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
    )
    counts = summary["counts"]
    logger.info(
        "%d done, %d skipped, %d failed; summary in %s",
        counts["done"],
        counts["skipped"],
        counts["failed"],
        args.out,
    )
    return exit_status(summary)
