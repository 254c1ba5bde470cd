"""medseg: medical image segmentation for hospital ML teams.

The public API, in one import (each name is loaded on first use, so ``import medseg`` stays light)::

    from medseg import Segmenter, read_image, write_image
    write_image(Segmenter.load("hippocampus_mri_3d").predict(read_image("case.nii.gz")), "mask.nii.gz")

See docs/api.md for every exported name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Exported name -> the module that defines it.
_EXPORTS = {
    "Segmenter": "medseg.inference.segmenter",
    "read_image": "medseg.io.reader",
    "write_image": "medseg.io.writer",
    "ScalarImage": "medseg.io.image",
    "LabelMap": "medseg.io.image",
    "fit": "medseg.training.trainer",
    "load_config": "medseg.training.config",
    "RunConfig": "medseg.training.config",
    "create_model": "medseg.models.registry",
    "list_models": "medseg.models.registry",
    "list_bundles": "medseg.bundles",
}

__all__ = [
    "LabelMap",
    "RunConfig",
    "ScalarImage",
    "Segmenter",
    "__version__",
    "create_model",
    "fit",
    "list_bundles",
    "list_models",
    "load_config",
    "read_image",
    "write_image",
]

if TYPE_CHECKING:
    from medseg.bundles import list_bundles
    from medseg.inference.segmenter import Segmenter
    from medseg.io.image import LabelMap, ScalarImage
    from medseg.io.reader import read_image
    from medseg.io.writer import write_image
    from medseg.models.registry import create_model, list_models
    from medseg.training.config import RunConfig, load_config
    from medseg.training.trainer import fit


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medseg' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
