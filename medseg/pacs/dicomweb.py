"""DICOMweb client: QIDO-RS to find, WADO-RS to retrieve, STOW-RS to store (with dicomweb-client).

HTTP basic authentication from the configuration; TLS follows the URL scheme and verifies the server
against `ca_bundle` (or the system's CAs), with an optional client certificate. HTTP failures become
`PacsError` naming the request and the status code, never the URL's query (it may hold an accession
number) nor the credentials.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pydicom
import requests
import urllib3
from dicomweb_client.api import DICOMwebClient
from pydicom.errors import InvalidDicomError

from medseg.pacs.client import PacsClient, PacsError, Series, Study, StudyQuery, parse_records, save_instance
from medseg.pacs.config import PacsConfig

#: Ask for instances in the transfer syntax they are stored in (no transcoding on the server).
ANY_TRANSFER_SYNTAX = (("application/dicom", "*"),)
#: Study attributes asked for on top of QIDO-RS's defaults.
STUDY_FIELDS = ("ModalitiesInStudy", "NumberOfStudyRelatedInstances")
SERIES_FIELDS = ("NumberOfSeriesRelatedInstances", "SeriesDescription")

T = TypeVar("T")
#: Bytes read at a time while a whole answer is held to its deadline.
DEADLINE_CHUNK_BYTES = 64 * 1024


class PacsSession(requests.Session):
    """The DICOMweb session: its configured CA bundle is the one trusted, and every answer must arrive
    within `deadline_s` in all.

    requests lets REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE (common on hospital hosts) replace a session's
    ``verify`` on every request, so a PACS behind a private CA failed, and a CA the user did not choose
    was trusted. And its timeout bounds each read, not the answer: a server sending a byte a second kept
    a 3 s timeout busy for 39 s; here the body is read in chunks against the deadline.
    """

    def __init__(self, deadline_s: float) -> None:
        super().__init__()
        self.deadline_s = deadline_s

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        start = time.monotonic()
        response = super().send(request, **{**kwargs, "stream": True})
        if kwargs.get("stream"):
            return response
        chunks = []
        raw = response.raw
        arriving = (  # whatever has arrived, decoded: chunk by chunk, or up to the buffer's size
            raw.read_chunked(decode_content=True)
            if raw.chunked
            else iter(lambda: raw.read1(DEADLINE_CHUNK_BYTES, decode_content=True), b"")
        )
        try:
            for chunk in arriving:
                chunks.append(chunk)
                if time.monotonic() - start > self.deadline_s:
                    raise requests.Timeout(f"no complete answer within {self.deadline_s:g} s")
        except urllib3.exceptions.HTTPError as error:  # as requests itself would report it
            raise requests.ConnectionError(error) from None
        finally:
            response.close()
        response._content = b"".join(chunks)  # what a non-streamed response holds
        return response

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if isinstance(self.verify, str) and verify in (None, True):
            settings["verify"] = self.verify
        return settings


def _session(config: PacsConfig) -> requests.Session:
    session = PacsSession(config.timeout_s)
    if config.username:
        session.auth = (config.username, config.password)
    if config.ca_bundle:
        session.verify = config.ca_bundle
    if config.client_cert:
        session.cert = (config.client_cert, config.client_key) if config.client_key else config.client_cert
    return session


def _no_bulk_data(tag: str, vr: str, uri: str) -> bytes:
    """Headers only: bulk data (pixels) referenced by URI in WADO-RS metadata is not fetched."""
    return b""


class DicomWebClient(PacsClient):
    """A PACS reached over DICOMweb."""

    def __init__(self, config: PacsConfig) -> None:
        super().__init__(config)
        self._client = DICOMwebClient(
            config.url.rstrip("/"), session=_session(config), timeout=config.timeout_s
        )
        # Its retries back off for up to a minute on any error; the watcher retries at the next poll instead.
        self._client.set_http_retry_params(retry=False)

    def _call(self, what: str, request: Callable[[], T]) -> T:
        try:
            return request()
        except requests.exceptions.JSONDecodeError:
            raise PacsError(
                f"{what}: {self.config.describe()} answered with something that is not JSON"
            ) from None
        except requests.HTTPError as error:
            status = error.response.status_code if error.response is not None else "?"
            hint = " (check username and password)" if status in (401, 403) else ""
            raise PacsError(f"{what}: HTTP {status} from {self.config.describe()}{hint}") from None
        except requests.Timeout as error:
            if not isinstance(error, requests.ConnectTimeout):  # connected, but the answer did not come
                raise PacsError(
                    f"{what}: no complete answer from {self.config.describe()} within "
                    f"{self.config.timeout_s:g} s (a stalled or very slow server; timeout_s sets the limit)"
                ) from None
            raise PacsError(f"{what}: cannot reach {self.config.describe()} (ConnectTimeout)") from None
        except requests.RequestException as error:
            raise PacsError(
                f"{what}: cannot reach {self.config.describe()} ({type(error).__name__})"
            ) from None
        except (ValueError, TypeError, AttributeError, KeyError, InvalidDicomError) as error:
            # a body that is not what the standard says (media type, multipart parts, DICOM files)
            reason = " ".join(str(error).split())[:200]
            raise PacsError(
                f"{what}: malformed answer from {self.config.describe()} ({type(error).__name__}: {reason})"
            ) from None

    def find_studies(self, query: StudyQuery) -> list[Study]:
        filters = {
            "StudyDate": query.study_date,
            "ModalitiesInStudy": query.modality,
            "AccessionNumber": query.accession_number,
            "StudyInstanceUID": query.study_instance_uid,
        }
        found = self._call(
            "QIDO-RS study search",
            lambda: self._client.search_for_studies(
                fields=STUDY_FIELDS,
                search_filters={key: value for key, value in filters.items() if value},
            ),
        )
        return parse_records(found, Study.from_dataset, "QIDO-RS study search")

    def find_series(self, study_instance_uid: str, modality: str = "") -> list[Series]:
        found = self._call(
            "QIDO-RS series search",
            lambda: self._client.search_for_series(
                study_instance_uid,
                fields=SERIES_FIELDS,
                search_filters={"Modality": modality} if modality else None,
            ),
        )
        return parse_records(found, Series.from_dataset, "QIDO-RS series search")

    def retrieve_series(self, study_instance_uid: str, series_instance_uid: str, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)

        def download() -> list[Path]:
            instances = self._client.iter_series(
                study_instance_uid, series_instance_uid, media_types=ANY_TRANSFER_SYNTAX
            )
            return [save_instance(ds, folder / f"{n:05d}.dcm") for n, ds in enumerate(instances, start=1)]

        return self._call("WADO-RS series retrieval", download)

    def series_headers(self, study_instance_uid: str, series_instance_uid: str) -> list[pydicom.Dataset]:
        metadata = self._call(
            "WADO-RS series metadata",
            lambda: self._client.retrieve_series_metadata(study_instance_uid, series_instance_uid),
        )
        return parse_records(
            metadata,
            lambda ds: ds,
            "WADO-RS series metadata",
            read=lambda item: pydicom.Dataset.from_json(item, bulk_data_uri_handler=_no_bulk_data),
        )

    def store(self, paths: Sequence[str | os.PathLike]) -> None:
        datasets = [pydicom.dcmread(path) for path in paths]
        response = self._call("STOW-RS store", lambda: self._client.store_instances(datasets))
        failed = response.get("FailedSOPSequence") or []
        if failed:
            reasons = sorted({str(item.get("FailureReason", "?")) for item in failed})
            raise PacsError(f"STOW-RS store: {len(failed)} of {len(datasets)} refused (reasons {reasons})")
