"""`medseg report MASK --image IMAGE --out DIR`: second-opinion HTML pages, one per study, and a cohort page.

MASK, IMAGE, --reference and --uncertainty are files (one study) or folders (studies matched by case
name; an image named ``case_0000.nii.gz``, nnU-Net's channel suffix, matches case ``case``). Pages are
named ``study_<n>.html`` (no patient data in file names) and ``index.html`` links them; with references,
``index.html`` is the cohort page (metrics, box plots, worst cases first).
"""

from __future__ import annotations

import argparse
import re
from html import escape
from pathlib import Path

from medseg.errors import InputError
from medseg.io.image import Image, ScalarImage
from medseg.io.reader import read_image
from medseg.io.resample import resample_to
from medseg.metrics.aggregate import BOOTSTRAP_SAMPLES
from medseg.metrics.cohort import evaluate_cohort, read_class_names, read_mask
from medseg.metrics.evaluate import DEFAULT_NSD_TOLERANCE_MM
from medseg.metrics.pairing import CasePair, case_name
from medseg.report.cohort_page import write_cohort_report
from medseg.report.html import page, table
from medseg.report.study import write_study_report
from medseg.utils.atomic import write_text_atomic

#: nnU-Net's channel suffix on image file names.
_CHANNEL_SUFFIX = re.compile(r"_\d{4}$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mask", help="AI mask file, or folder of masks")
    parser.add_argument("--image", required=True, help="image file/DICOM folder, or folder of images")
    parser.add_argument("--reference", help="reference or clinician mask (file or folder)")
    parser.add_argument("--uncertainty", help="per-voxel uncertainty map on the image grid (file or folder)")
    parser.add_argument("--out", required=True, help="folder for the HTML pages")
    parser.add_argument("--labels", help='JSON class names, e.g. dataset.json or {"1": "liver"}')
    parser.add_argument("--model-name", help="model name shown on the pages")
    parser.add_argument("--model-version", help="model version shown on the pages")
    parser.add_argument("--modality", help="CT, MR, CR/DX... (chooses the display window)")
    parser.add_argument("--window", nargs=2, type=float, metavar=("WIDTH", "LEVEL"), help="display window")
    parser.add_argument("--threshold", type=float, help="binarise masks: label 1 where value > THRESHOLD")
    parser.add_argument("--resample", action="store_true", help="put masks on the image grid (nearest)")
    parser.add_argument("--tolerance-mm", type=float, default=DEFAULT_NSD_TOLERANCE_MM, help="NSD tolerance")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default %(default)s)")
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP_SAMPLES, help="bootstrap resamples")


def _by_case(path: Path, strip_channel: bool = False) -> dict[str, Path]:
    """Case name -> path for a file (one case) or a folder of cases."""
    if not path.exists():
        raise InputError(path, "no such file or folder")
    entries = [path] if path.is_file() else sorted(p for p in path.iterdir() if not p.name.startswith("."))
    cases = {}
    for entry in entries:
        name = case_name(entry)
        cases[_CHANNEL_SUFFIX.sub("", name) if strip_channel else name] = entry
    return cases


def _studies(args: argparse.Namespace) -> list[dict[str, Path]]:
    """Per study: mask, image and optional reference/uncertainty paths, matched by case name."""
    mask_path, image_path = Path(args.mask), Path(args.image)
    single = mask_path.is_file()
    masks = _by_case(mask_path)
    images = {next(iter(masks)): image_path} if single else _by_case(image_path, strip_channel=True)
    extra = {}
    for role in ("reference", "uncertainty"):
        given = getattr(args, role)
        if given:
            extra[role] = {next(iter(masks)): Path(given)} if single else _by_case(Path(given))
    studies = []
    for name, mask in masks.items():
        study = {"name": name, "mask": mask}
        for role, found in (("image", images), *extra.items()):
            if name not in found:
                raise InputError(mask, f"no {role} for case {name!r}")
            study[role] = found[name]
        studies.append(study)
    return studies


def _on_grid(image: Image, grid: Image, resample: bool) -> Image:
    """`image` itself, or with `resample` and a different grid, resampled onto `grid`."""
    if image.same_grid(grid) or not resample:
        return image
    return resample_to(image, grid)


def run(args: argparse.Namespace) -> int:
    names = read_class_names(args.labels) if args.labels else {}
    out = Path(args.out)
    window = tuple(args.window) if args.window else None
    links, pairs = {}, []
    for number, study in enumerate(_studies(args), start=1):
        image = read_image(study["image"], ScalarImage)
        mask = _on_grid(read_mask(study["mask"], args.threshold), image, args.resample)
        reference = None
        if "reference" in study:
            reference = _on_grid(read_mask(study["reference"], args.threshold), image, args.resample)
            pairs.append(CasePair(study["name"], study["mask"], study["reference"]))
        uncertainty = None
        if "uncertainty" in study:
            uncertainty = _on_grid(read_image(study["uncertainty"], ScalarImage), image, args.resample)
        filename = f"study_{number:03d}.html"
        write_study_report(
            out / filename, image, mask, names, reference=reference, uncertainty=uncertainty,
            model_name=args.model_name, model_version=args.model_version, title=f"Study {study['name']}",
            window=window, modality=args.modality, tolerance_mm=args.tolerance_mm,
        )  # fmt: skip
        links[study["name"]] = filename
    if pairs:
        result = evaluate_cohort(
            pairs, names or None, args.tolerance_mm, args.resample, args.threshold, args.seed, args.bootstrap
        )
        write_cohort_report(out / "index.html", result, links)
    else:
        rows = [
            f'<td class="text"><a href="{escape(href)}">{escape(name)}</a></td>'
            for name, href in links.items()
        ]
        write_text_atomic(
            out / "index.html", page("Studies", table(["study"], rows, "studies"), {"studies": links})
        )
    print(f"wrote {len(links)} study page(s) and {out / 'index.html'}")
    return 0
