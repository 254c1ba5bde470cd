"""A real Orthanc (Debian packages `orthanc` and `orthanc-dicomweb`) on 127.0.0.1 for the PACS tests.

Each test module gets its own server: free ports, a temporary storage folder, a generated configuration
with HTTP basic authentication, the DICOMweb plugin, and medseg's AE title as a known modality (for
C-FIND and C-GET). Without Orthanc the tests are skipped, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pydicom
import pytest
import requests
from infer_models import save_threshold_checkpoint

from medseg.data.phantom import PhantomCase, PhantomConfig, generate_case
from medseg.io.dicom.writer import SeriesIdentity, write_dicom_series

ORTHANC_EXECUTABLES = ("Orthanc", "/usr/sbin/Orthanc")
DICOMWEB_PLUGINS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
)
USERNAME, PASSWORD = "medseg-test", "Tr0ub4dor&3-not-in-logs"
ORTHANC_AET, MEDSEG_AET = "ORTHANC", "MEDSEG"
STARTUP_TIMEOUT_S = 30.0
#: Small phantom grid; the checkpoint's plan uses the same spacing, so nothing is resampled.
PHANTOM = PhantomConfig(shape=(64, 64, 20), spacing=(5.0, 5.0, 8.0))


@dataclass(frozen=True)
class Orthanc:
    http_port: int
    dicom_port: int
    storage: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def rest(self, method: str, path: str, **kwargs) -> requests.Response:
        """Orthanc's own REST API, to check what medseg stored without medseg's client."""
        response = requests.request(method, self.url + path, auth=(USERNAME, PASSWORD), timeout=30, **kwargs)
        response.raise_for_status()
        return response

    def upload(self, paths: list[Path]) -> None:
        for path in paths:
            self.rest("POST", "/instances", data=path.read_bytes())

    def instances(self, study_instance_uid: str, modality: str = "SEG") -> list[pydicom.Dataset]:
        """Every instance of a modality (default SEG) in a study, downloaded through Orthanc's REST API."""
        query = {"Level": "Instance", "Query": {"StudyInstanceUID": study_instance_uid, "Modality": modality}}
        found = self.rest("POST", "/tools/find", json=query).json()
        return [pydicom.dcmread(io.BytesIO(self.rest("GET", f"/instances/{i}/file").content)) for i in found]

    def settings(self, protocol: str) -> dict[str, object]:
        """medseg PACS settings for this server (the password comes from the environment)."""
        if protocol == "dicomweb":
            return {"protocol": "dicomweb", "url": f"{self.url}/dicom-web", "username": USERNAME}
        return {
            "protocol": "dimse",
            "host": "127.0.0.1",
            "port": self.dicom_port,
            "called_aet": ORTHANC_AET,
            "calling_aet": MEDSEG_AET,
        }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _installed() -> tuple[str, str]:
    executable = next((found for name in ORTHANC_EXECUTABLES if (found := shutil.which(name))), None)
    plugin = next((path for path in DICOMWEB_PLUGINS if Path(path).is_file()), None)
    if executable and plugin:
        return executable, plugin
    missing("Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)")


def missing(message: str) -> NoReturn:
    """A tool the tests need is not installed: skip, but fail under CI (``CI`` set)."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _configuration(storage: Path, http_port: int, dicom_port: int, plugin: str) -> dict[str, object]:
    return {
        "Name": "medseg-test",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": ORTHANC_AET,
        "DicomCheckCalledAet": True,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USERNAME: PASSWORD},
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "DicomModalities": {"medseg": {"AET": MEDSEG_AET, "Host": "127.0.0.1", "Port": free_port()}},
        "SaveJobs": False,
        "UnknownSopClassAccepted": False,  # the default, relied on to test a refused presentation context
    }


def _ready(server: Orthanc) -> bool:
    try:
        return "dicom-web" in server.rest("GET", "/plugins").json()
    except requests.RequestException:
        return False


@contextlib.contextmanager
def start_orthanc(folder: Path, extra: dict[str, object] | None = None) -> Iterator[Orthanc]:
    """Run Orthanc with the test configuration plus `extra` settings until the block ends."""
    executable, plugin = _installed()
    server = Orthanc(free_port(), free_port(), folder / "storage")
    settings = _configuration(server.storage, server.http_port, server.dicom_port, plugin) | (extra or {})
    config = folder / "orthanc.json"
    config.write_text(json.dumps(settings))
    log = (folder / "orthanc.log").open("w")
    process = subprocess.Popen([executable, str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _ready(server):
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (folder / "orthanc.log").read_text()[-2000:]
                pytest.fail(f"Orthanc did not start (exit status {process.poll()}):\n{tail}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory) -> Iterator[Orthanc]:
    with start_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@dataclass
class StoredStudy:
    """A phantom CT study on the server: the case (HU, truth) and its UIDs."""

    case: PhantomCase
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uids: list[str]


@pytest.fixture
def upload_study(orthanc, tmp_path) -> Callable[[int, SeriesIdentity], StoredStudy]:
    """Write a phantom CT study with `identity` and upload it with Orthanc's REST API."""

    def upload(seed: int, identity: SeriesIdentity) -> StoredStudy:
        case = generate_case(f"case{seed}", seed, PHANTOM)
        paths = write_dicom_series(case.image, tmp_path / f"upload_{seed}", "CT", identity)
        orthanc.upload(paths)
        headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in paths]
        return StoredStudy(
            case,
            str(headers[0].StudyInstanceUID),
            str(headers[0].SeriesInstanceUID),
            [str(ds.SOPInstanceUID) for ds in headers],
        )

    return upload


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """Class 1 = brighter than 100 HU, on the phantom's own spacing."""
    return save_threshold_checkpoint(
        tmp_path_factory.mktemp("pacs-model") / "ct.pt", 3, list(PHANTOM.spacing), [32, 32, 16]
    )
