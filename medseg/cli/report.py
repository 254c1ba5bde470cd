"""`medseg report MASK --image IMAGE --out DIR`: second-opinion HTML pages, one per study, and a cohort page.

MASK, IMAGE, --reference and --uncertainty are files (one study) or folders (studies matched by case
name; an image named ``case_0000.nii.gz``, nnU-Net's channel suffix, matches case ``case``). MASK may be
a ``medseg infer`` output folder: each result is matched by the input it records (file name, or the
series folder's name or SeriesInstanceUID), and its class names, model and uncertainty map come with it.
The AI's mask is read as the model's labels; the reference as the clinician's (a 0/255 or anti-aliased
8-bit mask is binarised, and the page says so; ``--threshold`` binarises the reference only). Pages are
titled by the input and named ``study_<n>.html`` (no patient data in file names); ``index.html`` links
them, and with references it is the cohort page (metrics, box plots, worst cases first).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from html import escape
from pathlib import Path

from medseg.cli.evaluate import reference_arguments
from medseg.errors import InputError
from medseg.inference.output_names import UNCERTAINTY_NAME
from medseg.io.image import Image, ScalarImage
from medseg.io.reader import read_image
from medseg.io.resample import reorient, resample_to
from medseg.metrics.aggregate import BOOTSTRAP_SAMPLES
from medseg.metrics.cohort import evaluate_cohort, read_class_names, read_prediction, read_reference
from medseg.metrics.evaluate import DEFAULT_NSD_TOLERANCE_MM
from medseg.metrics.pairing import CasePair, case_name, infer_outputs
from medseg.report.cohort_page import write_cohort_report
from medseg.report.html import page, table
from medseg.report.study import write_study_report
from medseg.utils.atomic import write_text_atomic

#: nnU-Net's channel suffix on image file names.
_CHANNEL_SUFFIX = re.compile(r"_\d{4}$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mask", help="AI mask file, folder of masks, or a 'medseg infer' output folder")
    parser.add_argument("--image", required=True, help="image file/DICOM folder, or folder of images")
    parser.add_argument("--reference", help="reference or clinician mask (file or folder)")
    parser.add_argument("--uncertainty", help="per-voxel uncertainty map on the image grid (file or folder)")
    parser.add_argument("--out", required=True, help="folder for the HTML pages")
    parser.add_argument("--labels", help='JSON class names, e.g. dataset.json or {"1": "liver"}')
    parser.add_argument("--model-name", help="model name shown on the pages")
    parser.add_argument("--model-version", help="model version shown on the pages")
    parser.add_argument("--modality", help="CT, MR, CR/DX... (chooses the display window)")
    parser.add_argument("--window", nargs=2, type=float, metavar=("WIDTH", "LEVEL"), help="display window")
    reference_arguments(parser)
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


def _matched(found: dict[str, Path], aliases: tuple[str, ...]) -> Path | None:
    return next((found[name] for name in aliases if name in found), None)


def _studies(args: argparse.Namespace) -> list[dict]:
    """Per study: its name, mask, image and optional reference/uncertainty paths (and result record)."""
    mask_path, image_path = Path(args.mask), Path(args.image)
    outputs = infer_outputs(mask_path) if mask_path.is_dir() else None
    if outputs is not None:
        masks = [(output.names, output.mask, output.record) for output in outputs]
    else:
        masks = [((name,), path, {}) for name, path in _by_case(mask_path).items()]
    single = mask_path.is_file() or (outputs is not None and len(outputs) == 1)
    if single and mask_path.is_file():  # a lone mask file is named after the image it belongs to
        masks = [((case_name(image_path), *masks[0][0]), masks[0][1], {})]
    roles = {"image": image_path, "reference": args.reference, "uncertainty": args.uncertainty}
    found = {
        role: {"*": Path(given)} if single else _by_case(Path(given), strip_channel=role == "image")
        for role, given in roles.items()
        if given
    }
    owners = Counter(name for aliases, _, _ in masks for name in aliases)  # a shared name matches nothing
    studies = []
    for aliases, mask, record in masks:
        study: dict = {"name": aliases[0], "mask": mask, "record": record}
        for role, paths in found.items():
            path = paths["*"] if single else _matched(paths, tuple(n for n in aliases if owners[n] == 1))
            if path is None:
                raise InputError(mask, f"no {role} for case {aliases[0]!r}")
            study[role] = path
        if "uncertainty" not in study and (mask.parent / UNCERTAINTY_NAME).is_file() and record:
            study["uncertainty"] = mask.parent / UNCERTAINTY_NAME  # written by medseg infer beside the mask
        studies.append(study)
    return studies


def _on_grid(image: Image, grid: Image, resample: bool) -> Image:
    """`image` itself; the same voxels in `grid`'s axis order and direction (exact); or with `resample`
    and a different grid, resampled onto `grid`."""
    if image.same_grid(grid):
        return image
    if image.orientation != grid.orientation and (turned := reorient(image, grid.orientation)).same_grid(
        grid
    ):
        return turned
    return resample_to(image, grid) if resample else image


def run(args: argparse.Namespace) -> int:
    names = read_class_names(args.labels) if args.labels else {}
    out = Path(args.out)
    window = tuple(args.window) if args.window else None
    links, pairs, names_seen = {}, [], {}
    for number, study in enumerate(_studies(args), start=1):
        image = read_image(study["image"], ScalarImage)
        record = study["record"]
        predicted = read_prediction(Path(study["mask"]))
        mask = _on_grid(predicted.labels, image, args.resample)
        reference, notes = None, [f"AI mask: {predicted.note}."] if predicted.note else []
        if "reference" in study:
            reading = read_reference(Path(study["reference"]), args.threshold, args.map, grid=image)
            reference = _on_grid(reading.labels, image, args.resample)
            notes += [f"Reference: {reading.note}."] if reading.note else []
            pairs.append(CasePair(study["name"], study["mask"], study["reference"]))
        uncertainty = None
        if "uncertainty" in study:
            uncertainty = _on_grid(read_image(study["uncertainty"], ScalarImage), image, args.resample)
        model = record.get("model", {})
        class_names = names or {int(k): v for k, v in model.get("class_names", {}).items() if int(k)}
        filename = f"study_{number:03d}.html"
        write_study_report(
            out / filename, image, mask, class_names, reference=reference, uncertainty=uncertainty,
            model_name=args.model_name or model.get("name"),
            model_version=args.model_version or model.get("medseg_version"),
            title=f"Second opinion: {study['name']}", window=window, modality=args.modality,
            tolerance_mm=args.tolerance_mm, notes=notes,
        )  # fmt: skip
        links[study["name"]] = filename
        names_seen.update(class_names)
    if pairs:
        result = evaluate_cohort(
            pairs,
            names_seen or None,
            args.tolerance_mm,
            args.resample,
            args.threshold,
            args.seed,
            args.bootstrap,
            args.map,
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
