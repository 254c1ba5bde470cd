"""Mixed precision: which autocast dtype a run uses, and whether it needs a gradient scaler.

bf16 has float32's exponent range, so it trains without loss scaling. ``auto`` uses it on GPUs that
support it and on CPUs that compute bf16 natively (AVX512-BF16 or AMX in the CPU flags): there it
was about 1.9× faster than float32 for 3D convolutions. Elsewhere the CPU emulates bf16, and a 3D
U-Net training step was 10-16× *slower* than in float32 (an AVX2-only AMD EPYC), a 2D one 2× slower
(AVX-512 without BF16, where oneDNN still says it supports bf16), so ``auto`` means float32 there.
fp16 needs a `torch.amp.GradScaler` and a GPU.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch

from medseg.errors import ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
#: What a user may ask for: a dtype, or ``auto`` (`auto_precision`).
CHOICES = ("auto", *DTYPES)


#: CPU flags (Linux ``/proc/cpuinfo``) of native bf16 arithmetic. oneDNN also "supports" bf16 on plain
#: AVX-512 by converting to float32, which made a 2D U-Net training step twice as slow as float32 on
#: this project's AVX-512 CPU without them (5.3 s against 2.7 s; docs/benchmarks.md).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively (otherwise bf16 autocast is slower than float32): a
    `NATIVE_BF16_FLAGS` flag where the CPU flags can be read, else oneDNN's own answer."""
    try:
        flags = {
            flag
            for line in CPUINFO.read_text().splitlines()
            if line.startswith("flags")
            for flag in line.partition(":")[2].split()
        }
    except OSError:
        flags = set()
    if flags:
        return bool(flags & NATIVE_BF16_FLAGS)
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def auto_precision(device: str) -> str:
    """The fastest safe precision on `device`: bf16 where it is native, fp16 on older GPUs, else fp32."""
    if torch.device(device).type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


@dataclass(frozen=True)
class Precision:
    """The autocast settings of a run: device type and dtype (None = float32, no autocast)."""

    device_type: str
    dtype: torch.dtype | None

    @property
    def name(self) -> str:
        return next(name for name, dtype in DTYPES.items() if dtype == self.dtype)

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self) -> AbstractContextManager:
        """A fresh autocast context for one forward pass."""
        return torch.autocast(
            self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
        )


def resolve_precision(name: str, device: str) -> Precision:
    """`name` (auto, bf16, fp16, fp32) on `device`; auto is `auto_precision`."""
    device_type = torch.device(device).type
    if name == "auto":
        name = auto_precision(device)
    if name not in DTYPES:
        raise ConfigError(f"precision must be one of {', '.join(CHOICES)}, got {name!r}")
    if name == "fp16" and device_type != "cuda":
        raise ConfigError("precision fp16 needs a GPU; use bf16 (or fp32) on the CPU")
    return Precision(device_type, DTYPES[name])
