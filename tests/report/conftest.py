"""Headless Chromium for rendering the HTML reports (Debian's `chromium` package)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
#: Flags for a quiet, offline, throw-away browser.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip
#: Seconds one page may take to render.
RENDER_TIMEOUT_S = 120


@pytest.fixture(scope="session")
def chromium(tmp_path_factory) -> Callable[..., str]:
    """Run Chromium on a local page: ``chromium(page, "--dump-dom")`` returns its stdout.

    Without /usr/bin/chromium the browser tests skip, unless CI=true, where they fail.
    """
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} not found; install Debian's chromium package"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    profile = tmp_path_factory.mktemp("chromium-profile")

    def run(page: Path, *arguments: str) -> str:
        command = [
            str(CHROMIUM),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            *arguments,
            page.resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S, check=True)
        return done.stdout

    return run
