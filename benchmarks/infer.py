"""Sliding-window inference: medseg vs MONAI sliding_window_inference on the same weights and windows.

A small 3D U-Net is first trained with `fit` for ``--train-seconds`` on synthetic CT phantoms
(`medseg.data.phantom`), so the accuracy check runs on meaningful scores. Then, per volume size:

* medseg: `medseg.inference.sliding_window.segment` with its defaults (``auto`` precision: bf16 where the CPU
  runs it natively, else float32; channels-last; float16 slab buffer, argmax slab by slab); with
  ``--compile`` its networks run through `torch.compile`, as ``medseg infer --compile`` does (the
  one-off compile time is printed on its own line, not counted);
* MONAI: ``sliding_window_inference`` in float32 with the same window, overlap, window batch size and
  gaussian blending (other arguments at their defaults), then argmax: the reference for speed and
  agreement;
* MONAI as its defaults leave it (one window per forward pass, constant blending), with the same window
  and overlap: the baseline as the issue words it ("with its defaults"), reported beside the first;
* the compute floor: the network's forward passes alone over the same number of windows, in medseg's
  precision and memory format.

Reported: seconds, medseg's speed-up over MONAI, medseg over the floor, and the argmax agreement with
MONAI's float32 labels (all voxels, and voxels that either calls foreground). Finally the peak RSS of the
whole ``Segmenter.predict`` path (preprocessing, windows, inverse) on a large CT with a many-class model is
measured in a child process, next to the size of the float32 output buffer MONAI would allocate.

With ``--device cuda`` they all run on the GPU (training stays on the CPU): each starts from the CPU
volume and ends with CPU labels, as `medseg infer` does, and MONAI gets its input on the GPU, so it
stitches there too (its default when the input is on the GPU).
"""

from __future__ import annotations

import argparse
import copy
import math
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _common import emit, synchronize
from monai.inferers import sliding_window_inference
from scipy import ndimage

from medseg.checkpoint import ModelConfig, save_checkpoint
from medseg.data.phantom import PhantomConfig, generate_case, write_phantom_dataset
from medseg.data.planner import load_plan
from medseg.data.presets import normalizer
from medseg.inference.sliding_window import WindowSettings, compiled, segment, window_starts
from medseg.runtime.distributed import unwrap
from medseg.runtime.memory_format import channels_last_format
from medseg.runtime.precision import resolve_precision
from medseg.training.config import RunConfig
from medseg.training.trainer import fit

#: CT window (HU) mapped to 0..1 before the network, as a plan's "window" scheme does.
WINDOW_HU = (-200.0, 300.0)
#: Turns a CT in HU into the network's input, as the model's plan says.
Normalise = Callable[[np.ndarray], np.ndarray]
#: Phantom grid the model is trained on and the first benchmark volume is drawn from (about 33 cm across).
PHANTOM = PhantomConfig(shape=(256, 256, 128), spacing=(1.3, 1.3, 2.6))
MODEL = ModelConfig("unet", 3, 1, 5, {"channels": [8, 16, 32, 64], "strides": [2, 2, 2], "num_res_units": 1})
#: Training patches: smaller than the inference window, so a minute of training on 2 cores takes steps.
TRAIN_PATCH = (64, 64, 64)
#: Model used for the memory measurement: as small as possible, so the stitching dominates.
MEMORY_MODEL_CHANNELS = [4, 8]


def parse_size(text: str) -> tuple[int, int, int]:
    values = tuple(int(v) for v in text.lower().split("x"))
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected a size like 256x256x128, got {text!r}")
    return values


def trained_model(seconds: float, patch: tuple[int, int, int]) -> tuple[torch.nn.Module, Normalise]:
    """The benchmark U-Net after `seconds` of `fit` on three phantom cases (one more validates), and the
    intensity normalisation of its plan."""
    with tempfile.TemporaryDirectory() as folder:
        manifest = write_phantom_dataset(Path(folder) / "data", 4, config=PHANTOM)
        config = RunConfig(
            dataset=str(manifest),
            output=str(Path(folder) / "run"),
            model=MODEL.name,
            model_options=MODEL.options,
            patch_size=list(patch),
            batch_size=2,
            epochs=10**6,
            max_time=seconds,
            val_interval=10**6,  # once, at the end
            device="cpu",
            progress=False,
        )
        summary = fit(config)  # logs its steps, time and validation
        plan = load_plan(config.output_dir / "plans.json")
    normalise = normalizer(plan.normalization[0])
    return unwrap(summary["model"]).eval(), lambda hu: np.asarray(normalise(hu.astype(np.float32)))


