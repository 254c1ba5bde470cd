"""Random-number-generator states, captured into and restored from a checkpoint's ``training`` entry.

Checkpoints load with ``weights_only=True``, so every state is stored as tensors and plain values: the
numpy Mersenne-Twister key becomes a tensor, Python's state a list. The data pipeline's own randomness
(MONAI transforms, sampler, loader generator) is re-seeded from the epoch number, so it needs no saving:
see `medseg.training.patches`.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_rng() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA, if used) generator states as checkpoint-safe values."""
    kind, key, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss = random.getstate()
    state = {
        "python": {"version": version, "state": list(python_state), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": position,
            "has_gauss": has_gauss,
            "cached": cached,
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Undo `capture_rng`: put every generator back where it was."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    numpy = state["numpy"]
    key = numpy["key"].numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], key, numpy["pos"], numpy["has_gauss"], numpy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, numpy and torch; in deterministic mode also ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = not deterministic
