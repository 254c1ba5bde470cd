"""Run trained models on one image: checkpoints -> plan preprocessing -> sliding windows -> source grid.

`load_ensemble(sources)` reads one or several checkpoints (files, or folders holding ``models/*.pt`` or
``*.pt``, e.g. the folds of a cross-validation) that must share their plan and class names.
`Ensemble.predict(image)` preprocesses the image as the plan says (`medseg.data.presets`), segments it
with `medseg.engine.sliding_window.segment` (the members' scores summed), inverts every spatial step
with nearest-neighbour interpolation and checks that the labels land exactly on the image's grid.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from medseg.data.metatensor import image_to_metatensor, metatensor_to_image
from medseg.data.planner import Plan
from medseg.data.presets import inverse, preprocessing
from medseg.engine.checkpoint import load_checkpoint, model_from_checkpoint
from medseg.engine.sliding_window import WindowSettings, segment
from medseg.errors import ConfigError, GeometryError, InputError
from medseg.io.image import LabelMap, ScalarImage

#: Windows evaluated together; 4 was fastest on a 2-core CPU.
SW_BATCH_SIZE = 4
#: File endings of checkpoints inside a model folder.
CHECKPOINT_SUFFIXES = (".pt", ".pth")


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


@dataclass
class Ensemble:
    """One or more networks sharing one plan and one set of classes."""

    networks: list[torch.nn.Module]
    plan: Plan
    class_names: dict[int, str]
    sources: list[Path] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.model["out_channels"])

    def settings(self, **overrides: Any) -> WindowSettings:
        """Window settings for this ensemble: the plan's patch size unless `overrides` says otherwise."""
        values: dict[str, Any] = {"roi_size": tuple(self.plan.patch_size), "batch_size": SW_BATCH_SIZE}
        values.update({key: value for key, value in overrides.items() if value is not None})
        return WindowSettings(**values)

    def to(self, device: str, channels_last: bool = False) -> Ensemble:
        """Move the networks to `device` (optionally in channels-last memory format)."""
        for network in self.networks:
            network.to(device)
            if channels_last:
                network.to(
                    memory_format=torch.channels_last_3d if self.plan.dim == 3 else torch.channels_last
                )
        return self

    def predict(
        self, image: ScalarImage, settings: WindowSettings | None = None, progress: bool = False
    ) -> LabelMap:
        """Labels for `image` on its own grid (same shape and affine)."""
        settings = settings or self.settings()
        source = image.meta.get("source")
        if image.ndim != self.plan.dim:
            raise InputError(source, f"the model is {self.plan.dim}D, the image {image.ndim}D {image.shape}")
        if len(self.plan.normalization) != 1:
            raise ConfigError(f"the model needs {len(self.plan.normalization)} channels; inputs have one")
        pipeline = preprocessing(self.plan, label_key=None, load=False)
        data = pipeline({"image": image_to_metatensor(image)})  # stored type: the intensity step makes floats
        tensor = data.pop("image")
        labels = segment(self.networks, tensor.as_tensor(), settings, progress)
        data["image"] = tensor
        data["pred"] = MetaTensor(labels[None], meta=dict(tensor.meta))
        del tensor
        restored = metatensor_to_image(inverse(pipeline)(data)["pred"], LabelMap)
        if not restored.same_grid(image):
            raise GeometryError(
                source, "labels did not return onto the image grid after inverting the preprocessing"
            )
        array = restored.array.astype(labels.numpy().dtype, copy=False)
        return LabelMap(array, image.affine.copy(), {"source": source or ""})


def load_ensemble(sources: Sequence[str | os.PathLike], device: str = "cpu") -> Ensemble:
    """Load the checkpoints named by `sources` (see `checkpoint_paths`) as one ensemble on `device`."""
    paths = checkpoint_paths(sources)
    states = [load_checkpoint(path) for path in paths]
    first = states[0]
    for path, state in zip(paths[1:], states[1:], strict=True):
        if state["plan"] != first["plan"]:
            raise InputError(path, f"plan differs from {paths[0].name}; ensemble members must share one plan")
        if (
            state["class_names"] != first["class_names"]
            or state["model"]["out_channels"] != first["model"]["out_channels"]
        ):
            raise InputError(path, f"classes differ from {paths[0].name}")
    if int(first["model"]["out_channels"]) < 2:
        raise InputError(
            paths[0], "a single-output model cannot be read as classes; expected softmax outputs"
        )
    networks = [model_from_checkpoint(state).to(device) for state in states]
    return Ensemble(
        networks=networks,
        plan=Plan(**first["plan"]),
        class_names={int(k): str(v) for k, v in first["class_names"].items()},
        sources=paths,
        model=dict(first["model"]),
    )


@torch.no_grad()
def predict_labels(
    model: torch.nn.Module,
    image: ScalarImage,
    normalise: Callable[[np.ndarray], np.ndarray],
    roi_size: Sequence[int],
    overlap: float = 0.5,
    sw_batch_size: int = SW_BATCH_SIZE,
    mixed_precision: bool = True,
    device: str = "cpu",
) -> LabelMap:
    """Segment `image` on its own grid with one in-memory model and a normalisation function.

    For a checkpoint and its plan use `load_ensemble(...).predict(image)` instead.
    """
    model.to(device).eval()
    tensor = torch.as_tensor(normalise(image.array.astype(np.float32)))[None]
    settings = WindowSettings(
        roi_size=tuple(roi_size),
        overlap=overlap,
        batch_size=sw_batch_size,
        precision="bf16" if mixed_precision else "fp32",
        device=device,
    )
    labels = segment([model], tensor, settings)
    return LabelMap(labels.numpy(), image.affine.copy(), {"source": image.meta.get("source", "")})