def test_volume(size: tuple[int, int, int], normalise: Normalise) -> torch.Tensor:
    """An unseen phantom case, resized (linear) to `size`, normalised as the model's plan says, channel
    first."""
    case = generate_case("test", 99, PHANTOM)
    array = normalise(case.image.array)
    if tuple(array.shape) != size:
        array = ndimage.zoom(array, np.divide(size, array.shape), order=1)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]


def window_count(size: tuple[int, ...], roi: tuple[int, ...], overlap: float) -> int:
    return math.prod(len(window_starts(s, r, overlap)) for s, r in zip(size, roi, strict=True))


@torch.no_grad()
def forward_floor(
    model: torch.nn.Module, volume: torch.Tensor, windows: int, settings: WindowSettings
) -> float:
    """Seconds for the network alone over `windows` windows in `settings`' batches, precision and format
    (compiled, with full batches only, when medseg's runs are)."""
    roi, batch_size = settings.roi_size, settings.batch_size
    if settings.compile:
        model = compiled(model, settings.device)
        windows = math.ceil(windows / batch_size) * batch_size
    batch = torch.stack([volume[(slice(None), *(slice(0, r) for r in roi))]] * batch_size)
    if settings.channels_last:
        batch = batch.contiguous(memory_format=channels_last_format(len(roi)))
    batch = batch.to(settings.device)
    precision = resolve_precision(settings.precision, settings.device)
    synchronize(settings.device)
    start = time.perf_counter()
    for first in range(0, windows, batch_size):
        with precision.autocast():
            model(batch[: min(batch_size, windows - first)])
    synchronize(settings.device)
    return time.perf_counter() - start


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def compare(
    model: torch.nn.Module,
    normalise: Normalise,
    size,
    roi,
    overlap: float,
    batch_size: int,
    repeats: int,
    device: str,
    compile: bool,
) -> list[dict[str, object]]:
    volume = test_volume(size, normalise)
    windows = window_count(size, roi, overlap)
    settings = WindowSettings(tuple(roi), overlap, batch_size, device=device, compile=compile)
    model = model.to(device)
    # MONAI gets its own copy in PyTorch's default memory format: `segment` makes medseg's channels-last.
    baseline = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    ours_s = theirs_s = defaults_s = floor_s = float("inf")
    with torch.no_grad():
        # Warm-up: oneDNN or cuDNN kernels and, with --compile, compiling the one batch shape.
        _, warmup_s = timed(lambda: segment([model], volume[:, :64, :64, :64], settings))
        print(f"medseg warm-up (compile {compile}): {warmup_s:.1f} s, once per process", flush=True)
        baseline(volume[None, :, :64, :64, :64].to(device))
        for _ in range(repeats):  # interleaved, best of each: the CPU is shared and its load drifts
            ours, seconds = timed(lambda: segment([model], volume, settings))
            ours_s = min(ours_s, seconds)
            theirs, seconds = timed(
                lambda: (
                    sliding_window_inference(
                        volume[None].to(device), roi, batch_size, baseline, overlap, mode="gaussian"
                    )[0]
                    .argmax(0)
                    .cpu()
                )
            )
            theirs_s = min(theirs_s, seconds)
            _, seconds = timed(
                lambda: (
                    sliding_window_inference(volume[None].to(device), roi, 1, baseline, overlap)[0]
                    .argmax(0)
                    .cpu()
                )
            )
            defaults_s = min(defaults_s, seconds)
            floor_s = min(floor_s, forward_floor(model, volume, windows, settings))
    same = ours.long() == theirs
    foreground = (ours > 0) | (theirs > 0)
    label = "x".join(map(str, size))
    return [
        row(
            label,
            f"medseg segment ({settings.precision}, fp16 slabs, channels-last{', compiled' * compile})",
            windows=windows,
            seconds=ours_s,
            speedup_vs_monai=theirs_s / ours_s,
            speedup_vs_monai_defaults=defaults_s / ours_s,
            vs_floor=ours_s / floor_s,
            agreement=float(same.float().mean()),
            agreement_foreground=float(same[foreground].float().mean()) if foreground.any() else 1.0,
        ),
        row(
            label,
            "MONAI sliding_window_inference (fp32)",
            windows=windows,
            seconds=theirs_s,
            vs_floor=theirs_s / floor_s,
        ),
        row(
            label,
            "MONAI with its defaults (1 window per pass, constant blending, fp32)",
            windows=windows,
            seconds=defaults_s,
            vs_floor=defaults_s / floor_s,
        ),
        row(
            label,
            f"forward passes only ({settings.precision}, channels-last{', compiled' * compile}: the floor)",
            windows=windows,
            seconds=floor_s,
            vs_floor=1.0,
        ),
    ]


