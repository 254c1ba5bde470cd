"""DIMSE client (pynetdicom): C-FIND to find, C-GET to retrieve, C-STORE to store.

medseg is the calling AE (`calling_aet`) and the PACS the called AE (`called_aet`); the PACS must know
medseg's AE title and allow it to query and retrieve. C-GET returns the instances on the same
association (no inbound port to open, unlike C-MOVE). With ``tls: true`` the association runs over TLS
with the configured CA bundle and client certificate.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pydicom
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, build_role, evt
from pynetdicom import sop_class as sop
from pynetdicom.association import Association

from medseg.pacs.client import PacsClient, PacsError, Series, Study, StudyQuery, parse_records, save_instance

FIND_MODEL = sop.StudyRootQueryRetrieveInformationModelFind
GET_MODEL = sop.StudyRootQueryRetrieveInformationModelGet
#: Instances medseg accepts in a C-GET when the PACS does not say which SOP classes a study holds:
#: volumes and images it can segment, and SEGs (to find its own results).
DEFAULT_SOP_CLASSES = (
    sop.CTImageStorage,
    sop.EnhancedCTImageStorage,
    sop.MRImageStorage,
    sop.EnhancedMRImageStorage,
    sop.PositronEmissionTomographyImageStorage,
    sop.DigitalXRayImageStorageForPresentation,
    sop.ComputedRadiographyImageStorage,
    sop.DigitalMammographyXRayImageStorageForPresentation,
    sop.SecondaryCaptureImageStorage,
    sop.SegmentationStorage,
)
#: DIMSE status codes: success, and the two "pending" codes of C-FIND responses.
SUCCESS = 0x0000
PENDING = (0xFF00, 0xFF01)
#: C-GET finished, but some sub-operations (instances) failed.
SOME_FAILED = 0xB000
#: C-STORE sub-operation statuses that still mean "stored" (coercion of data elements and the like).
STORE_WARNINGS = (0xB000, 0xB007, 0xB006)

logger = logging.getLogger(__name__)


class DimseClient(PacsClient):
    """A PACS reached over DICOM networking."""

    @contextlib.contextmanager
    def _association(
        self,
        contexts: Sequence[tuple[str, Sequence[str] | None]],
        receive: Path | None = None,
        receive_classes: Sequence[str] = (),
    ) -> Iterator[Association]:
        """An association offering `contexts`; with `receive`, instances of `receive_classes` sent back
        on it (C-GET) are saved there."""
        config = self.config
        ae = AE(ae_title=config.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = config.timeout_s
        for abstract, syntaxes in contexts:
            ae.add_requested_context(abstract, syntaxes)
        roles, handlers = [], []
        if receive is not None:
            for uid in receive_classes:
                ae.add_requested_context(uid, ALL_TRANSFER_SYNTAXES)
                roles.append(build_role(uid, scp_role=True))
            handlers.append((evt.EVT_C_STORE, _save_to, [receive, [0]]))
        association = ae.associate(
            config.host,
            config.port,
            ae_title=config.called_aet,
            ext_neg=roles or None,
            evt_handlers=handlers or None,
            tls_args=(config.ssl_context(), config.host) if config.tls else None,
        )
        if association.is_rejected:
            raise PacsError(f"association rejected by {config.describe()} (check the AE titles)")
        if not association.is_established:
            raise PacsError(
                f"association with {config.describe()} failed (unreachable, TLS refused, AE titles "
                "not accepted, or no proposed presentation context accepted)"
            )
        refused = {uid for uid, _ in contexts} - {cx.abstract_syntax for cx in association.accepted_contexts}
        if refused:
            association.release()
            names = ", ".join(sorted(pydicom.uid.UID(uid).name for uid in refused))
            raise PacsError(f"{config.describe()} does not accept {names}")
        try:
            yield association
        finally:
            association.release()

    def _find(self, identifier: pydicom.Dataset, what: str) -> list[pydicom.Dataset]:
        found = []
        with self._association([(FIND_MODEL, None)]) as association:
            for status, answer in association.send_c_find(identifier, FIND_MODEL):
                code = _status(status, what, self.config.describe())
                if code in PENDING and answer is not None:
                    found.append(answer)
                elif code != SUCCESS:
                    raise PacsError(f"{what}: status 0x{code:04X} from {self.config.describe()}")
        return found

    def find_studies(self, query: StudyQuery) -> list[Study]:
        identifier = pydicom.Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = query.study_instance_uid
        identifier.StudyDate = query.study_date
        identifier.ModalitiesInStudy = query.modality
        identifier.AccessionNumber = query.accession_number
        identifier.NumberOfStudyRelatedInstances = ""
        return parse_records(self._find(identifier, "C-FIND studies"), Study.from_dataset, "C-FIND studies")

    def find_series(self, study_instance_uid: str, modality: str = "") -> list[Series]:
        identifier = pydicom.Dataset()
        identifier.QueryRetrieveLevel = "SERIES"
        identifier.StudyInstanceUID = study_instance_uid
        identifier.SeriesInstanceUID = ""
        identifier.Modality = modality
        identifier.SeriesDescription = ""
        identifier.NumberOfSeriesRelatedInstances = ""
        return parse_records(self._find(identifier, "C-FIND series"), Series.from_dataset, "C-FIND series")

    def _sop_classes(self, study_instance_uid: str) -> list[str]:
        """SOP classes in a study (SOPClassesInStudy; optional for a PACS: empty when not answered)."""
        identifier = pydicom.Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = study_instance_uid
        identifier.SOPClassesInStudy = ""
        classes = set()
        for answer in self._find(identifier, "C-FIND SOP classes"):
            value = answer.get("SOPClassesInStudy") or []
            classes.update([value] if isinstance(value, str) else value)  # one value is not a list
        return sorted(map(str, classes))

    def retrieve_series(self, study_instance_uid: str, series_instance_uid: str, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        identifier = pydicom.Dataset()
        identifier.QueryRetrieveLevel = "SERIES"
        identifier.StudyInstanceUID = study_instance_uid
        identifier.SeriesInstanceUID = series_instance_uid
        classes = self._sop_classes(study_instance_uid) or DEFAULT_SOP_CLASSES
        with self._association([(GET_MODEL, None)], folder, classes) as association:
            for status, _ in association.send_c_get(identifier, GET_MODEL):
                code = _status(status, "C-GET series", self.config.describe())
                if code == SOME_FAILED:  # e.g. instances of a SOP class medseg does not take
                    failed = int(status.get("NumberOfFailedSuboperations", 0))
                    logger.warning("C-GET series: %d instance(s) of unsupported types not received", failed)
                elif code not in (SUCCESS, *PENDING):
                    raise PacsError(f"C-GET series: status 0x{code:04X} from {self.config.describe()}")
        return sorted(folder.glob("*.dcm"))

    def series_headers(self, study_instance_uid: str, series_instance_uid: str) -> list[pydicom.Dataset]:
        with tempfile.TemporaryDirectory(prefix="medseg-pacs-") as temporary:
            paths = self.retrieve_series(study_instance_uid, series_instance_uid, Path(temporary))
            return [pydicom.dcmread(path, stop_before_pixels=True) for path in paths]

    def store(self, paths: Sequence[str | os.PathLike]) -> None:
        datasets = [pydicom.dcmread(path) for path in paths]
        contexts = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets})
        with self._association([(uid, [syntax]) for uid, syntax in contexts]) as association:
            for ds in datasets:
                try:
                    status = association.send_c_store(ds)
                except ValueError:  # no accepted context for this SOP class and transfer syntax
                    what = f"{ds.SOPClassUID.name} in {ds.file_meta.TransferSyntaxUID.name}"
                    raise PacsError(f"{self.config.describe()} does not accept {what}") from None
                code = _status(status, "C-STORE", self.config.describe())
                if code != SUCCESS and code not in STORE_WARNINGS:
                    raise PacsError(f"C-STORE: status 0x{code:04X} from {self.config.describe()}")


def _status(status: pydicom.Dataset, what: str, where: str) -> int:
    """The status code of a response; an empty status means the association was lost or timed out."""
    if "Status" not in status:
        raise PacsError(f"{what}: no answer from {where} (connection lost or timed out)")
    return int(status.Status)


def _save_to(event: evt.Event, folder: Path, counter: list[int]) -> int:
    """C-STORE handler during a C-GET: save the instance as ``folder/<index>.dcm``."""
    counter[0] += 1
    ds = event.dataset
    ds.file_meta = event.file_meta
    save_instance(ds, folder / f"{counter[0]:05d}.dcm")
    return SUCCESS
