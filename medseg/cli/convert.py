"""`medseg convert DICOM_DIR OUT.nii.gz`: one DICOM series (or radiograph) written as a volume file."""

from __future__ import annotations

import argparse
from pathlib import Path

from medseg.cli.infer import key_value
from medseg.errors import InputError
from medseg.io.dicom import read_series
from medseg.io.dicom.geometry import REPAIRS
from medseg.io.dicom.scan import FolderScan, SeriesInfo, is_radiograph, scan_folder
from medseg.io.reader import read_image
from medseg.io.volume import write_volume


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dicom_dir",
        type=Path,
        help="folder holding the series (any depth), or one DICOM file (e.g. a radiograph)",
    )
    parser.add_argument("out", type=Path, help="output file: .nii.gz, .nii, .nrrd or .mha")
    parser.add_argument(
        "--series", help="SeriesInstanceUID, or the index that 'medseg info' prints, when there are several"
    )
    parser.add_argument(
        "--repair", action="append", choices=sorted(REPAIRS), default=[], help="allow a resampling repair"
    )
    parser.add_argument("--time-point", type=int, help="TemporalPositionIdentifier to keep when several")
    parser.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        type=key_value,
        help="of a series stacking several volumes (echoes, magnitude/phase, GE 4D without temporal "
        "positions), keep the one with this header value, e.g. EchoNumbers=1 (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    if args.dicom_dir.is_file():  # one DICOM file: a radiograph, or a multi-frame volume
        image = read_image(args.dicom_dir)
        write_volume(image, args.out)
        print(f"{'x'.join(str(n) for n in image.shape)} voxels -> {args.out}")
        return 0
    series = choose_series(scan_folder(args.dicom_dir), args.series)
    if is_radiograph(series):  # projections are 2D images, read with their imager spacing and LUTs
        if len(series.files) != 1:
            raise InputError(
                args.dicom_dir, f"{len(series.files)} radiographs in one series: convert one file"
            )
        image = read_image(series.files[0])
    else:
        image = read_series(
            series.files, repair=args.repair, time_point=args.time_point, select=dict(args.select)
        )
    write_volume(image, args.out)
    size = "x".join(str(n) for n in image.shape)
    spacing = "x".join(f"{v:.3g}" for v in image.spacing)
    print(f"{series.modality} series '{series.description}': {size} voxels of {spacing} mm -> {args.out}")
    for repair in image.meta.get("repairs", []):
        print(f"  repaired: {repair}")
    return 0


def choose_series(scan: FolderScan, wanted: str | None) -> SeriesInfo:
    """The series named by UID or 1-based index, or the only one; InputError listing them otherwise."""
    listing = "; ".join(
        f"{n}: {s.modality} '{s.description}' ({s.number_of_slices} slices, {s.series_instance_uid})"
        for n, s in enumerate(scan.series, start=1)
    )
    if not scan.series:
        raise InputError(scan.folder, "no DICOM image series found")
    if wanted is None:
        if len(scan.series) > 1:
            raise InputError(
                scan.folder, f"{len(scan.series)} series found, pick one with --series: {listing}"
            )
        return scan.series[0]
    for series in scan.series:
        if wanted == series.series_instance_uid:
            return series
    if wanted.isdigit() and 1 <= int(wanted) <= len(scan.series):
        return scan.series[int(wanted) - 1]
    raise InputError(scan.folder, f"no series {wanted!r}; found {listing}")
