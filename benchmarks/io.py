"""Reading a CT series and its .nii.gz: medseg vs SimpleITK vs MONAI LoadImage, beside raw file reading.

A synthetic 512x512xN CT (default N=300) is written with medseg's DICOM writer (one uncompressed
file per slice) and as .nii.gz to a temporary folder. Each reader is timed as best of `--repeats`
after one warm-up run, so every reader sees the files in the page cache; "raw read" is the time to
read the same bytes into memory (cat), the limit for any reader. Reader throughput is MB of voxel
data (int16) per second; raw-read throughput is MB of file bytes per second.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from _common import best_time, emit

from medseg.io.dicom import read_series
from medseg.io.dicom.writer import write_dicom_series
from medseg.io.image import ScalarImage
from medseg.io.volume import read_volume, write_volume

#: Phantom HU values: air outside, soft tissue in an elliptic body, bone in a ring.
AIR_HU, TISSUE_HU, BONE_HU, NOISE_HU = -1000.0, 40.0, 700.0, 15.0


def phantom(slices: int, seed: int = 0) -> ScalarImage:
    """A CT-like volume (whole HU, realistic compressibility): elliptic body, bone ring, noise."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-1, 1, 512), np.linspace(-1, 1, 512), indexing="ij")
    radius = (x / 0.8) ** 2 + (y / 0.6) ** 2
    body = np.where(radius < 1, TISSUE_HU, AIR_HU) + np.where((radius > 0.1) & (radius < 0.13), BONE_HU, 0)
    array = np.empty((512, 512, slices), dtype=np.float32)  # float: the noise is added before rounding
    for k in range(slices):
        array[:, :, k] = np.rint(body + rng.normal(0, NOISE_HU, body.shape) * (radius < 1))
    affine = np.diag([-0.78, -0.78, 1.0, 1.0])
    affine[:3, 3] = [200.0, 200.0, -300.0]
    return ScalarImage(array.astype(np.int16), affine)


def raw_read(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with path.open("rb") as file:
            total += len(file.read())
    return total


def sitk_series(folder: Path) -> sitk.Image:
    """GDCM-sorted file names, int16 output; the numpy view of the result is free, so it is not taken."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    reader.SetOutputPixelType(sitk.sitkInt16)
    return reader.Execute()


def monai_loader() -> Callable[[Path], object]:
    warnings.filterwarnings("ignore", module="monai")
    warnings.filterwarnings("ignore", message=".*nvimgcodec.*")
    from monai.transforms import LoadImage

    load = LoadImage(reader="PydicomReader", image_only=True)
    return lambda folder: load(str(folder))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medseg bench io", description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300, help="number of 512x512 slices (default 300)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per reader (best is kept)")
    parser.add_argument("--no-monai", action="store_true", help="skip MONAI (slow)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="medseg-bench-io-") as temporary:
        root = Path(temporary)
        image = phantom(args.slices)
        paths = write_dicom_series(image, root / "series")
        nifti = write_volume(image, root / "volume.nii.gz")
        rows: list[dict[str, object]] = []

        def measure(fmt: str, reader: str, function: Callable[[], object], baseline: float | None) -> float:
            """Time `function`; MB/s counts voxel bytes for readers and file bytes for raw reads."""
            seconds = best_time(function, repeats=args.repeats)
            size = (function() if reader.startswith("raw") else image.array.nbytes) / 1e6
            rows.append(
                {
                    "format": fmt,
                    "reader": reader,
                    "seconds": seconds,
                    "MB": size,
                    "MB/s": size / seconds,
                    "speedup_vs_sitk": None if baseline is None else baseline / seconds,
                }
            )
            return seconds

        measure("dicom", "raw read (cat)", lambda: raw_read(paths), None)
        baseline = measure("dicom", "SimpleITK ImageSeriesReader", lambda: sitk_series(root / "series"), None)
        medseg_dicom = measure("dicom", "medseg read_series", lambda: read_series(root / "series"), baseline)
        summary = [f"medseg read_series is {baseline / medseg_dicom:.2f}x SimpleITK"]
        if not args.no_monai:
            load = monai_loader()
            monai = measure(
                "dicom", "MONAI LoadImage(PydicomReader)", lambda: load(root / "series"), baseline
            )
            summary.append(f"{monai / medseg_dicom:.1f}x MONAI LoadImage")

        measure("nii.gz", "raw read (cat)", lambda: raw_read([nifti]), None)
        baseline = measure("nii.gz", "SimpleITK ReadImage", lambda: sitk.ReadImage(str(nifti)), None)
        medseg_nifti = measure("nii.gz", "medseg read_volume", lambda: read_volume(nifti), baseline)
        summary.append(f"medseg read_volume (.nii.gz) is {baseline / medseg_nifti:.2f}x SimpleITK")

    print(
        f"{args.slices} slices of 512x512 int16; best of {args.repeats} after a warm-up (files in page cache)"
    )
    emit("io", rows, args.json)
    print("; ".join(summary))
    return 0
