"""Shared helpers of the reliability tests: the DICOM factory and tiny model fixtures on the path, and
medseg run in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS / "io"), str(TESTS / "engine")]


def medseg(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m medseg.cli.main ARGS`` in a fresh process with one thread; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        env=one_thread_env(),
        timeout=timeout,
    )


def one_thread_env() -> dict[str, str]:
    """The environment for a medseg subprocess: one OpenMP/torch thread."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
