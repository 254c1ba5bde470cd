"""Checkpoints round-trip exactly; files that would run code when unpickled, and partial or foreign
checkpoints, are refused with one line naming the file (exit 2 on the command line), never a raw error."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from infer_models import plan

from medseg.checkpoint import ModelConfig, load_checkpoint, model_from_checkpoint, save_checkpoint
from medseg.cli.main import main
from medseg.errors import InputError


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_round_trip_restores_identical_outputs(tmp_path):
    config = ModelConfig("unet", 3, 1, 3, {"channels": (4, 8, 16), "strides": (2, 2)})
    model = config.build().eval()
    path = save_checkpoint(
        tmp_path / "model.pt", model, config, plan(3, [1.0] * 3, [16] * 3), {0: "bg", 1: "a"}
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


def _saved_state(tmp_path) -> dict:
    config = ModelConfig("unet", 2, 1, 2, {"channels": (4, 8), "strides": (2,)})
    path = save_checkpoint(
        tmp_path / "good.pt", config.build(), config, plan(2, [1.0] * 2, [16] * 2), {0: "bg"}
    )
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda s: s.pop("plan"), "incomplete medseg checkpoint: no plan"),
        (lambda s: s.update(plan={"normalization": [], "patch_size": [64, 64, 32]}), "not a medseg plan"),
        (lambda s: s["plan"].update(patch_size=[16]), "patch_size must have 2 values"),
        (lambda s: s["plan"].update(normalization=[{"scheme": "magic"}]), "normalization scheme 'magic'"),
        (lambda s: s.update(state_dict={}), "holds no network weights"),
        (lambda s: s["model"].pop("out_channels"), "model description must give"),
        (lambda s: s.update(class_names={1: "lesion"}), "class_names must name outputs 0..1"),
        (lambda s: s["state_dict"].update(extra=torch.zeros(1)), "weights do not fit the network"),
        (lambda s: s["model"].update(name="no_such_net"), "cannot build the network it describes"),
        (lambda s: s["model"]["options"].update(wings=3), "cannot build the network it describes"),
        (lambda s: s["model"].update(extra=1), "unknown keys"),
    ],
)
def test_partial_checkpoints_are_one_clear_error(tmp_path, capsys, damage, message):
    state = _saved_state(tmp_path)
    damage(state)
    path = tmp_path / "damaged.pt"
    torch.save(state, path)
    with pytest.raises(InputError, match=message):
        model_from_checkpoint(load_checkpoint(path), path)
    status = main(["infer", str(tmp_path), "--model", str(path), "--out", str(tmp_path / "out")])
    [line] = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and line.startswith(f"medseg infer: error: {path}: ")
