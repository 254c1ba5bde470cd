"""Fuzzing DICOM series assembly and NIfTI loading with hypothesis.

Property: whatever the input, a reader returns a valid image or raises a `MedsegError` (InputError,
GeometryError) with a one-line message; never another exception, a hang or a crash. Where the input is
valid by construction (a permuted regular stack), the result must also be right.

The CI run is small (``HYPOTHESIS_PROFILE=ci``, the default); the long run is documented in
docs/reliability.md: ``HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/reliability/test_fuzz.py``.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_factory import ct_image, write_series
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medseg.errors import MedsegError
from medseg.io.dicom import read_series
from medseg.io.dicom.frames import Frame
from medseg.io.dicom.geometry import assemble
from medseg.io.image import LabelMap, ScalarImage
from medseg.io.volume import read_volume

#: Settings of both profiles: no time limit per example, no example database written into the repository.
COMMON = {"deadline": None, "database": None, "suppress_health_check": [HealthCheck.too_slow]}
#: CI: 60 examples per test, the same ones every run (a failure is reproducible, never flaky).
settings.register_profile("ci", max_examples=60, derandomize=True, **COMMON)
#: The long run: 3000 fresh random examples per test.
settings.register_profile("long", max_examples=3000, **COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
#: Text a DICOM number element may hold in a broken file.
NUMBER_TEXT = st.one_of(
    st.sampled_from(["", "nan", "inf", "-inf", "1e308", "-0", "abc", "1\\2", "0", "-1", " 2.5 ", "1e-300"]),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda v: f"{v:.6g}"),
)
#: Header elements a fuzzed slice may change: keyword -> values.
HEADER_VALUES = {
    "ImagePositionPatient": st.lists(NUMBER_TEXT, min_size=0, max_size=4).map("\\".join),
    "ImageOrientationPatient": st.lists(NUMBER_TEXT, min_size=0, max_size=7).map("\\".join),
    "PixelSpacing": st.lists(NUMBER_TEXT, min_size=0, max_size=3).map("\\".join),
    "SliceThickness": NUMBER_TEXT,
    "RescaleSlope": NUMBER_TEXT,
    "RescaleIntercept": NUMBER_TEXT,
    "NumberOfFrames": st.sampled_from(["", "0", "1", "2", "-3", "x", "99999"]),
    "Rows": st.integers(0, 65535),
    "Columns": st.integers(0, 65535),
    "BitsAllocated": st.sampled_from([0, 1, 8, 12, 16, 32, 64]),
    "BitsStored": st.integers(0, 64),
    "PixelRepresentation": st.integers(0, 3),
    "SamplesPerPixel": st.integers(0, 4),
    "SeriesInstanceUID": st.sampled_from(["", "1.2.3", "1.2.3.4"]),
}
#: Transfer syntaxes a fuzzed file may claim (native, compressed, deflated, unknown).
SYNTAXES = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.5",
    "1.2.3.4",
]
EDIT = st.one_of(
    st.sampled_from(sorted(HEADER_VALUES)).flatmap(
        lambda k: st.tuples(st.just("set"), st.just(k), HEADER_VALUES[k])
    ),
    st.tuples(st.just("delete"), st.sampled_from([*HEADER_VALUES, "PixelData"]), st.none()),
    st.tuples(st.just("syntax"), st.just(""), st.sampled_from(SYNTAXES)),
    st.tuples(st.just("truncate"), st.just(""), st.integers(0, 1200)),
    st.tuples(st.just("drop"), st.just(""), st.none()),
)
#: A fuzzed series: up to 6 edits on each of its 4 slices.
SERIES_EDITS = st.lists(st.lists(EDIT, max_size=6), min_size=4, max_size=4)


def _check_result(image: object) -> None:
    assert isinstance(image, ScalarImage)
    assert image.array.size > 0 and np.all(np.isfinite(image.affine))
    assert np.all(image.spacing > 0)


def _set(ds: pydicom.Dataset, keyword: str, value: object) -> None:
    """Set an element to `value`, as text when pydicom refuses the value for its VR."""
    vr = pydicom.datadict.dictionary_VR(keyword)
    try:
        ds[keyword] = pydicom.DataElement(keyword, vr, value)
    except (ValueError, TypeError, OverflowError):
        ds[keyword] = pydicom.DataElement(keyword, "LO", str(value))


def _apply(path: Path, edits: list[tuple[str, str, object]]) -> None:
    ds = pydicom.dcmread(path)
    keep: int | None = None
    for action, keyword, value in edits:
        if action == "set":
            _set(ds, keyword, value)
        elif action == "delete" and keyword in ds:
            delattr(ds, keyword)
        elif action == "syntax":
            ds.file_meta.TransferSyntaxUID = value
        elif action == "truncate":
            keep = value
        elif action == "drop":
            path.unlink()
            return
    try:
        ds.save_as(path, implicit_vr=False, little_endian=True)
    except (ValueError, TypeError, OverflowError, KeyError, AttributeError, NotImplementedError):
        path.unlink()  # pydicom cannot write this combination: leave the slice out
        return
    if keep is not None:
        path.write_bytes(path.read_bytes()[:keep])


@pytest.fixture(scope="module")
def good_series(tmp_path_factory) -> list[Path]:
    """The files of a valid 4-slice series."""
    return write_series(ct_image((12, 10, 4), seed=5), tmp_path_factory.mktemp("series"))


@given(edits=SERIES_EDITS)
def test_fuzzed_dicom_series_read_or_refuse_clearly(good_series: list[Path], edits):
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for number, (source, changes) in enumerate(zip(good_series, edits, strict=True)):
            path = folder / f"slice_{number}.dcm"
            path.write_bytes(source.read_bytes())
            _apply(path, changes)
        try:
            image = read_series(folder)
        except MedsegError as error:
            assert "\n" not in str(error) and str(error).strip()
            return
        _check_result(image)


def _frame(position: np.ndarray, orientation: np.ndarray, number: int) -> Frame:
    return Frame(
        path=Path(f"slice_{number}.dcm"),
        index=0,
        multi_frame=False,
        position=position,
        orientation=orientation,
        pixel_spacing=(0.7, 0.8),
        rows=10,
        columns=12,
        slope=1.0,
        intercept=0.0,
        sop_instance_uid=f"1.2.{number}",
        temporal_position=None,
        acquisition_number=None,
        slice_thickness=2.0,
    )


POSITION = st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=3, max_size=3).map(np.array)
AXES = st.sampled_from(
    [[1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 0, -1], [0, 1, 0, 0, 0, -1], [0.6, 0.8, 0, -0.8, 0.6, 0]]
)


@given(
    origin=POSITION,
    orientation=AXES.map(lambda v: np.array(v, dtype=float)),
    step=st.floats(0.05, 20),
    count=st.integers(2, 30),
    order=st.randoms(use_true_random=False),
)
def test_assembly_puts_a_shuffled_regular_stack_in_order(origin, orientation, step, count, order):
    normal = np.cross(orientation[:3], orientation[3:])
    frames = [_frame(origin + k * step * normal, orientation, k) for k in range(count)]
    shuffled = list(frames)
    order.shuffle(shuffled)
    stack = assemble(shuffled)
    assert [f.sop_instance_uid for f in stack.frames] == [f.sop_instance_uid for f in frames]
    np.testing.assert_allclose(np.linalg.norm(stack.affine_lps[:3, 2]), step, rtol=1e-6)
    assert not stack.repairs


@given(
    positions=st.lists(
        st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=3, max_size=3),
        min_size=1,
        max_size=12,
    ),
    orientation=AXES.map(lambda v: np.array(v, dtype=float)),
)
def test_assembly_of_arbitrary_positions_gives_a_grid_or_a_geometry_error(positions, orientation):
    frames = [_frame(np.array(p, dtype=float), orientation, k) for k, p in enumerate(positions)]
    try:
        stack = assemble(frames)
    except MedsegError as error:
        assert "\n" not in str(error)
        return
    assert np.all(np.isfinite(stack.affine_lps)) and abs(np.linalg.det(stack.affine_lps[:3, :3])) > 0
    assert np.all(np.diff(stack.positions) > 0)


@pytest.fixture(scope="module")
def good_nifti(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nifti") / "good.nii"
    image = nib.Nifti1Image(
        np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4), np.diag([0.8, 0.7, 2.5, 1])
    )
    nib.save(image, path)
    return path


@given(
    patches=st.lists(st.tuples(st.integers(0, 400), st.binary(min_size=1, max_size=8)), max_size=6),
    length=st.one_of(st.none(), st.integers(0, 600)),
    compressed=st.booleans(),
    kind=st.sampled_from([ScalarImage, LabelMap]),
)
def test_fuzzed_nifti_reads_or_refuses_clearly(good_nifti: Path, patches, length, compressed, kind):
    data = bytearray(good_nifti.read_bytes())
    for offset, chunk in patches:  # overwrite header (and first voxel) bytes
        data[offset : offset + len(chunk)] = chunk
    data = bytes(data[:length] if length is not None else data)
    with tempfile.TemporaryDirectory() as name:
        path = Path(name) / ("fuzzed.nii.gz" if compressed else "fuzzed.nii")
        path.write_bytes(gzip.compress(data) if compressed else data)
        try:
            image = read_volume(path, kind)
        except MedsegError as error:
            assert "\n" not in str(error) and str(path) in str(error)
            return
    assert image.array.ndim in (2, 3) and image.array.size > 0
    assert np.all(np.isfinite(image.affine)) and np.all(image.spacing > 0)
