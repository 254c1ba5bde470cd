"""Checkpoints: the contract between training and inference.

A checkpoint is a `torch.save`d dict of plain values and tensors only, so it loads with
``torch.load(..., weights_only=True)`` and never runs code from the file:

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
from medseg.errors import InputError
from medseg.utils.atomic import atomic_path

CHECKPOINT_FORMAT = "medseg-checkpoint-1"
#: File names of a run folder's checkpoints: the best by validation Dice, and the last (for --resume).
BEST, LAST = "best.pt", "last.pt"
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

    def build(self) -> torch.nn.Module:
        from medseg.models import create_model

        return create_model(self.name, self.spatial_dims, self.in_channels, self.out_channels, **self.options)


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
    return state


def model_from_checkpoint(state: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the network described in a loaded checkpoint and load its weights (eval mode)."""
    model = ModelConfig(**state["model"]).build()
    model.load_state_dict(state["state_dict"])
    return model.eval()


def checkpoint_paths(sources: Sequence[str | os.PathLike]) -> list[Path]:
    """Checkpoint files named by `sources`: files as given; a folder gives ``models/*.pt`` or ``*.pt``."""
    paths: list[Path] = []
    for source in map(Path, sources):
        if source.is_file():
            paths.append(source)
            continue
        if not source.is_dir():
            raise InputError(source, "no such checkpoint file or model folder")
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
