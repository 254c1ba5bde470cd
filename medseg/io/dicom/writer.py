"""Write a `ScalarImage` as a valid single-frame DICOM series (CT or MR Image Storage).

Used by the synthetic phantom and by tests that need DICOM series with known geometry. Each slice
carries ImagePositionPatient, ImageOrientationPatient, PixelSpacing, SliceThickness and (for CT)
RescaleSlope/Intercept, with one Study and Series Instance UID shared across the files.
"""

from __future__ import annotations

import datetime
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import medseg
from medseg.io.image import LPS_TO_RAS, ScalarImage

#: SOP classes by modality.
SOP_CLASS_UIDS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
}
#: Stored CT values are HU - intercept, so air (-1000 HU) stays positive-ish in int16 and fits easily.
CT_RESCALE_INTERCEPT = -1024.0


@dataclass(frozen=True)
class SeriesIdentity:
    """Who and what the series belongs to. Defaults are synthetic, never real patient data."""

    patient_name: str = "Phantom^Synthetic"
    patient_id: str = "PHANTOM-0000"
    patient_birth_date: str = ""
    patient_sex: str = "O"
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    frame_of_reference_uid: str = ""
    study_description: str = "medseg synthetic study"
    series_description: str = "medseg synthetic series"
    accession_number: str = ""
    series_number: int = 1


def _base_dataset(identity: SeriesIdentity, modality: str, uids: dict[str, str]) -> pydicom.Dataset:
    today = datetime.date.today().strftime("%Y%m%d")
    ds = pydicom.Dataset()
    ds.SOPClassUID = SOP_CLASS_UIDS[modality]
    ds.Modality = modality
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = identity.patient_birth_date
    ds.PatientSex = identity.patient_sex
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.StudyID = "1"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = today
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = identity.accession_number
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = identity.study_description
    ds.SeriesDescription = identity.series_description
    ds.SeriesNumber = identity.series_number
    ds.Manufacturer = "medseg"
    ds.SoftwareVersions = medseg.__version__
    ds.PositionReferenceIndicator = ""
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    return ds


def write_dicom_series(
    image: ScalarImage,
    folder: str | os.PathLike,
    modality: str = "CT",
    identity: SeriesIdentity | None = None,
) -> list[Path]:
    """Write `image` (3D; CT values in HU) into `folder` as one file per slice; return the paths.

    The folder appears complete or not at all: files are written to a temporary folder that is then
    renamed. File names carry the slice index only, never patient data.
    """
    if image.ndim != 3:
        raise ValueError(f"a DICOM series needs a 3D image, got shape {image.shape}")
    if modality not in SOP_CLASS_UIDS:
        raise ValueError(f"modality {modality!r} not supported; use one of {sorted(SOP_CLASS_UIDS)}")
    identity = identity or SeriesIdentity()
    uids = {
        "study": identity.study_instance_uid or generate_uid(),
        "series": identity.series_instance_uid or generate_uid(),
        "frame": identity.frame_of_reference_uid or generate_uid(),
    }
    lps = LPS_TO_RAS @ image.affine
    spacing = image.spacing
    orientation = np.concatenate([lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]])
    intercept = CT_RESCALE_INTERCEPT if modality == "CT" else 0.0
    stored = np.rint(image.array - intercept)
    if stored.min() < -32768 or stored.max() > 32767:
        raise ValueError("values do not fit in 16-bit signed storage")
    stored = stored.astype(np.int16)

    folder = Path(folder)
    staging = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    staging.mkdir(parents=True)
    paths = []
    try:
        for k in range(image.shape[2]):
            ds = _base_dataset(identity, modality, uids)
            ds.SOPInstanceUID = generate_uid()
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = [round(float(v), 6) for v in (lps @ [0, 0, k, 1])[:3]]
            ds.ImageOrientationPatient = [round(float(v), 8) for v in orientation]
            ds.PixelSpacing = [round(float(spacing[1]), 6), round(float(spacing[0]), 6)]
            ds.SliceThickness = round(float(spacing[2]), 6)
            ds.Rows, ds.Columns = image.shape[1], image.shape[0]
            if modality == "CT":
                ds.RescaleIntercept = intercept
                ds.RescaleSlope = 1.0
                ds.RescaleType = "HU"
                ds.KVP = 120
            ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            name = f"slice_{k + 1:04d}.dcm"
            ds.save_as(staging / name, enforce_file_format=True)
            paths.append(folder / name)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return paths
