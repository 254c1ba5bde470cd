"""Header values parsed straight from pydicom's raw elements, skipping its per-element conversion.

pydicom converts an element (value validation, DSfloat/IS objects) the first time it is accessed,
which costs tens of microseconds per element; a series reader needs about fifteen per file. These
helpers parse the numeric and ASCII values the reader needs from the raw bytes, and fall back to
pydicom's own value for elements that were already converted.
"""

from __future__ import annotations

import contextlib
import functools
import math
import struct
from collections.abc import Iterator
from pathlib import Path

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement

from medseg.errors import InputError

#: Value representations stored as backslash-separated ASCII text.
TEXT_VRS = {"DS", "IS", "UI", "CS", "SH", "LO", "AE", "AS", "DA", "TM", "DT"}
#: struct codes of binary integer value representations.
BINARY_VRS = {"US": "H", "SS": "h", "UL": "I", "SL": "i"}


@functools.cache
def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"unknown DICOM keyword {keyword!r}")
    return tag


def _element(ds: pydicom.Dataset, keyword: str) -> tuple[str, object] | None:
    """(VR, parsed value) of element `keyword`, or None when absent or empty."""
    tag = _tag(keyword)
    element = ds.get_item(tag, keep_deferred=True)
    if element is None or element.value is None:
        return None
    if isinstance(element, RawDataElement):
        vr = element.VR or dictionary_VR(tag)
        if vr in BINARY_VRS:
            order, size = "<" if element.is_little_endian else ">", struct.calcsize(BINARY_VRS[vr])
            count = len(element.value) // size  # a value cut short (truncated file) keeps whole numbers only
            if count == 0:
                return None
            return vr, list(struct.unpack(f"{order}{count}{BINARY_VRS[vr]}", element.value[: count * size]))
        if vr in TEXT_VRS:
            text = element.value.decode("ascii", errors="replace").strip(" \x00")
            return (vr, text) if text else None
    value = ds[tag].value  # already converted, or a VR we leave to pydicom
    if value is None or value == "":
        return None
    return "", value


def numbers(ds: pydicom.Dataset, keyword: str) -> list[float] | None:
    """All values of a numeric element (DS, IS, US...) as floats, or None when absent or empty.

    Raises ValueError (naming the element) for text that is not a number, NaN or Inf."""
    found = _element(ds, keyword)
    if found is None:
        return None
    value = found[1]
    if isinstance(value, str):
        parts = value.split("\\")
    elif isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        parts = list(value)
    else:
        parts = [value]
    try:
        result = [float(part) for part in parts]
    except (TypeError, ValueError):
        raise ValueError(f"{keyword} {value!r} is not a number") from None
    if not all(math.isfinite(v) for v in result):
        raise ValueError(f"{keyword} {value!r} is not finite")
    return result


def number(ds: pydicom.Dataset, keyword: str, default: float | None = None) -> float | None:
    """The first value of a numeric element, or `default`."""
    values = numbers(ds, keyword)
    return values[0] if values else default


def integer(ds: pydicom.Dataset, keyword: str, default: int | None = None) -> int | None:
    """The first value of an integer element (IS, US...), or `default`."""
    value = number(ds, keyword)
    return default if value is None else int(value)


def text(ds: pydicom.Dataset, keyword: str) -> str:
    """An ASCII element (UI, CS...) as a string, "" when absent."""
    found = _element(ds, keyword)
    return "" if found is None else str(found[1])


@contextlib.contextmanager
def values_of(path: Path | str) -> Iterator[None]:
    """Report a header value that does not parse (`numbers` raises ValueError) as an InputError on `path`."""
    try:
        yield
    except InputError:
        raise
    except ValueError as error:
        raise InputError(path, str(error)) from None
