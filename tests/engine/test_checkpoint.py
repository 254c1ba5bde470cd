"""Checkpoints round-trip exactly and refuse files that would run code when unpickled."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from medseg.engine.checkpoint import ModelConfig, load_checkpoint, model_from_checkpoint, save_checkpoint
from medseg.errors import InputError


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_round_trip_restores_identical_outputs(tmp_path):
    config = ModelConfig("unet", 3, 1, 3, {"channels": (4, 8, 16), "strides": (2, 2)})
    model = config.build().eval()
    path = save_checkpoint(
        tmp_path / "model.pt", model, config, {"patch_size": [16, 16, 16]}, {0: "bg", 1: "a"}
    )
    state = load_checkpoint(path)
    restored = model_from_checkpoint(state)
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), restored(x))
    assert state["class_names"] == {0: "bg", 1: "a"}
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"format": "medseg-checkpoint-1", "payload": _RunsCode()}, handle)
    with pytest.raises(InputError, match=r"evil\.pt: refused"):
        load_checkpoint(path)


def test_foreign_file_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(InputError, match="not a medseg checkpoint"):
        load_checkpoint(path)