#: Columns of every result row (None where a figure does not apply).
COLUMNS = (
    "windows",
    "seconds",
    "speedup_vs_monai",
    "speedup_vs_monai_defaults",
    "vs_floor",
    "agreement",
    "agreement_foreground",
    "peak_rss_mb",
    "monai_buffer_mb",
)


def row(size: str, method: str, **figures: object) -> dict[str, object]:
    return {"size": size, "method": method, **{column: figures.get(column) for column in COLUMNS}}


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM; unlike ru_maxrss it does not inherit the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere: may include the parent


def memory_child(size: tuple[int, int, int], classes: int, roi, overlap: float) -> None:
    """Run in a child process: the whole predict path on a random int16 CT; prints peak RSS in MB."""
    from medseg.inference.segmenter import Segmenter
    from medseg.io.image import ScalarImage

    config = ModelConfig(
        "unet", 3, 1, classes, {"channels": MEMORY_MODEL_CHANNELS, "strides": [2], "num_res_units": 0}
    )
    spacing = [0.8, 0.8, 1.0]
    plan = {
        "dataset": {"name": "memory"},
        "dim": 3,
        "orientation": "RAS",
        "target_spacing": spacing,
        "patch_size": list(roi),
        "batch_size": 2,
        "pool_counts": [1, 1, 1],
        "normalization": [{"modality": "CT", "scheme": "window", "low": WINDOW_HU[0], "high": WINDOW_HU[1]}],
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "memory.pt"
        save_checkpoint(path, config.build(), config, plan, {c: f"class {c}" for c in range(classes)})
        segmenter = Segmenter.load(path, "cpu", overlap=overlap)
    ct = np.random.default_rng(0).integers(-1000, 1000, size, dtype=np.int16)
    image = ScalarImage(ct, np.diag([-spacing[0], -spacing[1], spacing[2], 1.0]))  # DICOM's LPS layout
    baseline = peak_rss_mb()
    start = time.perf_counter()
    segmenter.predict(image)
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    print(f"{peak:.0f} {baseline:.0f} {seconds:.1f}")


def memory_row(size, classes: int, roi, overlap: float) -> dict[str, object]:
    command = [sys.executable, __file__, "--memory-child", "x".join(map(str, size)), str(classes)]
    command += ["--memory-roi", *map(str, roi), "--overlap", str(overlap)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
    peak, baseline, seconds = float(output[-3]), float(output[-2]), float(output[-1])
    voxels = math.prod(size)
    print(f"RSS before predict: {baseline:.0f} MB; MONAI's count map would add {voxels * 4 / 2**20:.0f} MB")
    return row(
        "x".join(map(str, size)),
        f"medseg Segmenter.predict, {classes} classes (peak RSS)",
        seconds=seconds,
        peak_rss_mb=peak,
        monai_buffer_mb=classes * voxels * 4 / 2**20,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medseg bench infer", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda t: [parse_size(s) for s in t.split(",")],
        default=[(256, 256, 128), (512, 512, 300)],
    )
    parser.add_argument("--roi", type=int, nargs=3, default=[96, 96, 96], help="window size")
    parser.add_argument("--overlap", type=float, default=0.25, help="window overlap (MONAI's default)")
    parser.add_argument("--batch-size", type=int, default=4, help="windows per forward pass")
    parser.add_argument("--train-seconds", type=float, default=180.0)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each method (best is kept)")
    parser.add_argument("--memory-size", type=parse_size, default=(512, 512, 600))
    parser.add_argument(
        "--memory-roi", type=int, nargs=3, default=[128, 128, 64], help="window of the memory run"
    )
    parser.add_argument("--memory-classes", type=int, default=15)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--memory-child", nargs=2, metavar=("SIZE", "CLASSES"), help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the methods run")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="medseg (and its floor) with torch.compile, as `infer --compile`",
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    roi = tuple(args.roi)
    if args.memory_child:
        memory_child(
            parse_size(args.memory_child[0]), int(args.memory_child[1]), tuple(args.memory_roi), args.overlap
        )
        return 0

    model, normalise = trained_model(args.train_seconds, TRAIN_PATCH)
    rows = []
    for size in args.sizes:
        rows += compare(
            model,
            normalise,
            size,
            roi,
            args.overlap,
            args.batch_size,
            args.repeats,
            args.device,
            args.compile,
        )
        print(f"{'x'.join(map(str, size))} done", flush=True)
    if not args.no_memory:
        rows.append(memory_row(args.memory_size, args.memory_classes, tuple(args.memory_roi), args.overlap))
    emit("infer", rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
