"""Model zoo throughput: forward and forward+backward, fp32 and bf16 autocast, 2D and 3D, per model.

Defaults follow the task sizes: 2D batch 8 at 256², 3D batch 2 at 96³, default (full-size) options.
Baselines in the same run: fp32 is the baseline for bf16 (``bf16_speedup``), and the bare network
(``model.network``, fed an input already at a multiple of its divisor) is the baseline for medseg's
`PadToDivisor` wrapper (``wrapper_overhead``, forward fp32). On a 2-core CPU the full set takes hours:
use ``--models``, ``--dims``, ``--size`` and ``--repeats`` to run a subset.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch
from _common import best_time, emit, synchronize

from medseg.models import create_model, list_models

#: (batch, size per axis) for each dimensionality.
DEFAULT_SHAPES = {2: (8, 256), 3: (2, 96)}
IN_CHANNELS = 1
OUT_CHANNELS = 2


def step(model: torch.nn.Module, x: torch.Tensor, backward: bool, bf16: bool) -> Callable[[], None]:
    """One forward (or forward+backward) pass, under bf16 autocast if asked."""

    def run() -> None:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            if backward:
                outputs = model(x)
                outputs = outputs if isinstance(outputs, tuple) else (outputs,)
                sum(o.float().sum() for o in outputs).backward()
            else:
                with torch.no_grad():
                    model(x)
        synchronize(x.device)

    return run


def measure(
    name: str,
    dims: int,
    batch: int,
    size: int,
    repeats: int,
    device: torch.device,
    precisions: tuple[str, ...] = ("fp32", "bf16"),
) -> dict[str, object]:
    options = {"img_size": size} if name == "unetr" else {}
    model = create_model(name, dims, IN_CHANNELS, OUT_CHANNELS, **options).to(device)
    x = torch.randn(batch, IN_CHANNELS, *(size,) * dims, device=device)
    row: dict[str, object] = {"model": name, "dims": f"{dims}D", "batch": batch, "size": size}
    times = {}
    for backward in (False, True):
        model.train(backward)
        for precision in precisions:
            key = f"{'fwd+bwd' if backward else 'fwd'} {precision}"
            times[key] = best_time(step(model, x, backward, precision == "bf16"), repeats)
            row[f"{key} samples/s"] = batch / times[key]
    if set(precisions) == {"fp32", "bf16"}:
        row["bf16_speedup fwd"] = times["fwd fp32"] / times["fwd bf16"]
        row["bf16_speedup fwd+bwd"] = times["fwd+bwd fp32"] / times["fwd+bwd bf16"]
    if "fwd fp32" in times:
        model.eval()
        padded = torch.randn(batch, IN_CHANNELS, *model.padded_shape(x.shape[2:]), device=device)
        bare = best_time(step(model.network, padded, backward=False, bf16=False), repeats)
        row["wrapper_overhead"] = times["fwd fp32"] / bare
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medseg bench models", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(list_models()), help="comma-separated model names")
    parser.add_argument("--dims", default="2,3", help="comma-separated: 2, 3 or both")
    parser.add_argument("--size", type=int, help="spatial size per axis (default 256 in 2D, 96 in 3D)")
    parser.add_argument("--batch", type=int, help="batch size (default 8 in 2D, 2 in 3D)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (best is kept)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 avoids stalls on shared cores)")
    parser.add_argument(
        "--precisions",
        default="fp32,bf16",
        help="comma-separated: fp32, bf16 or both (bf16 is emulated, and slow, on CPUs without native bf16)",
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for dims in (int(d) for d in args.dims.split(",")):
        batch, size = DEFAULT_SHAPES[dims]
        for name in args.models.split(","):
            row = measure(
                name,
                dims,
                args.batch or batch,
                args.size or size,
                args.repeats,
                device,
                tuple(args.precisions.split(",")),
            )
            rows.append(row)
            print(f"{name} {dims}D done", file=sys.stderr, flush=True)
    print(f"device: {device}, torch threads: {torch.get_num_threads()}")
    emit("models", rows, args.json)
    return 0
