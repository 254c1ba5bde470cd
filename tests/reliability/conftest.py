"""Shared helpers of the reliability tests: the DICOM factory and tiny model fixtures on the path, and
`Zygote`, which runs medseg in processes of their own without importing it each time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]


def one_thread_env() -> dict[str, str]:
    """The environment for a medseg subprocess: one OpenMP/torch thread."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class Zygote:
    """Runs ``medseg`` in forked processes (see zygote.py); each run's output goes to a log file."""

    def __init__(self) -> None:
        script = Path(__file__).with_name("zygote.py")
        self.process = subprocess.Popen(
            [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=one_thread_env(),
        )  # fmt: skip

    def _ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def start(self, args: Sequence[str | Path], log: Path) -> int:
        """Start ``medseg ARGS`` with its output to `log`; return its process id."""
        return self._ask({"run": [str(a) for a in args], "log": str(log)})["pid"]

    def wait(self, pid: int) -> int:
        """Wait for run `pid`: its exit status, or minus the signal that killed it."""
        return self._ask({"wait": pid})["status"]

    def run(self, args: Sequence[str | Path], log: Path) -> tuple[int, str]:
        """Run ``medseg ARGS`` to the end: (exit status, output)."""
        status = self.wait(self.start(args, log))
        return status, log.read_text()

    @staticmethod
    def finished(pid: int) -> bool:
        """True once run `pid` has exited (a zombie until `wait`)."""
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote]:
    """One zygote for all reliability tests."""
    forker = Zygote()
    yield forker
    forker.close()
