"""DIMSE over TLS with mutual authentication against a real Orthanc (DICOM TLS on its DICOM port).

Certificates are made for the test with the ``openssl`` command: a server certificate for 127.0.0.1
that medseg trusts through ``ca_bundle``, and a client certificate that Orthanc trusts. (DICOMweb over
HTTPS is not tested here: Debian's Orthanc 1.10 crashes on its first HTTPS connection.)
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from conftest import PASSWORD, PHANTOM, Orthanc, missing, start_orthanc

from medseg.data.phantom import generate_case
from medseg.io.dicom.writer import SeriesIdentity, write_dicom_series
from medseg.pacs.client import PacsError, StudyQuery, connect
from medseg.pacs.config import PacsConfig


def self_signed(folder: Path, name: str, common_name: str, *extra: str) -> tuple[Path, Path]:
    """(certificate, key) PEM files of a new self-signed certificate."""
    if shutil.which("openssl") is None:
        missing("the openssl command is not installed")
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subprocess.run(
        [*command, "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={common_name}", *extra],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tls")
    server = self_signed(folder, "server", "127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
    client = self_signed(folder, "client", "MEDSEG")
    return {
        "server_cert": server[0],
        "server_key": server[1],
        "client_cert": client[0],
        "client_key": client[1],
    }


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, certificates) -> Iterator[Orthanc]:
    """Orthanc whose DICOM port speaks only TLS and requires a client certificate it trusts."""
    tls = {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(certificates["server_cert"]),
        "DicomTlsPrivateKey": str(certificates["server_key"]),
        "DicomTlsTrustedCertificates": str(certificates["client_cert"]),
        "DicomTlsRemoteCertificateRequired": True,
    }
    with start_orthanc(tmp_path_factory.mktemp("orthanc-tls"), tls) as server:
        yield server


def tls_config(orthanc: Orthanc, certificates: dict[str, Path], **changes: object) -> PacsConfig:
    settings = {
        **orthanc.settings("dimse"),
        "tls": True,
        "ca_bundle": str(certificates["server_cert"]),
        "client_cert": str(certificates["client_cert"]),
        "client_key": str(certificates["client_key"]),
        "timeout_s": 10,
    }
    return PacsConfig(**(settings | changes), password=PASSWORD)


def test_find_retrieve_and_store_over_mutual_tls(orthanc, certificates, upload_study, tmp_path):
    study = upload_study(41, SeriesIdentity())
    client = connect(tls_config(orthanc, certificates))
    [found] = client.find_studies(StudyQuery(study_instance_uid=study.study_instance_uid))
    [series] = client.find_series(found.study_instance_uid)
    paths = client.retrieve_series(study.study_instance_uid, series.series_instance_uid, tmp_path / "got")
    assert len(paths) == len(study.sop_instance_uids)

    case = generate_case("sent", 42, PHANTOM)
    sent = write_dicom_series(case.image, tmp_path / "sent", "CT", SeriesIdentity())
    client.store(sent)
    uid = str(pydicom.dcmread(sent[0], stop_before_pixels=True).StudyInstanceUID)
    [stored] = client.find_studies(StudyQuery(study_instance_uid=uid))
    assert stored.number_of_instances == len(sent)


@pytest.mark.parametrize("change", ["no client certificate", "server not trusted", "no TLS"])
def test_association_is_refused_without_mutual_trust(orthanc, certificates, change):
    changes = {
        "no client certificate": {"client_cert": "", "client_key": ""},
        "server not trusted": {"ca_bundle": str(certificates["client_cert"])},
        "no TLS": {"tls": False},
    }[change]
    with pytest.raises(PacsError):
        connect(tls_config(orthanc, certificates, **changes)).find_studies(StudyQuery())
