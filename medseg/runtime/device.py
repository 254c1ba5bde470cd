"""Which device a run uses: ``auto`` is this process's GPU when there is one, else the CPU.

Under ``torchrun`` (LOCAL_RANK set) ``auto`` and ``cuda`` mean the process's own GPU, ``cuda:LOCAL_RANK``,
which also becomes the process's current CUDA device (so nothing opens a context on GPU 0).
Asking for CUDA on a machine without it is a `ConfigError`, not a crash on the first tensor.
"""

from __future__ import annotations

import os

import torch

from medseg.errors import ConfigError

#: The device names a user may give, besides ``cuda:N``.
CHOICES = ("auto", "cpu", "cuda")


def resolve_device(requested: str = "auto") -> str:
    """The concrete torch device for `requested` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``)."""
    requested = str(requested).strip().lower()
    if requested not in CHOICES and not requested.startswith("cuda:"):
        raise ConfigError(f"device {requested!r}: use auto, cpu, cuda or cuda:N")
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r} asked for, but this machine has no CUDA GPU")
    text = os.environ.get("LOCAL_RANK", "0") if requested in ("auto", "cuda") else requested.split(":", 1)[1]
    if not text.isdigit() or int(text) >= torch.cuda.device_count():
        raise ConfigError(f"GPU {text!r} asked for: this machine has {torch.cuda.device_count()} GPU(s)")
    if "LOCAL_RANK" in os.environ:  # one process per GPU: make it this process's current device too
        torch.cuda.set_device(int(text))
    return f"cuda:{int(text)}"
