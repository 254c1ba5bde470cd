"""Shared fixtures: where the real datasets live (../shared/datasets beside the repository)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASETS_DIR = REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The real, labelled datasets (read-only). Missing data is a failure, not a skip."""
    if not (DATASETS_DIR / "INDEX.md").is_file():
        pytest.fail(f"real datasets not found at {DATASETS_DIR}; clone medseg beside ../shared")
    return DATASETS_DIR
