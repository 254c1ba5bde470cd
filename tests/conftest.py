"""Shared fixtures: where the real datasets live (../shared/datasets beside the repository), and the
CPU share of each pytest-xdist worker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Test helpers every test folder imports by module name (DICOM factory, tiny models, training fixtures).
sys.path.insert(0, str(Path(__file__).with_name("helpers")))
DATASETS_DIR = REPO_ROOT.parent / "shared" / "datasets"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test` runs one worker per core), give each worker its share of the cores,
    for torch here and for the medseg processes tests start: workers whose threads outnumber the cores
    wait on each other and run many times slower."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = max(1, len(os.sched_getaffinity(0)) // int(workers))
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The real, labelled datasets (read-only). Missing data is a failure, not a skip."""
    if not (DATASETS_DIR / "INDEX.md").is_file():
        pytest.fail(f"real datasets not found at {DATASETS_DIR}; clone medseg beside ../shared")
    return DATASETS_DIR


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module: on 2 shared cores, two threads that wait on each other
    run up to 20x slower. Restores the previous count afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def exact_float32():
    """No TF32 on a GPU while a test compares GPU with CPU results: TF32 rounds convolution and matmul
    inputs to 10 mantissa bits. Restores the previous settings afterwards."""
    previous = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous
