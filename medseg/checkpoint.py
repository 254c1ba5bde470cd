"""Checkpoints: the one contract between training and inference.

Training writes them (`save_checkpoint`), inference reads them (`load_checkpoint`, `model_from_checkpoint`);
loading checks the whole contract, so a partial or foreign file is one `InputError` naming it (exit 2 on the
command line), never a `TypeError` deep inside. A checkpoint is a `torch.save`d dict of plain values and
tensors only, so it loads with ``torch.load(..., weights_only=True)`` and never runs code from the file:

- ``format``: `CHECKPOINT_FORMAT`;
- ``model``: ``{"name", "spatial_dims", "in_channels", "out_channels", "options"}`` for
  `medseg.models.create_model`;
- ``state_dict``: the model weights;
- ``plan``: the plans.json content (preprocessing, patch size; see `medseg.data.planner.Plan`);
- ``class_names``: ``{value: name}`` including 0 for background;
- ``medseg_version`` and anything the trainer adds under ``training`` (epoch, optimiser state, ...).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import medseg
from medseg.data.planner import Plan, plan_from_dict
from medseg.errors import ConfigError, InputError, MedsegError
from medseg.utils.atomic import atomic_path

CHECKPOINT_FORMAT = "medseg-checkpoint-1"
#: File names of a run folder's checkpoints: the best by validation Dice, and the last (for --resume).
BEST, LAST = "best.pt", "last.pt"
#: Keys every checkpoint holds.
REQUIRED_KEYS = ("model", "state_dict", "plan", "class_names")
#: File endings of checkpoints inside a model folder.
CHECKPOINT_SUFFIXES = (".pt", ".pth")


@dataclass(frozen=True)
class ModelConfig:
    """Everything `medseg.models.create_model` needs to rebuild the network."""

    name: str
    spatial_dims: int
    in_channels: int
    out_channels: int
    options: dict[str, Any] = field(default_factory=dict)
    #: A 2D network (`spatial_dims` 2) run on 3D volumes along this spatial axis (`SliceWise`), or None.
    slice_axis: int | None = None

    def build(self) -> torch.nn.Module:
        from medseg.models import create_model
        from medseg.models.slicewise import SliceWise

        network = create_model(
            self.name, self.spatial_dims, self.in_channels, self.out_channels, **self.options
        )
        return network if self.slice_axis is None else SliceWise(network, self.slice_axis)


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    model_config: ModelConfig,
    plan: dict[str, Any],
    class_names: dict[int, str],
    training: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file, then rename) and return its path."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "medseg_version": medseg.__version__,
        "model": asdict(model_config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "plan": plan,
        "class_names": {int(k): str(v) for k, v in class_names.items()},
        "training": training or {},
    }
    with atomic_path(path) as temporary:
        torch.save(state, temporary)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (weights only; no code in the file is executed) and check its format."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0]
        raise InputError(path, f"refused: not a plain-weights checkpoint ({first_line})") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise InputError(path, f"cannot read checkpoint ({error})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(path, f"not a medseg checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    _check_contents(state, path)
    return state


def _check_contents(state: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose model, weights, plan or classes inference could not use."""
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise InputError(path, f"incomplete medseg checkpoint: no {', '.join(missing)}")
    model = state["model"]
    fields = {"name": str, "spatial_dims": int, "in_channels": int, "out_channels": int, "options": dict}
    if not isinstance(model, dict) or any(not isinstance(model.get(k), t) for k, t in fields.items()):
        raise InputError(path, f"its model description must give {', '.join(fields)}")
    if set(model) - set(fields) - {"slice_axis"}:
        unknown = sorted(set(model) - set(fields) - {"slice_axis"})
        raise InputError(path, f"its model description has unknown keys {unknown}")
    if model.get("slice_axis") not in (None, 0, 1, 2) or (
        model.get("slice_axis") is not None and model["spatial_dims"] != 2
    ):
        raise InputError(
            path, f"its model's slice_axis {model.get('slice_axis')!r} needs a 2D network and an axis 0-2"
        )
    weights = state["state_dict"]
    if not isinstance(weights, dict) or not weights:
        raise InputError(path, "the checkpoint holds no network weights")
    if not all(isinstance(value, torch.Tensor) for value in weights.values()):
        raise InputError(path, "its state_dict holds values that are not tensors")
    names, outputs = state["class_names"], model["out_channels"]
    if (
        not isinstance(names, dict)
        or 0 not in names
        or any(not isinstance(value, int) or not 0 <= value < outputs for value in names)
    ):
        raise InputError(path, f"class_names must name outputs 0..{outputs - 1}, background (0) included")
    checkpoint_plan(state, path)


def checkpoint_plan(state: dict[str, Any], path: str | os.PathLike | None = None) -> Plan:
    """The checked `Plan` a loaded checkpoint was trained with; its network must be the one the plan
    feeds (dimensions, slice axis, input channels), or slices and stacks would be cut wrongly."""
    plan = plan_from_dict(state["plan"], path)
    model = state["model"]
    found = (int(model["spatial_dims"]), model.get("slice_axis"), int(model["in_channels"]))
    expected = (plan.network_dims, plan.slice_axis, plan.network_in_channels)
    if found != expected:
        raise InputError(
            path,
            "its network (spatial_dims, slice_axis, input channels) is "
            f"{found} but its plan gives {expected}",
        )
    return plan


def model_from_checkpoint(state: dict[str, Any], path: str | os.PathLike | None = None) -> torch.nn.Module:
    """Rebuild the network described in a loaded checkpoint and load its weights (eval mode)."""
    try:
        model = ModelConfig(**state["model"]).build()
    except (MedsegError, TypeError, ValueError) as error:  # an unknown model or options this medseg lacks
        reason = str(error).strip().splitlines()[0]
        raise InputError(path, f"cannot build the network it describes ({reason})") from None
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[0]
        raise InputError(path, f"weights do not fit the network it describes ({reason})") from None
    return model.eval()


def network_mismatch(trained: torch.nn.Module, target: torch.nn.Module) -> str | None:
    """Why the weights of `trained` would not be those of `target` (other classes, slice axis, parameter
    names or shapes), or None when they would: a bundle's ``network_def`` must build the network a run
    trains."""
    ours_described, theirs_described = describe_network(trained), describe_network(target)
    if ours_described != theirs_described:
        return f"{ours_described} against {theirs_described}"
    ours, theirs = trained.state_dict(), target.state_dict()
    for key in sorted(ours.keys() | theirs.keys()):
        here = tuple(ours[key].shape) if key in ours else "absent"
        there = tuple(theirs[key].shape) if key in theirs else "absent"
        if here != there:
            return f"weight {key} is {here} against {there}"
    return None


def require_network(trained: ModelConfig, network: torch.nn.Module | None) -> None:
    """Refuse (`ConfigError`) to train `trained` for weights that go into `network` (a bundle's
    ``network_def``) when they would not load into it; None checks nothing."""
    if network is not None and (mismatch := network_mismatch(trained.build(), network)):
        raise ConfigError(
            f"this run would train another network than the bundle's network_def ({mismatch}); change the "
            "network in the bundle's configs (train.json and inference.json), not for the run"
        )


def describe_network(network: torch.nn.Module) -> str:
    """The network's classes, wrappers first (their ``network`` attribute), with any slice axis."""
    names = []
    while network is not None:
        axis = getattr(network, "slice_axis", None)
        names.append(type(network).__name__ + ("" if axis is None else f"[slice axis {axis}]"))
        inner = getattr(network, "network", None)
        network = inner if isinstance(inner, torch.nn.Module) else None
    return " > ".join(names)


def checkpoint_paths(sources: Sequence[str | os.PathLike]) -> list[Path]:
    """Checkpoint files named by `sources`: files as given; a training run folder gives its ``best.pt``
    only (``last.pt`` is for resuming, not a second opinion); any other folder gives ``models/*.pt`` or
    ``*.pt`` (the members of an ensemble)."""
    paths: list[Path] = []
    for source in map(Path, sources):
        if source.is_file():
            paths.append(source)
            continue
        if not source.is_dir():
            raise InputError(source, "no such checkpoint file or model folder")
        if (source / BEST).is_file():
            paths.append(source / BEST)
            continue
        if (source / LAST).is_file():
            raise InputError(
                source,
                f"a training run without {BEST} yet (it has not validated, or a fold 'all' run has not "
                "finished its first epoch)",
            )
        for folder in (source / "models", source):
            found = sorted(p for p in folder.glob("*") if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())
            if found:
                paths.extend(found)
                break
        else:
            raise InputError(source, "model folder holds no models/*.pt or *.pt checkpoint")
    if not paths:
        raise InputError(None, "no model given")
    return paths
