"""Where the PACS is and how to log in: a YAML/JSON file, overridden by ``MEDSEG_PACS_*`` variables.

A file (see docs/deployment.md) may hold every setting; environment variables override it, so that a
password can come from a systemd credential or a secret store instead of a file. The password is never
part of ``repr()`` or of `PacsConfig.describe`, and URLs carrying credentials are refused, so that no
log line can contain it.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from medseg.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

PROTOCOLS = ("dicomweb", "dimse")
#: Environment variable -> setting. Values from the environment override the file.
ENV_VARIABLES = {
    "MEDSEG_PACS_PROTOCOL": "protocol",
    "MEDSEG_PACS_URL": "url",
    "MEDSEG_PACS_USERNAME": "username",
    "MEDSEG_PACS_PASSWORD": "password",
    "MEDSEG_PACS_HOST": "host",
    "MEDSEG_PACS_PORT": "port",
    "MEDSEG_PACS_CALLED_AET": "called_aet",
    "MEDSEG_PACS_CALLING_AET": "calling_aet",
    "MEDSEG_PACS_CA_BUNDLE": "ca_bundle",
    "MEDSEG_PACS_CLIENT_CERT": "client_cert",
    "MEDSEG_PACS_CLIENT_KEY": "client_key",
    "MEDSEG_PACS_TLS": "tls",
    "MEDSEG_PACS_TIMEOUT": "timeout_s",
    "MEDSEG_PACS_ALLOW_INSECURE_HTTP": "allow_insecure_http",
}
#: Settings that are yes/no.
FLAGS = ("tls", "allow_insecure_http")
#: Host names whose traffic never leaves the machine: credentials over plain http stay on it.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
#: DICOM AE titles are at most 16 characters of printable ASCII, without backslash.
AE_TITLE_LENGTH = 16
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class PacsConfig:
    """Connection settings. DICOMweb uses `url`; DIMSE uses `host`, `port` and the AE titles."""

    protocol: str = "dicomweb"
    url: str = ""  # DICOMweb service root, e.g. https://pacs.example.org/dicom-web
    username: str = ""
    password: str = field(default="", repr=False)
    host: str = ""
    port: int = 104
    called_aet: str = "ANY-SCP"  # the PACS's AE title
    calling_aet: str = "MEDSEG"  # medseg's own AE title
    tls: bool = False  # DIMSE over TLS (DICOMweb follows the URL scheme)
    ca_bundle: str = ""  # PEM file of the CAs to trust; empty: the system's
    client_cert: str = ""  # PEM certificate for mutual TLS
    client_key: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S
    #: Send the username and password over plain http:// to another machine (readable by anyone on the
    #: network on the way). Off: such a configuration is refused.
    allow_insecure_http: bool = False

    def describe(self) -> str:
        """One line for logs: where medseg connects, never the password."""
        if self.protocol == "dicomweb":
            who = f" as {self.username}" if self.username else ""
            return f"DICOMweb {self.url}{who}"
        scheme = "DICOM TLS" if self.tls else "DICOM"
        return f"{scheme} {self.calling_aet} -> {self.called_aet}@{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        """Client TLS context: the CA bundle (or the system's CAs) and the client certificate, if any."""
        context = ssl.create_default_context(cafile=self.ca_bundle or None)
        if self.client_cert:
            context.load_cert_chain(self.client_cert, self.client_key or None)
        return context


def _coerce(name: str, value: Any) -> Any:
    if name == "port":
        return int(value)
    if name == "timeout_s":
        return float(value)
    if name in FLAGS and isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return value if name in FLAGS else str(value)


def _validate(config: PacsConfig) -> PacsConfig:
    if config.protocol not in PROTOCOLS:
        raise ConfigError(f"pacs protocol {config.protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if config.protocol == "dicomweb":
        parts = urlsplit(config.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("pacs url: give the DICOMweb root as http(s)://host[:port]/path")
        if parts.username or parts.password:
            raise ConfigError("pacs url must not hold credentials; set username and MEDSEG_PACS_PASSWORD")
        plain = parts.scheme == "http" and (config.username or config.password)
        if plain and parts.hostname not in LOOPBACK_HOSTS:
            if not config.allow_insecure_http:
                raise ConfigError(
                    f"pacs url {config.url}: the password would cross the network unencrypted over http; "
                    "use https, or set allow_insecure_http: true if you must"
                )
            logger.warning("PACS credentials are sent unencrypted over http to %s", parts.hostname)
    else:
        if not config.host:
            raise ConfigError("pacs host: DIMSE needs the PACS host name (and port, called_aet)")
        for key in ("called_aet", "calling_aet"):
            title = getattr(config, key)
            if not title or len(title) > AE_TITLE_LENGTH or "\\" in title or not title.isprintable():
                raise ConfigError(f"pacs {key} {title!r}: 1-{AE_TITLE_LENGTH} printable characters")
    for key in ("ca_bundle", "client_cert", "client_key"):
        value = getattr(config, key)
        if value and not Path(value).is_file():
            raise ConfigError(f"pacs {key}: file {value} not found")
    return config


def load_config(
    path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None
) -> PacsConfig:
    """Settings from the file at `path` (YAML or JSON; optional), then from ``MEDSEG_PACS_*`` variables."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise InputError(path, f"cannot read PACS settings ({type(error).__name__})") from None
        if not isinstance(loaded, dict):
            raise InputError(path, "PACS settings must be a mapping of names to values")
        values.update(loaded)
    for variable, name in ENV_VARIABLES.items():
        if environ.get(variable):
            values[name] = environ[variable]
    known = {f.name for f in fields(PacsConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown PACS setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        coerced = {name: _coerce(name, value) for name, value in values.items()}
    except (TypeError, ValueError):
        raise ConfigError("pacs port and timeout_s must be numbers") from None
    return _validate(replace(PacsConfig(), **coerced))
