"""DICOM outputs: binary vs label-map SEG of a 15-class CT (size, write time), RTSTRUCT round trip (Dice).

SEG case: TotalSegmentator's 20-slice abdominal CT (512 x 512, DICOM) with its 15 largest structures of
the shipped label map. The baseline is the binary SEG (one bit plane per segment and slice, what viewers
have always read); the label-map SEG (DICOM 2024c) stores one frame of segment numbers per slice, JPEG-LS
lossless. Both must decode to the same labels. RTSTRUCT case: the clinician structures of the LUNG1 CT
written by medseg and read back; the Dice per structure says what the contour round trip loses.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from _common import emit

from medseg.io.image import LabelMap
from medseg.io.reader import read_image
from medseg.io.resample import resample_to
from medseg.io.rtstruct import read_rtstruct, rtstruct_labels
from medseg.io.rtstruct_writer import write_rtstruct
from medseg.io.seg import read_seg
from medseg.io.seg_writer import read_source_headers, write_seg

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
TOTALSEG = DATASETS / "totalseg_ct_mr_examples"
LUNG1 = DATASETS / "nsclc_lung1_ct_rtstruct"
#: Classes kept of the TotalSegmentator map: the largest, as a 15-organ CT model would give.
CLASSES = 15


def seg_rows(out: Path) -> list[dict[str, object]]:
    ct = read_image(TOTALSEG / "example_ct_dicom")
    full = read_image(TOTALSEG / "example_seg_dicom.nii.gz", LabelMap)
    full = resample_to(full, ct)  # nearest neighbour; its y axis is flipped against the DICOM series
    values, counts = np.unique(full.array[full.array > 0], return_counts=True)
    kept = values[np.argsort(counts)[::-1][:CLASSES]]
    array = np.where(np.isin(full.array, kept), full.array, 0)
    labels = LabelMap(array.astype(np.uint8), ct.affine.copy())
    names = {int(v): f"structure_{int(v)}" for v in kept}
    headers = read_source_headers(
        sorted((TOTALSEG / "example_ct_dicom").iterdir()), ct.meta["sop_instance_uids"]
    )
    rows, decoded = [], {}
    for kind in ("binary", "labelmap"):
        path = out / f"{kind}.dcm"
        start = time.perf_counter()
        write_seg(labels, headers, path, names, "bench", "1", seg_type=kind)
        seconds = time.perf_counter() - start
        decoded[kind] = read_seg(path, ct).array
        rows.append(
            {"object": f"{kind} SEG, {CLASSES} classes", "bytes": path.stat().st_size, "seconds": seconds}
        )
    if not np.array_equal(decoded["binary"], decoded["labelmap"]):
        raise SystemExit("MISMATCH: the binary and label-map SEGs decode to different labels")
    for row in rows:
        row["vs_binary"] = row["bytes"] / rows[0]["bytes"]
        row["dice"] = None  # equal labels, checked above
    return rows


def rtstruct_rows(out: Path) -> list[dict[str, object]]:
    ct = read_image(LUNG1 / "CT")
    labels = rtstruct_labels(next((LUNG1 / "RTSTRUCT").glob("*.dcm")), ct)
    names = labels.meta["segment_labels"]
    headers = read_source_headers(sorted((LUNG1 / "CT").glob("*.dcm")), ct.meta["sop_instance_uids"])
    path = out / "rtstruct.dcm"
    start = time.perf_counter()
    write_rtstruct(labels, headers, path, names, "bench")
    seconds = time.perf_counter() - start
    back = {s.name: s.mask for s in read_rtstruct(path, ct)}
    rows = []
    for value, name in names.items():
        expected, got = labels.array == value, back[name]
        dice = 2 * (expected & got).sum() / (expected.sum() + got.sum())
        rows.append(
            {"object": f"RTSTRUCT {name}", "bytes": path.stat().st_size, "seconds": seconds, "dice": dice}
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medseg bench dicom_outputs", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_dicom_outputs"), help="where the files go")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    args.out.mkdir(parents=True, exist_ok=True)
    emit("dicom_outputs", seg_rows(args.out) + rtstruct_rows(args.out), args.json)
    return 0
