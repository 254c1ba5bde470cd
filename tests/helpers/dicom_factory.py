"""Build small DICOM series on disk for tests: written by medseg's writer, then edited with pydicom."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from medseg.io.dicom.writer import write_dicom_series
from medseg.io.image import ScalarImage

#: A small oblique-free CT grid: 24 x 20 pixels, 6 slices, 0.8 x 0.7 mm in-plane, 2.5 mm slices.
SHAPE = (24, 20, 6)


def ct_image(
    shape: tuple[int, int, int] = SHAPE, affine: np.ndarray | None = None, seed: int = 0
) -> ScalarImage:
    """A random CT-like image (whole HU values) on a grid with distinct spacings and an offset origin."""
    rng = np.random.default_rng(seed)
    array = rng.integers(-1000, 1500, size=shape).astype(np.float32)
    if affine is None:
        affine = np.diag([-0.8, -0.7, 2.5, 1.0])
        affine[:3, 3] = [40.0, 25.0, -60.0]
    return ScalarImage(array, affine)


def write_series(image: ScalarImage, folder: Path, modality: str = "CT") -> list[Path]:
    return write_dicom_series(image, folder, modality=modality)


def edit(paths: list[Path], change: Callable[[int, pydicom.Dataset], None]) -> None:
    """Apply `change(slice_index, dataset)` to each written slice file and save it in place."""
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        change(k, ds)
        ds.save_as(path)


def shuffle_names(paths: list[Path], seed: int = 1) -> list[Path]:
    """Rename the files to a random permutation of opaque names; returns the new paths in slice order."""
    order = np.random.default_rng(seed).permutation(len(paths))
    renamed = [p.with_name(f"tmp_{i}") for i, p in enumerate(paths)]
    for path, temporary in zip(paths, renamed, strict=True):
        path.rename(temporary)
    final = [p.with_name(f"IM{order[i]:05d}") for i, p in enumerate(paths)]
    for temporary, target in zip(renamed, final, strict=True):
        temporary.rename(target)
    return final


def ramp_image(shape: tuple[int, int, int], affine: np.ndarray) -> ScalarImage:
    """Values linear in RAS+ world position (whole HU at every voxel centre of `affine`'s grid is not
    needed): lets a resampled image be checked against the same formula at its own voxel centres."""
    index = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), axis=-1).reshape(-1, 3)
    world = np.c_[index, np.ones(len(index))] @ affine.T
    return ScalarImage(ramp(world[:, :3]).reshape(shape).astype(np.float32), affine)


def ramp(world: np.ndarray) -> np.ndarray:
    """The linear function of RAS+ position used by `ramp_image`."""
    return 2.0 * world[:, 0] - 3.0 * world[:, 1] + 5.0 * world[:, 2]


def write_non_image(path: Path, sop_class: str, modality: str, study_uid: str) -> Path:
    """A minimal valid non-image object (SR, PDF, KO...) without pixel data."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = modality
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def write_radiograph(
    path: Path,
    stored: np.ndarray,
    photometric: str = "MONOCHROME2",
    pixel_spacing: list[float] | None = None,
    imager_spacing: list[float] | None = None,
    window: tuple[float, float] | None = None,
) -> Path:
    """A DX For Presentation image of unsigned 12-bit `stored` values, shape (rows, columns)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if pixel_spacing:
        ds.PixelSpacing = pixel_spacing
    if imager_spacing:
        ds.ImagerPixelSpacing = imager_spacing
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = stored.astype(np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def binary_seg(sources: list[pydicom.Dataset], masks: dict[str, np.ndarray]) -> hd.seg.Segmentation:
    """A binary SEG of `masks` ((i, j, k) arrays on the sources' grid, sources in slice order), one
    segment each, numbered from 1 in the dict's order; segments may overlap."""
    descriptions = [
        hd.seg.SegmentDescription(
            number, name, codes.SCT.Tissue, codes.SCT.Tissue, hd.seg.SegmentAlgorithmTypeValues.MANUAL
        )
        for number, name in enumerate(masks, start=1)
    ]
    # highdicom wants (frames, rows, columns, segments) in the sources' order; medseg's arrays are (i, j, k)
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=np.stack(list(masks.values()), axis=-1).transpose(2, 1, 0, 3).astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=1,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
    )
