"""Stored pixel values of a dataset, as a (frames, rows, columns) array.

Uncompressed (native) pixel data is viewed with `np.frombuffer`, which is several times faster than
pydicom's generic path. Compressed transfer syntaxes go through pydicom's pixel plugins (pylibjpeg,
pyjpegls, openjpeg, RLE); a syntax without an installed decoder gives an `InputError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.pixels import get_decoder
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian

from medseg.errors import InputError
from medseg.io.dicom.mosaic import is_mosaic, mosaic_layout, untile
from medseg.io.dicom.values import integer, number, text, values_of

#: Bits per stored value that we read (1-bit data is for masks and overlays, not images).
SUPPORTED_BITS_ALLOCATED = (8, 16, 32)
#: Image Pixel module attributes without which stored values cannot be read.
REQUIRED = ("Rows", "Columns", "BitsAllocated", "PixelRepresentation")
#: Photometric interpretations whose values are intensities (MONOCHROME1 is inverted on reading).
GREY_LEVELS = ("MONOCHROME1", "MONOCHROME2")
#: (7FE0,0010) Pixel Data.
PIXEL_DATA_TAG = 0x7FE00010


def transfer_syntax(ds: pydicom.Dataset) -> UID:
    """The transfer syntax of a dataset read from a file."""
    return UID(text(ds.file_meta, "TransferSyntaxUID"))


def check_decodable(ds: pydicom.Dataset, path: Path, pixels: bool = True) -> None:
    """Raise InputError (naming the file and the problem) when the pixel data cannot be decoded here, or
    holds no intensities to segment. `pixels` False checks what a header without its pixel data shows."""
    with values_of(path):
        _check_decodable(ds, path, pixels)


def _check_decodable(ds: pydicom.Dataset, path: Path, pixels: bool) -> None:
    for keyword in REQUIRED:
        if integer(ds, keyword) is None:
            raise InputError(path, f"no {keyword}: the pixel data cannot be decoded")
    if integer(ds, "SamplesPerPixel", 1) != 1:
        raise InputError(path, f"colour images ({text(ds, 'PhotometricInterpretation')}) are not supported")
    photometric = text(ds, "PhotometricInterpretation").strip().upper()
    if photometric and photometric not in GREY_LEVELS:
        meaning = "indices into a colour table" if photometric.startswith("PALETTE") else "colour components"
        raise InputError(path, f"{photometric} image: its values are {meaning}, not intensities to segment")
    if is_mosaic(ds):
        mosaic_layout(ds, path)  # its slices must be known
    bits = integer(ds, "BitsAllocated")
    if bits not in SUPPORTED_BITS_ALLOCATED:
        raise InputError(path, f"BitsAllocated {bits} is not supported")
    bits_stored = integer(ds, "BitsStored")
    if bits_stored is not None and not 1 <= bits_stored <= bits:
        raise InputError(path, f"BitsStored {bits_stored} does not fit BitsAllocated {bits}")
    if number(ds, "RescaleSlope") == 0:  # number() also refuses NaN and text that is not a number
        raise InputError(path, "RescaleSlope 0 would make every pixel one value")
    number(ds, "RescaleIntercept")
    syntax = transfer_syntax(ds)
    if not syntax.is_transfer_syntax:
        raise InputError(path, f"unknown transfer syntax {syntax or '(none given)'}")
    if not syntax.is_compressed:
        if pixels:
            check_native_length(ds, path)
        return
    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:
        available = False
    if not available:
        raise InputError(path, f"no decoder installed for transfer syntax {syntax.name} ({syntax})")


def check_native_length(ds: pydicom.Dataset, path: Path) -> None:
    """Raise InputError unless uncompressed pixel data holds the bytes that the header promises.

    Checked before any array is allocated, so a header promising huge dimensions costs nothing.
    """
    element = ds.get_item(PIXEL_DATA_TAG, keep_deferred=True)
    if element is None:
        raise InputError(path, "no pixel data")
    rows, columns = integer(ds, "Rows", 0), integer(ds, "Columns", 0)
    frames, bits = integer(ds, "NumberOfFrames", 1) or 1, integer(ds, "BitsAllocated")
    promised = rows * columns * frames * bits // 8
    held = element.length if isinstance(element, RawDataElement) else len(element.value or b"")
    grid = f"{rows} x {columns} x {frames} frame(s) x {bits} bits = {promised} bytes"
    if held < promised:
        raise InputError(path, f"pixel data is truncated: the header promises {grid}, the file holds {held}")
    if held > promised + 1:  # one pad byte makes an odd length even
        raise InputError(
            path, f"pixel data holds {held} bytes but the header promises {grid} (wrong BitsAllocated?)"
        )


def stored_dtype(ds: pydicom.Dataset) -> np.dtype:
    """Native-order integer type of the stored values (from BitsAllocated and PixelRepresentation)."""
    signed = integer(ds, "PixelRepresentation") == 1
    return np.dtype(f"{'i' if signed else 'u'}{integer(ds, 'BitsAllocated') // 8}")


def read_native_into(ds: pydicom.Dataset, path: Path, out: np.ndarray) -> bool:
    """Read a single frame of uncompressed little-endian pixel data from disk straight into `out`.

    Works when pydicom deferred the pixel data (read with ``defer_size``) and `out` (rows, columns) has
    the stored type; returns False otherwise, and the caller uses `stored_frames`.
    """
    element = ds.get_item(PIXEL_DATA_TAG, keep_deferred=True)
    syntax = transfer_syntax(ds)
    if (
        not isinstance(element, RawDataElement)
        or element.value is not None
        or syntax.is_compressed
        or syntax in (ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian)
        or integer(ds, "NumberOfFrames", 1) != 1
        or out.dtype != stored_dtype(ds)
        or not out.flags.c_contiguous
    ):
        return False
    with open(path, "rb") as file:
        file.seek(element.value_tell)
        read = file.readinto(memoryview(out).cast("B"))
    if read != out.nbytes:
        raise InputError(path, f"pixel data is truncated ({read} bytes for {out.shape} x {out.dtype})")
    bits_stored = integer(ds, "BitsStored", out.dtype.itemsize * 8)
    if bits_stored < out.dtype.itemsize * 8:
        out[...] = _keep_stored_bits(out, bits_stored, out.dtype.kind == "i")
    return True


def stored_frames(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    """Stored values of every frame, shape (frames, rows, columns), in the dataset's own integer type;
    the slices of a Siemens mosaic are its frames."""
    frames = _stored_frames(ds, path)
    return untile(frames[0], mosaic_layout(ds, path)) if is_mosaic(ds) else frames


def _stored_frames(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    check_decodable(ds, path)
    if "PixelData" not in ds:
        raise InputError(path, "no pixel data")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    shape = (frames, int(ds.Rows), int(ds.Columns))
    if transfer_syntax(ds).is_compressed:
        try:
            array = ds.pixel_array
        except Exception as error:  # decoders raise many types; report one clear error
            reason = " ".join(str(error).split())  # decoders' messages span lines; errors are one line
            syntax = transfer_syntax(ds).name
            raise InputError(path, f"cannot decode {syntax} pixel data ({reason})") from None
        return array.reshape(shape)
    return _native(ds, path, shape)


def _native(ds: pydicom.Dataset, path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    bits = integer(ds, "BitsAllocated")
    signed = integer(ds, "PixelRepresentation") == 1
    dtype = stored_dtype(ds)
    if transfer_syntax(ds) == ExplicitVRBigEndian:
        dtype = dtype.newbyteorder(">")
    count = int(np.prod(shape))
    buffer = ds.PixelData
    if len(buffer) < count * dtype.itemsize:
        raise InputError(path, f"pixel data is truncated ({len(buffer)} bytes for {shape} x {bits} bits)")
    array = np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)
    return _keep_stored_bits(array, integer(ds, "BitsStored", bits), signed)


def _keep_stored_bits(array: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    """Drop bits above BitsStored (overlays, garbage) and sign-extend signed values."""
    bits = array.dtype.itemsize * 8
    if bits_stored >= bits:
        return array
    array = array.astype(array.dtype.newbyteorder("="))
    if signed:
        shift = bits - bits_stored
        return (array << shift) >> shift
    return array & np.array((1 << bits_stored) - 1, dtype=array.dtype)
