"""Fast NIfTI-1 reading: header by nibabel, voxels inflated by ISA-L straight into the output array.

NIfTI stores voxels with the first index varying fastest, which is medseg's ``array[i, j, k]`` in
Fortran order, so the voxels are decompressed directly into the final array: no transposed copy,
and ISA-L inflates faster than zlib. `read_volume` uses this only when the file is unambiguous (3D,
no intensity scaling, qform and sform absent or in agreement, no shear); for anything else
`read_nifti` returns None and SimpleITK reads the file, so both paths give the same image.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip
from nibabel.wrapstruct import WrapStructError

from medseg.errors import InputError
from medseg.io.image import ScalarImage

#: File endings handled here.
NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: Largest difference (mm, or direction cosine) between qform and sform still taken as agreement.
FORM_TOLERANCE = 1e-4
#: Magic strings of NIfTI-1 headers (single file, header and image pair).
NIFTI1_MAGIC = (b"n+1", b"ni1")
#: Deflate never expands data more than about 1032 times: a .gz file cannot hold more than this many
#: bytes per byte of its own size.
DEFLATE_MAX_RATIO = 1100
#: Voxel kinds read here: signed/unsigned integers and floats (not RGB, complex or bool).
NUMERIC_KINDS = "iuf"


def is_nifti_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def read_nifti(path: str | os.PathLike) -> ScalarImage | None:
    """Read a plain 3D NIfTI-1 file, or return None when SimpleITK should read it (see the module docs).

    Raises InputError (a ValueError) when the file is empty, the header is cut short, a voxel spacing is
    zero or not finite, or the voxel data is cut short or corrupt (SimpleITK silently fills a truncated
    .nii.gz with zeros and turns a zero spacing into 1 mm).
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise InputError(path, "cannot read as a volume (empty file)")
    opener = igzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as file:
        try:
            header = nib.Nifti1Header.from_fileobj(file, check=False)  # checking sets a zero spacing to 1
        except (EOFError, WrapStructError):
            raise InputError(path, "cannot read as a volume (file ends inside the header)") from None
        except (nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError, OSError):
            return None  # not NIfTI-1 (e.g. NIfTI-2) or not gzip: SimpleITK decides
        if header["magic"].item() not in NIFTI1_MAGIC:
            return None
        _check_spacing(header, path, min(len(header.get_data_shape()), 3))
        try:
            header = nib.Nifti1Header(header.binaryblock, header.endianness, check=True)
        except nib.spatialimages.HeaderDataError:
            return None  # a header nibabel cannot fix: SimpleITK decides
        shape, dtype = header.get_data_shape(), header.get_data_dtype()
        _check_size(header, path, opener is igzip.open)
        affine = unambiguous_affine(header)
        if affine is None or len(shape) != 3 or dtype.kind not in NUMERIC_KINDS or _scaled(header):
            return None
        array = np.empty(shape, dtype=dtype, order="F")
        try:
            file.seek(int(header.get_data_offset()))
            read = file.readinto(memoryview(array.reshape(-1, order="F")).cast("B"))
        except (OSError, EOFError) as error:
            raise InputError(path, f"cannot read as a volume (corrupt voxel data: {error})") from None
    if read != array.nbytes:
        raise InputError(
            path, f"cannot read as a volume (voxel data truncated: {read} of {array.nbytes} bytes)"
        )
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    return ScalarImage(array, affine)


def _check_size(header: nib.Nifti1Header, path: Path, compressed: bool) -> None:
    """Refuse a header promising more voxel bytes than the file can hold, before allocating them."""
    promised = int(np.prod(header.get_data_shape(), dtype=np.float64)) * header.get_data_dtype().itemsize
    size = path.stat().st_size
    room = size * DEFLATE_MAX_RATIO if compressed else size - int(header.get_data_offset())
    if promised > room:
        raise InputError(
            path,
            f"cannot read as a volume (voxel data truncated: the header promises "
            f"{header.get_data_shape()} x {header.get_data_dtype()} = {promised} bytes, "
            f"the file holds at most {max(room, 0)})",
        )


def _check_spacing(header: nib.Nifti1Header, path: Path, ndim: int) -> None:
    spacing = [round(float(value), 6) for value in header["pixdim"][1 : ndim + 1]]
    if not all(np.isfinite(spacing)) or 0 in spacing:
        raise InputError(path, f"voxel spacing (pixdim) {spacing} has a zero or non-finite value")


def unambiguous_affine(header: nib.Nifti1Header) -> np.ndarray | None:
    """The RAS+ affine when qform and sform agree (or only one is set) and it has no shear, else None."""
    sform, sform_code = header.get_sform(coded=True)
    qform, qform_code = header.get_qform(coded=True)
    if sform_code > 0 and qform_code > 0:
        if not np.allclose(sform, qform, atol=FORM_TOLERANCE):
            return None
        affine = qform
    elif sform_code > 0:
        affine = sform
    elif qform_code > 0:
        affine = qform
    else:
        return None
    axes = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    if not np.allclose(axes.T @ axes, np.eye(3), atol=FORM_TOLERANCE):
        return None
    return affine


def _scaled(header: nib.Nifti1Header) -> bool:
    slope, intercept = header.get_slope_inter()
    return slope not in (None, 1.0) or intercept not in (None, 0.0)
