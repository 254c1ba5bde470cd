"""PACS settings: file plus environment, validation, and a password that never shows."""

from __future__ import annotations

import logging

import pytest
import yaml

from medseg.cli.main import main
from medseg.errors import ConfigError
from medseg.pacs.config import load_config

SECRET = "s3cr3t-Passw0rd!"


def write(tmp_path, settings: dict) -> str:
    path = tmp_path / "pacs.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path)


def test_environment_overrides_the_file(tmp_path):
    path = write(tmp_path, {"protocol": "dimse", "host": "pacs.local", "port": 104, "called_aet": "PACS"})
    environ = {"MEDSEG_PACS_PASSWORD": SECRET, "MEDSEG_PACS_PORT": "11112", "MEDSEG_PACS_TLS": "yes"}
    config = load_config(path, environ)
    assert (config.host, config.port, config.called_aet, config.tls) == ("pacs.local", 11112, "PACS", True)
    assert config.password == SECRET
    assert config.describe() == "DICOM TLS MEDSEG -> PACS@pacs.local:11112"
    assert SECRET not in repr(config) and SECRET not in config.describe()


def test_dicomweb_from_environment_only():
    environ = {
        "MEDSEG_PACS_URL": "https://pacs.local/dicom-web",
        "MEDSEG_PACS_USERNAME": "medseg",
        "MEDSEG_PACS_PASSWORD": SECRET,
    }
    config = load_config(None, environ)
    assert config.describe() == "DICOMweb https://pacs.local/dicom-web as medseg"
    assert SECRET not in repr(config)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": f"https://medseg:{SECRET}@pacs.local/dicom-web"}, "must not hold credentials"),
        ({"url": "pacs.local"}, "http"),
        ({"protocol": "hl7"}, "dicomweb, dimse"),
        ({"protocol": "dimse", "host": "h", "calling_aet": "A_TITLE_FAR_TOO_LONG"}, "calling_aet"),
        ({"protocol": "dimse"}, "host"),
        ({"url": "https://p/dicom-web", "ca_bundle": "/nonexistent/ca.pem"}, "ca_bundle"),
        ({"url": "https://p/dicom-web", "passwd": "x"}, "unknown PACS setting"),
        ({"url": "https://p/dicom-web", "port": "eleven"}, "numbers"),
    ],
)
def test_invalid_settings_are_refused_with_the_setting_named(tmp_path, settings, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_config(write(tmp_path, settings), {})
    assert SECRET not in str(error.value)


def test_cli_error_for_bad_settings_is_one_line_without_the_password(tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    path = write(tmp_path, {"url": f"https://medseg:{SECRET}@pacs.local/dicom-web"})
    assert main(["pacs", "--config", path, "find"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "credentials" in error
    assert SECRET not in error and SECRET not in caplog.text


def test_credentials_over_plain_http_to_another_machine_need_an_explicit_yes(caplog):
    """Basic auth over http:// is readable by anyone on the network: refused unless allowed, then warned
    about; on the loopback interface (a PACS on the same machine) it never crosses a network."""
    environ = {"MEDSEG_PACS_URL": "http://pacs.hospital.example/dicom-web", "MEDSEG_PACS_USERNAME": "medseg"}
    environ["MEDSEG_PACS_PASSWORD"] = SECRET
    with pytest.raises(ConfigError, match="password would cross the network unencrypted") as error:
        load_config(None, environ)
    assert SECRET not in str(error.value)
    with caplog.at_level(logging.WARNING):
        config = load_config(None, {**environ, "MEDSEG_PACS_ALLOW_INSECURE_HTTP": "yes"})
    assert config.allow_insecure_http and "sent unencrypted over http" in caplog.text
    assert (
        load_config(None, {**environ, "MEDSEG_PACS_URL": "http://127.0.0.1:8042/dicom-web"}).password
        == SECRET
    )
    assert load_config(None, {"MEDSEG_PACS_URL": "http://pacs.hospital.example/dicom-web"}).username == ""


def test_the_configured_ca_bundle_is_the_one_trusted_whatever_the_environment(tmp_path, monkeypatch):
    from medseg.pacs.dicomweb import _session

    ours, theirs = tmp_path / "hospital-ca.pem", tmp_path / "system.pem"
    ours.write_text("ours"), theirs.write_text("theirs")
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(variable, str(theirs))
        config = load_config(
            None, {"MEDSEG_PACS_URL": "https://pacs.example/dicom-web", "MEDSEG_PACS_CA_BUNDLE": str(ours)}
        )
        settings = _session(config).merge_environment_settings(
            "https://pacs.example/dicom-web", {}, False, None, None
        )
        assert settings["verify"] == str(ours), variable
        monkeypatch.delenv(variable)
