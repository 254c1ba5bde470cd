"""Training throughput: medseg's loop vs a plain MONAI-tutorial loop, same network, patch and batch size.

The baseline is what the MONAI tutorials write: a `monai.data.Dataset` (no caching) whose transforms
load each case from its files (`LoadImaged`), orient, resample, normalise, pad and crop it every
time it is drawn, a `DataLoader`, and float32 training with `DiceCELoss` and Adam. medseg's loop is
the one `medseg train` runs (`Trainer.train_step`): cases preprocessed once into memory, patches
sampled and augmented from the cache (in `--workers` loader processes), `precision: auto` (bf16
autocast where the GPU or CPU runs it natively, float32 elsewhere: emulated bf16 is several times
slower than float32). Both run the same U-Net with the same number of torch threads; each is timed
over `--steps` iterations after `--warmup` untimed ones, the two loops taking turns `--repeats` times
(the best round of each counts: a shared CPU's load drifts). medseg's one-off caching time is printed
on its own line. With `--device cuda` both loops train on the GPU, and the GPU's mean utilisation over
each timed round is reported beside the rates (read through NVML, as nvidia-smi does).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from _common import emit, synchronize
from monai.data import DataLoader, Dataset
from monai.losses import DiceCELoss
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    NormalizeIntensityd,
    Orientationd,
    RandCropByPosNegLabeld,
    RandFlipd,
    Spacingd,
    SpatialPadd,
)

from medseg.runtime.distributed import Context
from medseg.runtime.precision import resolve_precision
from medseg.training.config import config_from_dict
from medseg.training.experiment import prepare
from medseg.training.patches import EpochLoader, training_dataset
from medseg.training.trainer import Trainer

DEFAULT_DATASET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "msd_hippocampus"
#: The network of both loops: MONAI's UNet as in MONAI's tutorials (16-128, two residual units per level).
NETWORK = {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 2}
KEYS = ("image", "label")


def tutorial_loader(records: list[dict], plan, patch: list[int], batch: int) -> DataLoader:
    """The MONAI-tutorial data path: load and preprocess from the files at every draw."""
    transform = Compose(
        [
            LoadImaged(KEYS),
            EnsureChannelFirstd(KEYS),
            Orientationd(KEYS, axcodes="RAS"),
            Spacingd(KEYS, pixdim=plan.target_spacing, mode=("bilinear", "nearest")),
            NormalizeIntensityd("image"),
            SpatialPadd(KEYS, spatial_size=patch),
            RandCropByPosNegLabeld(KEYS, "label", patch, pos=1, neg=2, num_samples=1),
            *[RandFlipd(KEYS, prob=0.5, spatial_axis=axis) for axis in range(3)],
        ]
    )
    transform.set_random_state(0)
    data = Dataset([{"image": r["image"], "label": r["label"]} for r in records], transform)
    return DataLoader(data, batch_size=batch, shuffle=True, num_workers=0, drop_last=True)


def time_steps(step, batches, warmup: int, steps: int, device: str) -> float:
    """Iterations per second of ``step(batch)`` over `steps` batches after `warmup` untimed ones."""
    iterator = iter(batches)
    for _ in range(warmup):
        step(next(iterator))
    start = time.perf_counter()
    for _ in range(steps):
        step(next(iterator))
    synchronize(device)  # the last steps' kernels count too
    return steps / (time.perf_counter() - start)


@contextmanager
def gpu_utilisation(device: str, period: float = 0.2):
    """Sample the GPU's utilisation (percent) while the block runs; yields the list of samples."""
    samples: list[float] = []
    if not device.startswith("cuda"):
        yield samples
        return
    done = threading.Event()

    def sample() -> None:
        while not done.wait(period):
            try:
                samples.append(float(torch.cuda.utilization()))
            except Exception:  # no NVML (pynvml) here: utilisation is simply not reported
                return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join()


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def endless(loader):
    while True:
        yield from loader


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medseg bench train", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="3D dataset folder or manifest")
    parser.add_argument("--steps", type=int, default=20, help="timed iterations of each loop")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    parser.add_argument("--batch", type=int, default=8, help="patches per batch")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument(
        "--workers", type=int, default=1, help="medseg loader processes (prepare patches in parallel)"
    )
    parser.add_argument("--compile", action="store_true", help="medseg's loop with torch.compile")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both loops run there)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of both loops, taking turns")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        raw = {
            "dataset": str(args.dataset),
            "output": str(Path(scratch) / "run"),
            "model": "unet",
            "model_options": NETWORK,
            "batch_size": args.batch,
            "precision": "auto",  # as `medseg train`: bf16 where the GPU or CPU runs it natively
            "device": args.device,
            "compile": args.compile,
        }
        experiment = prepare(config_from_dict(raw))
    plan, patch, records = experiment.plan, experiment.patch_size, experiment.train_records
    config = experiment.config

    start = time.perf_counter()
    cached = training_dataset(records, plan, patch, config.foreground_fraction, config.augmentation)
    cache_seconds = time.perf_counter() - start
    torch.manual_seed(0)
    trainer = Trainer(experiment, Context(), args.device)
    loader = EpochLoader(cached, args.batch, args.warmup + args.steps, seed=0, num_workers=args.workers)

    torch.manual_seed(0)
    model = experiment.model_config.build().to(args.device)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def tutorial_step(batch: dict) -> None:
        optimizer.zero_grad()
        image, label = batch["image"].to(args.device), batch["label"].to(args.device)
        loss = loss_function(model(image), label)
        loss.backward()
        optimizer.step()

    baseline = endless(tutorial_loader(records, plan, patch, args.batch))
    medseg_rate = baseline_rate = 0.0
    medseg_use: list[float] = []
    baseline_use: list[float] = []
    for round_ in range(args.repeats):
        with gpu_utilisation(args.device) as samples:
            rate = time_steps(trainer.train_step, loader.epoch(round_), args.warmup, args.steps, args.device)
        if rate > medseg_rate:
            medseg_rate, medseg_use = rate, samples
        with gpu_utilisation(args.device) as samples:
            rate = time_steps(tutorial_step, baseline, args.warmup, args.steps, args.device)
        if rate > baseline_rate:
            baseline_rate, baseline_use = rate, samples

    setting = (
        f"{args.device}, unet 16-128, patch {patch}, batch {args.batch}, {args.threads} thread(s), "
        f"{args.workers} worker(s), compile {args.compile}, best of {args.repeats} rounds"
    )
    rows = [
        {
            "loop": f"medseg (cached, {resolve_precision('auto', args.device).name})",
            "it_per_s": medseg_rate,
            "vs_baseline": medseg_rate / baseline_rate,
            "gpu_util_pct": mean(medseg_use),
        },
        {
            "loop": "MONAI tutorial (files, fp32; baseline)",
            "it_per_s": baseline_rate,
            "vs_baseline": 1.0,
            "gpu_util_pct": mean(baseline_use),
        },
    ]
    print(setting)
    emit("train", rows, args.json)
    print(f"medseg caches the {len(records)} training cases once in {cache_seconds:.1f} s (not timed above)")
    print(f"medseg / baseline iterations per second: {medseg_rate / baseline_rate:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
