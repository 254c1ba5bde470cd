"""`read_image`: one entry point that reads any supported input by looking at the path.

- a folder: the DICOM series in it (an InputError lists the series when there are several);
- a DICOM file (``.dcm`` or any file with the DICOM preamble): a DICOM SEG as a `LabelMap`, a
  multi-frame image as a volume, a single frame as a 2D image;
- ``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``...: `medseg.io.volume.read_volume`;
- ``.png``, ``.jpg``: `medseg.io.png.read_png`.
"""

from __future__ import annotations

import os
from pathlib import Path

from medseg.errors import InputError
from medseg.io.image import Image, LabelMap, ScalarImage
from medseg.io.png import is_png_file, read_png
from medseg.io.sitk_bridge import as_label
from medseg.io.volume import is_volume_file, read_volume

#: Byte offset and value of the DICOM file preamble marker.
DICOM_MAGIC_OFFSET, DICOM_MAGIC = 128, b"DICM"


def is_dicom_file(path: Path) -> bool:
    """True for a ``.dcm`` file or any file that starts with the DICOM preamble."""
    if path.suffix.lower() == ".dcm":
        return True
    with path.open("rb") as file:
        file.seek(DICOM_MAGIC_OFFSET)
        return file.read(len(DICOM_MAGIC)) == DICOM_MAGIC


def read_image(path: str | os.PathLike, kind: type[Image] = ScalarImage) -> Image:
    """Read `path` as `kind` (`ScalarImage` or `LabelMap`); see the module docstring for the formats."""
    path = Path(path)
    if path.is_dir():
        from medseg.io.dicom import read_series  # pydicom: imported when a DICOM input needs it

        return _as_kind(read_series(path), kind)
    if not path.is_file():
        raise InputError(
            path,
            "not a regular file (a pipe, socket or device)" if path.exists() else "no such file or folder",
        )
    if is_volume_file(path):
        return read_volume(path, kind)
    if is_png_file(path):
        return read_png(path, kind)
    if is_dicom_file(path):
        return _read_dicom_file(path, kind)
    raise InputError(
        path, "unsupported file type; expected a DICOM folder or file, NIfTI, NRRD, MHA, PNG or JPEG"
    )


def _read_dicom_file(path: Path, kind: type[Image]) -> Image:
    from medseg.io.annotations import is_seg
    from medseg.io.dicom import read_dicom_image, read_series
    from medseg.io.dicom.files import SkippedFile, read_dataset
    from medseg.io.dicom.mosaic import is_mosaic
    from medseg.io.dicom.values import integer, values_of

    header = read_dataset(path, pixels=False)
    if isinstance(header, SkippedFile):
        raise InputError(path, f"unreadable DICOM file ({header.reason})")
    if is_seg(header):
        from medseg.io.seg import read_seg  # imports highdicom, slow: only when needed

        return read_seg(path)
    with values_of(path):  # a malformed number (NumberOfFrames "1A") is one line naming the file
        frames = integer(header, "NumberOfFrames", 1) or 1
    if frames > 1 or is_mosaic(header):  # the slices of a volume in one file
        return _as_kind(read_series([path]), kind)
    return _as_kind(read_dicom_image(path), kind)


def _as_kind(image: Image, kind: type[Image]) -> Image:
    return as_label(image) if kind is LabelMap else image
