"""The documented benchmark configs stay runnable: each one loads, and its model, patch and dataset check out
against the real data, as `medseg train CONFIG --check` does."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from medseg.training.config import load_config
from medseg.training.experiment import prepare

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "configs"
CONFIGS = sorted(CONFIGS_DIR.glob("*.yaml"))


def test_the_benchmark_configs_are_found():
    assert {path.name for path in CONFIGS} >= {"hippocampus.yaml", "hippocampus_gpu.yaml", "cxr_lung.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.stem)
def test_benchmark_config_checks_out_against_its_dataset(path, datasets_dir, tmp_path):
    config = load_config(path)
    dataset = datasets_dir / Path(config.dataset).name
    config = dataclasses.replace(config, dataset=str(dataset), output=str(tmp_path / "run" / "fold_{fold}"))
    experiment = prepare(config)
    assert len(experiment.train_records) > len(experiment.val_records) > 0
    assert experiment.model_config.name == config.model
    if config.patch_size:
        assert experiment.patch_size == config.patch_size
    assert (tmp_path / "run" / "splits.json").is_file()
