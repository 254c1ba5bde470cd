"""The bad-input corpus: small broken DICOM series, NIfTI files, PNGs and masks, each built by code.

Every `Case` writes its input under a folder and says what medseg must do with it: the error type a
reader raises and words its one-line message contains (``error``/``words``), and what a batch
``medseg infer`` records for it (``batch``: "failed", "skipped" or "done", for cases such as several
series in one folder that a batch handles one series at a time). Mask cases (``role="mask"``) are read
as label maps, as ``medseg evaluate`` and ``medseg report`` read them, and checked against a reference;
dataset cases (``role="dataset"``) are a training manifest whose fingerprint is computed.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import PIL.Image
import pydicom
from dicom_factory import ct_image, edit, write_non_image, write_series
from pydicom.encaps import encapsulate
from pydicom.uid import generate_uid

from medseg.errors import GeometryError, InputError
from medseg.io.image import LabelMap, ScalarImage
from medseg.io.volume import write_volume

#: SOP classes of two non-image objects.
BASIC_TEXT_SR, ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.104.1"
#: A 3D reference mask grid shared by the mask cases.
MASK_SHAPE = (12, 10, 6)
#: Byte offset of pixdim[0] in a NIfTI-1 header.
PIXDIM_OFFSET = 76


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], Path]  # writes the input under the given folder and returns its path
    error: type[InputError] | None  # None: the input reads (and a batch handles it)
    words: str  # regular expression the message must match (ignored when error is None)
    batch: str = "failed"  # what `medseg infer` records for it
    role: str = "image"  # "image" (read_image, infer), "mask" (evaluate) or "dataset" (training manifest)


CASES: list[Case] = []


def case(name: str, error: type[InputError] | None, words: str, batch: str = "failed", role: str = "image"):
    """Register the decorated builder as a corpus case."""

    def register(build: Callable[[Path], Path]) -> Callable[[Path], Path]:
        CASES.append(Case(name, build, error, words, batch, role))
        return build

    return register


def edited_case(
    name: str, error: type[InputError], words: str, change: Callable[[int, pydicom.Dataset], None]
):
    """Register a case: a good series with `change(slice_index, dataset)` applied to every slice file."""
    CASES.append(Case(name, lambda folder: _edited(folder, change), error, words))


# --- DICOM series --------------------------------------------------------------------------------


def _series(folder: Path, seed: int = 0, shape: tuple[int, int, int] = (24, 20, 6)) -> list[Path]:
    return write_series(ct_image(shape, seed=seed), folder)


def _edited(folder: Path, change: Callable[[int, pydicom.Dataset], None]) -> Path:
    edit(_series(folder), change)
    return folder


def _set(keyword: str, value: object, only: int | None = None) -> Callable[[int, pydicom.Dataset], None]:
    def change(k: int, ds: pydicom.Dataset) -> None:
        if only is None or k == only:
            setattr(ds, keyword, value)

    return change


def _delete(keyword: str, only: int | None = None) -> Callable[[int, pydicom.Dataset], None]:
    def change(k: int, ds: pydicom.Dataset) -> None:
        if (only is None or k == only) and keyword in ds:
            delattr(ds, keyword)

    return change


def _file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@case("truncated pixel data", InputError, "pixel data is truncated")
def _(folder: Path) -> Path:
    paths = _series(folder)
    _cut(paths[2], paths[2].stat().st_size - 300)
    return folder


@case("file cut inside the header", GeometryError, "missing slice")
def _(folder: Path) -> Path:
    paths = _series(folder)
    _cut(paths[3], 200)  # unreadable, so the series has a gap where it was
    return folder


@case("empty .dcm file", InputError, "unreadable DICOM file")
def _(folder: Path) -> Path:
    return _file(folder / "empty.dcm", b"")


@case("random bytes named .dcm", InputError, "unreadable DICOM file")
def _(folder: Path) -> Path:
    return _file(folder / "noise.dcm", np.random.default_rng(0).bytes(4000))


@case("a folder of files that are not DICOM", InputError, "no DICOM image", batch="skipped")
def _(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for k in range(3):
        (folder / f"notes_{k}.txt").write_text("not an image\n")
    return folder


edited_case("no pixel data", InputError, "no pixel data", _delete("PixelData"))


edited_case("one slice without pixel data", InputError, "no pixel data", _delete("PixelData", only=4))


edited_case("BitsAllocated 12", InputError, "BitsAllocated 12 is not supported", _set("BitsAllocated", 12))


edited_case("BitsAllocated 1", InputError, "BitsAllocated 1 is not supported", _set("BitsAllocated", 1))


edited_case(
    "BitsAllocated 8 for 16-bit data",
    InputError,
    "BitsStored 16 does not fit BitsAllocated 8",  # the header contradicts itself: caught before the bytes
    _set("BitsAllocated", 8),
)


edited_case(
    "BitsAllocated 32 for 16-bit data", InputError, "pixel data is truncated", _set("BitsAllocated", 32)
)


edited_case("colour pixels", InputError, "colour images", _set("SamplesPerPixel", 3))


edited_case(
    "zero pixel spacing", GeometryError, "PixelSpacing .* must be positive", _set("PixelSpacing", [0.0, 0.7])
)


edited_case(
    "negative pixel spacing",
    GeometryError,
    "PixelSpacing .* must be positive",
    _set("PixelSpacing", [-0.8, 0.7]),
)


edited_case(
    "pixel spacing with one value",
    GeometryError,
    "PixelSpacing has 1 values instead of 2",
    _set("PixelSpacing", 0.8),
)


edited_case(
    "NaN in the slice position",
    InputError,
    "ImagePositionPatient .* is not finite",
    _set("ImagePositionPatient", ["nan", "0", "0"], only=1),
)


edited_case(
    "Inf pixel spacing", InputError, "PixelSpacing .* is not finite", _set("PixelSpacing", ["inf", "0.7"])
)


@case("text where a number belongs", InputError, "RescaleSlope 'one' is not a number")
def _(folder: Path) -> Path:
    def change(k: int, ds: pydicom.Dataset) -> None:
        ds["RescaleSlope"].VR = "LO"  # DS would refuse the text on writing
        ds.RescaleSlope = "one"

    return _edited(folder, change)


edited_case(
    "all slices at one position (zero slice spacing)",
    GeometryError,
    "duplicate slice",
    _set("ImagePositionPatient", [40.0, 25.0, -60.0]),
)


edited_case("no slice positions", GeometryError, "no ImagePositionPatient", _delete("ImagePositionPatient"))


@case("missing slice", GeometryError, r"1 missing slice\(s\)")
def _(folder: Path) -> Path:
    _series(folder)[3].unlink()
    return folder


@case("two missing slices", GeometryError, r"2 missing slice\(s\)")
def _(folder: Path) -> Path:
    paths = _series(folder, shape=(24, 20, 8))
    paths[3].unlink()
    paths[4].unlink()
    return folder


@case("duplicated slice (a second instance at one position)", GeometryError, "duplicate slice")
def _(folder: Path) -> Path:
    paths = _series(folder)
    ds = pydicom.dcmread(paths[2])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(folder / "copy_of_slice_3.dcm")
    return folder


@case("the same file twice (the identical copy is left out)", None, "", batch="done")
def _(folder: Path) -> Path:
    paths = _series(folder)
    shutil.copyfile(paths[1], folder / "again.dcm")
    return folder


edited_case(
    "non-uniform slice spacing",
    GeometryError,
    "non-uniform slice spacing",
    lambda k, ds: setattr(ds, "ImagePositionPatient", [-40.0, -25.0, -60 + k * k]),
)


@case("two series in one folder", InputError, "2 series found", batch="done")
def _(folder: Path) -> Path:
    _series(folder / "a", seed=1)
    _series(folder / "b", seed=2)
    return folder


@case("two studies in one folder", InputError, "2 series found", batch="done")
def _(folder: Path) -> Path:
    _series(folder / "a", seed=1)
    edit(_series(folder / "b", seed=2), _set("StudyInstanceUID", "1.2.826.0.1.3680043.8.498.1"))
    return folder


@case("a slice from another series with the same UID", GeometryError, "image size")
def _(folder: Path) -> Path:
    paths = _series(folder)
    uid = pydicom.dcmread(paths[0]).SeriesInstanceUID
    other = _series(folder / "other", seed=3, shape=(16, 16, 2))
    edit(other[:1], _set("SeriesInstanceUID", uid))
    other[1].unlink()
    return folder


edited_case(
    "inconsistent orientation",
    GeometryError,
    "ImageOrientationPatient .* differs",
    _set("ImageOrientationPatient", [1, 0, 0, 0, 0, -1], only=2),
)


edited_case(
    "orientation not orthonormal",
    GeometryError,
    "not two orthogonal unit vectors",
    _set("ImageOrientationPatient", [1, 0, 0, 1, 0, 0]),
)


@case("gantry tilt", GeometryError, "gantry tilt")
def _(folder: Path) -> Path:
    shift = 2.5 * np.tan(np.radians(15.0))  # mm in-plane per slice
    return _edited(
        folder, lambda k, ds: setattr(ds, "ImagePositionPatient", [-40.0, -25.0 + k * shift, -60 + 2.5 * k])
    )


@case("one-slice series", None, "", batch="done")
def _(folder: Path) -> Path:
    _series(folder, shape=(24, 20, 1))
    return folder


edited_case(
    "header promising huge dimensions",
    InputError,
    "pixel data is truncated",
    lambda k, ds: (setattr(ds, "Rows", 65000), setattr(ds, "Columns", 65000)),
)


@case("compressed transfer syntax without a codec", InputError, "no decoder installed")
def _(folder: Path) -> Path:
    def change(k: int, ds: pydicom.Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: pydicom has no decoder
        ds.PixelData = encapsulate([ds.PixelData])

    return _edited(folder, change)


@case("unknown transfer syntax", InputError, "unknown transfer syntax")
def _(folder: Path) -> Path:
    def change(k: int, ds: pydicom.Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6"

    return _edited(folder, change)


@case("multi-frame without per-frame geometry", InputError, "frame positions are unknown")
def _(folder: Path) -> Path:
    def change(k: int, ds: pydicom.Dataset) -> None:
        ds.NumberOfFrames = 2
        ds.PixelData = ds.PixelData * 2

    edit(_series(folder)[:1], change)
    for path in sorted(folder.iterdir())[1:]:
        path.unlink()
    return folder


@case("non-image objects only (SR, PDF)", InputError, "no DICOM image", batch="skipped")
def _(folder: Path) -> Path:
    folder.mkdir(parents=True)
    study = generate_uid()
    write_non_image(folder / "report.dcm", BASIC_TEXT_SR, "SR", study)
    write_non_image(folder / "letter.dcm", ENCAPSULATED_PDF, "DOC", study)
    return folder


# --- NIfTI and other volumes ---------------------------------------------------------------------


def _nifti(path: Path, array: np.ndarray, zooms: tuple[float, ...] = (0.8, 0.7, 2.5)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(array, np.diag([*zooms[:3], 1.0]))
    image.header.set_zooms(zooms)
    nib.save(image, path)
    return path


def _small(dtype: str = "float32") -> np.ndarray:
    return np.random.default_rng(0).normal(size=(10, 9, 6)).astype(dtype)


@case("empty NIfTI file", InputError, "cannot read as a volume")
def _(folder: Path) -> Path:
    return _file(folder / "empty.nii.gz", b"")


@case("NIfTI header without voxels", InputError, "voxel data truncated")
def _(folder: Path) -> Path:
    path = _nifti(folder / "header_only.nii", _small())
    _cut(path, 352)
    return path


@case("truncated .nii.gz", InputError, "cannot read as a volume")
def _(folder: Path) -> Path:
    path = _nifti(folder / "cut.nii.gz", _small())
    _cut(path, path.stat().st_size // 2)
    return path


@case(".nii.gz that is not gzip", InputError, "cannot read as a volume")
def _(folder: Path) -> Path:
    return _file(folder / "plain.nii.gz", b"this is not a volume\n" * 40)


@case("NIfTI with no voxels (a 0-length axis)", InputError, "no voxels")
def _(folder: Path) -> Path:
    return _nifti(folder / "zero.nii.gz", np.zeros((10, 0, 6), np.float32))


@case("4D NIfTI where 3D is expected", InputError, "4D")
def _(folder: Path) -> Path:
    return _nifti(folder / "four_d.nii.gz", np.zeros((10, 9, 6, 3), np.float32), (0.8, 0.7, 2.5, 1.0))


@case("NIfTI with zero spacing", InputError, r"spacing \(pixdim\) \[0.8, 0.0, 2.5\]")
def _(folder: Path) -> Path:
    path = _nifti(folder / "flat.nii", _small())
    data = bytearray(path.read_bytes())
    data[PIXDIM_OFFSET + 8 : PIXDIM_OFFSET + 12] = np.float32(0.0).tobytes()  # pixdim[2], the y spacing
    path.write_bytes(bytes(data))
    return path


@case("NIfTI with a NaN affine", InputError, "NaN|not finite")
def _(folder: Path) -> Path:
    path = _nifti(folder / "nan_affine.nii.gz", _small())
    image = nib.load(path)
    affine = image.affine.copy()
    affine[0, 3] = np.nan
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine), path)
    return path


@case("NIfTI with NaN voxels", InputError, "NaN or Inf")
def _(folder: Path) -> Path:
    array = _small()
    array[3, 4, 2] = np.nan
    return _nifti(folder / "nan_voxels.nii.gz", array)


@case("NIfTI with Inf voxels", InputError, "NaN or Inf")
def _(folder: Path) -> Path:
    array = _small()
    array[0, 0, 0] = np.inf
    return _nifti(folder / "inf_voxels.nii.gz", array)


@case("vector (RGB) NIfTI", InputError, "component")
def _(folder: Path) -> Path:
    path = folder / "rgb.nii.gz"
    path.parent.mkdir(parents=True)
    rgb = np.zeros((10, 9, 6), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), path)
    return path


@case("MHA header pointing to a missing data file", InputError, "cannot read as a volume")
def _(folder: Path) -> Path:
    path = folder / "lost.mhd"
    path.parent.mkdir(parents=True)
    header = ["ObjectType = Image", "NDims = 3", "DimSize = 10 9 6", "ElementType = MET_SHORT"]
    path.write_text("\n".join([*header, "ElementDataFile = gone.raw", ""]))
    return path


# --- 2D images -----------------------------------------------------------------------------------


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(array, mode).save(path)
    return path


@case("RGBA PNG with transparent pixels", InputError, "transparent pixels")
def _(folder: Path) -> Path:
    rgba = np.full((16, 20, 4), 200, np.uint8)
    rgba[:4, :, 3] = 0
    return _png(folder / "rgba.png", rgba)


@case("truncated PNG", InputError, "cannot read image|not a readable")
def _(folder: Path) -> Path:
    path = _png(folder / "cut.png", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    _cut(path, path.stat().st_size // 2)
    return path


@case("text file named .png", InputError, "not a readable PNG/JPEG")
def _(folder: Path) -> Path:
    return _file(folder / "fake.png", b"hello\n")


@case("gzip file named .png", InputError, "not a readable PNG/JPEG")
def _(folder: Path) -> Path:
    return _file(folder / "packed.png", gzip.compress(b"\x89PNG" * 100))


# --- masks (evaluate, report) --------------------------------------------------------------------


def reference_mask() -> LabelMap:
    """The reference the mask cases are compared with: labels 0..2 on a 3D grid."""
    array = np.zeros(MASK_SHAPE, np.uint8)
    array[2:6, 2:6, 1:4], array[7:10, 3:7, 2:5] = 1, 2
    return LabelMap(array, np.diag([0.8, 0.7, 2.5, 1.0]))


def _mask(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = reference_mask().affine if affine is None else affine
    write_volume(ScalarImage(array, affine), path)
    return path


@case("mask whose grid does not match its image", GeometryError, "differs from reference", role="mask")
def _(folder: Path) -> Path:
    return _mask(folder / "shifted.nii.gz", reference_mask().array, np.diag([0.8, 0.7, 3.0, 1.0]))


@case("mask with a different shape", GeometryError, "differs from reference", role="mask")
def _(folder: Path) -> Path:
    return _mask(folder / "smaller.nii.gz", reference_mask().array[:-2])


@case("labels with unexpected values", InputError, r"unexpected label value\(s\) 7", role="dataset")
def _(folder: Path) -> Path:
    array = reference_mask().array.copy()
    array[0, 0, 0] = 7
    _mask(folder / "seven.nii.gz", array)
    _nifti(folder / "image.nii.gz", np.ones(MASK_SHAPE, np.float32), (0.8, 0.7, 2.5))
    manifest = {
        "name": "corpus",
        "labels": {"0": "background", "1": "liver", "2": "spleen"},
        "cases": [{"id": "a", "image": "image.nii.gz", "label": "seven.nii.gz"}],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder / "manifest.json"


@case("negative labels", InputError, r"unexpected label value\(s\) -1", role="mask")
def _(folder: Path) -> Path:
    array = reference_mask().array.astype(np.int16)
    array[1, 1, 1] = -1
    return _mask(folder / "negative.nii.gz", array)


@case("fractional labels", InputError, "whole numbers", role="mask")
def _(folder: Path) -> Path:
    return _mask(folder / "soft.nii.gz", reference_mask().array * np.float32(0.5))


@case("2D mask for a 3D image", GeometryError, "differs from reference", role="mask")
def _(folder: Path) -> Path:
    return _png(folder / "slice.png", reference_mask().array[:, :, 2].T.copy())
