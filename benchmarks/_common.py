"""Helpers shared by the benchmark scripts: timing, machine description, and result output."""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from medseg.runtime.precision import cpu_has_fast_bf16


def synchronize(device: str | torch.device) -> None:
    """Wait for a GPU's queued kernels, so that a timer stops when the work is done (no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def best_time(function: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Smallest wall time in seconds of `repeats` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    info: dict[str, object] = {
        "date": datetime.date.today().isoformat(),
        "cpu": platform.processor() or _cpu_model(),
        "native_bf16": cpu_has_fast_bf16(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def emit(name: str, rows: list[dict[str, object]], json_out: str | None) -> None:
    """Print `rows` as an aligned table and, if asked, write them with the machine info as JSON."""
    if rows:
        columns = list(rows[0])
        widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
        print("  ".join(c.ljust(widths[c]) for c in columns))
        for row in rows:
            print("  ".join(_fmt(row.get(c)).ljust(widths[c]) for c in columns))
    if json_out:
        Path(json_out).write_text(
            json.dumps({"benchmark": name, "machine": machine(), "rows": rows}, indent=2)
        )


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
