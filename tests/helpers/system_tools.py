"""Debian tools some tests run (dcm2niix, dciodvfy): found on PATH, else the test skips, but under CI
(``CI`` set: `.ci/run` installs them) it fails."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(executable: str, package: str) -> str:
    """The path of `executable`; skip (fail under CI) naming Debian `package` when it is missing."""
    path = shutil.which(executable)
    if path is None:
        message = f"{executable} is not installed (apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
