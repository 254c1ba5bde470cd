"""What medseg asks of a PACS, whatever the protocol: find, list series, retrieve, read headers, store.

`connect(config)` returns a `PacsClient` for DICOMweb (`medseg.pacs.dicomweb`) or DIMSE
(`medseg.pacs.dimse`). Studies and series come back as `Study` and `Series` records; logs and folder
names use `Study.key` (a hash of the Study Instance UID), never patient data.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pydicom

from medseg.errors import MedsegError
from medseg.pacs.config import PacsConfig

T = TypeVar("T")

#: Hex digits of the SHA-256 of a Study Instance UID used as its key.
KEY_LENGTH = 16
#: Loggers of the network libraries: at DEBUG they print queries (patient data) and whole datasets.
NETWORK_LOGGERS = ("urllib3", "requests", "dicomweb_client", "pynetdicom")


class PacsError(MedsegError):
    """The PACS refused or failed a request; the message says which request and why (no credentials)."""


def study_key(study_instance_uid: str) -> str:
    """The name of a study in logs, folders and the state file."""
    return hashlib.sha256(study_instance_uid.encode("ascii")).hexdigest()[:KEY_LENGTH]


logger = logging.getLogger(__name__)
#: A DICOM UID: digits and dots, at most 64 characters.
UID_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)*")


def _uid(ds: pydicom.Dataset, keyword: str) -> str:
    value = _text(ds, keyword).strip()
    if len(value) > 64 or not UID_PATTERN.fullmatch(value):
        raise ValueError(f"{keyword} {value[:70]!r} is not a UID")
    return value


def _count(ds: pydicom.Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    if value in (None, ""):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{keyword} {str(value)[:20]!r} is not a whole number") from None


def parse_records(
    records: object,
    build: Callable[[pydicom.Dataset], T],
    what: str,
    read: Callable[[Any], pydicom.Dataset] = pydicom.Dataset.from_json,
) -> list[T]:
    """`build` applied to each record of a PACS answer (DICOM JSON objects, made datasets by `read`, or
    datasets). An answer that is not a list is a `PacsError`; a malformed record is logged (without
    patient data) and skipped, so one bad record never stops a search, a retrieval or a watcher."""
    if not isinstance(records, list):
        raise PacsError(f"{what}: the PACS answered with a {type(records).__name__}, not a list of records")
    built = []
    for number, record in enumerate(records, start=1):
        try:
            dataset = record if isinstance(record, pydicom.Dataset) else read(record)
            built.append(build(dataset))
        except Exception as error:  # malformed JSON, values or VRs, from a PACS we do not control
            reason = " ".join(str(error).split())[:200]
            logger.warning(
                "%s: record %d is malformed and skipped (%s: %s)", what, number, type(error).__name__, reason
            )
    return built


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return "" if value is None else str(value)


@dataclass(frozen=True)
class StudyQuery:
    """Which studies to find. Empty fields match anything; `study_date` is YYYYMMDD or a range A-B."""

    study_date: str = ""
    modality: str = ""
    accession_number: str = ""
    study_instance_uid: str = ""


@dataclass(frozen=True)
class Study:
    """One study found on the PACS."""

    study_instance_uid: str
    study_date: str
    modalities: tuple[str, ...]
    number_of_instances: int | None  # None when the PACS does not say

    @property
    def key(self) -> str:
        return study_key(self.study_instance_uid)

    @classmethod
    def from_dataset(cls, ds: pydicom.Dataset) -> Study:
        modalities = _text(ds, "ModalitiesInStudy")
        return cls(
            study_instance_uid=_uid(ds, "StudyInstanceUID"),
            study_date=_text(ds, "StudyDate"),
            modalities=tuple(m for m in modalities.split("\\") if m),
            number_of_instances=_count(ds, "NumberOfStudyRelatedInstances"),
        )


@dataclass(frozen=True)
class Series:
    """One series of a study on the PACS."""

    series_instance_uid: str
    modality: str
    number_of_instances: int | None
    description: str = ""

    @classmethod
    def from_dataset(cls, ds: pydicom.Dataset) -> Series:
        return cls(
            series_instance_uid=_uid(ds, "SeriesInstanceUID"),
            modality=_text(ds, "Modality"),
            number_of_instances=_count(ds, "NumberOfSeriesRelatedInstances"),
            description=_text(ds, "SeriesDescription"),
        )


def quiet_network_loggers() -> None:
    """Keep the network libraries' debug output (queries, headers, datasets) out of medseg's logs."""
    for name in NETWORK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def save_instance(ds: pydicom.Dataset, path: Path) -> Path:
    """Write a received instance as a DICOM file (file meta completed from the dataset if missing)."""
    meta = getattr(ds, "file_meta", None) or pydicom.dataset.FileMetaDataset()
    if "MediaStorageSOPClassUID" not in meta:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    return path


class PacsClient(abc.ABC):
    """The requests medseg makes to a PACS."""

    def __init__(self, config: PacsConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def find_studies(self, query: StudyQuery) -> list[Study]:
        """Studies matching `query`."""

    @abc.abstractmethod
    def find_series(self, study_instance_uid: str, modality: str = "") -> list[Series]:
        """Series of a study (of one modality when given)."""

    @abc.abstractmethod
    def retrieve_series(self, study_instance_uid: str, series_instance_uid: str, folder: Path) -> list[Path]:
        """Download a series into `folder` (files named by index) and return the file paths."""

    @abc.abstractmethod
    def series_headers(self, study_instance_uid: str, series_instance_uid: str) -> list[pydicom.Dataset]:
        """Headers (no pixel data needed) of every instance of a series."""

    @abc.abstractmethod
    def store(self, paths: Sequence[str | os.PathLike]) -> None:
        """Send DICOM files to the PACS; raise `PacsError` unless every one was accepted."""


def connect(config: PacsConfig) -> PacsClient:
    """A client for `config.protocol`."""
    quiet_network_loggers()
    if config.protocol == "dimse":
        from medseg.pacs.dimse import DimseClient

        return DimseClient(config)
    from medseg.pacs.dicomweb import DicomWebClient

    return DicomWebClient(config)
