"""Load: batch inference over many small DICOM studies (default 200) with flat memory, measured.

Synthetic CT phantoms (`medseg.data.phantom`, scaled down) are written as DICOM series, each with its
own study, then one `Segmenter.run_folder` call segments them all with every output on (mask,
DICOM SEG, overlays, HTML report, result.json), as ``medseg infer`` does. The model is a small U-Net with
random weights: memory and time depend on its size and the grid, not on what it learnt. A thread samples
the process's resident memory (RSS) every 0.2 s beside the number of studies finished. Reported: RSS
after every tenth of the run, and the growth from the end of the warm-up (the first 10%) to the end,
in total and per 100 studies. A leak shows as steady growth; a flat run holds within a few MB.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import torch
from _common import emit

from medseg.checkpoint import ModelConfig, save_checkpoint
from medseg.data.phantom import PhantomConfig, generate_case
from medseg.inference.segmenter import Segmenter
from medseg.io.dicom.writer import SeriesIdentity, write_dicom_series

#: Bytes per page of /proc/self/statm.
PAGE_BYTES = 4096
#: Seconds between two memory samples.
SAMPLE_SECONDS = 0.2
#: Share of the studies counted as warm-up (caches, allocator pools, lazy imports fill up).
WARMUP_SHARE = 0.1


def rss_mb() -> float:
    """Resident memory of this process in MB."""
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * PAGE_BYTES / 1e6


def write_studies(folder: Path, count: int, shape: tuple[int, int, int]) -> None:
    """`count` phantom CTs on a `shape` grid, one DICOM study each."""
    config = PhantomConfig(shape=shape)
    for number in range(count):
        case = generate_case(f"case_{number:04d}", seed=number, config=config)
        identity = SeriesIdentity(patient_id=f"LOAD-{number:04d}")
        write_dicom_series(case.image, folder / f"study_{number:04d}", "CT", identity)


def write_model(path: Path, patch: list[int], spacing: tuple[float, float, float]) -> Path:
    """A small random-weight 3D U-Net checkpoint with a CT plan on the studies' own `spacing`."""
    config = ModelConfig("unet", 3, 1, 4, {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1})
    plan = {
        "dataset": {"name": "load", "labels": {"0": "background", "1": "a", "2": "b", "3": "c"}},
        "dim": 3,
        "orientation": "RAS",
        "target_spacing": list(spacing),
        "patch_size": patch,
        "batch_size": 2,
        "pool_counts": [2, 2, 2],
        "normalization": [{"modality": "CT", "scheme": "window", "low": -200.0, "high": 300.0}],
    }
    names = {0: "background", 1: "a", 2: "b", 3: "c"}
    return save_checkpoint(path, config.build(), config, plan, names)


class MemorySampler(threading.Thread):
    """Samples (seconds, studies finished, RSS MB) until stopped."""

    def __init__(self, out: Path) -> None:
        super().__init__(daemon=True)
        self.out, self.samples, self.stopped = out, [], threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        while not self.stopped.wait(SAMPLE_SECONDS):
            done = sum(1 for _ in self.out.glob("*/result.json"))
            self.samples.append((time.perf_counter() - start, done, rss_mb()))


def profile(samples: list[tuple[float, int, float]], studies: int) -> list[dict[str, object]]:
    """RSS when each tenth of the studies was finished."""
    rows = []
    for tenth in range(1, 11):
        target = round(studies * tenth / 10)
        reached = [s for s in samples if s[1] >= target]
        if reached:
            seconds, done, rss = reached[0]
            rows.append({"studies_done": done, "seconds": round(seconds, 1), "rss_mb": round(rss, 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medseg bench reliability", description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=200, help="number of studies (default 200)")
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 64, 24], help="voxels per study")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="medseg-bench-load-") as temporary:
        root = Path(temporary)
        write_studies(root / "in", args.studies, tuple(args.shape))
        model = write_model(root / "model.pt", [32, 32, 16], PhantomConfig().spacing)
        segmenter = Segmenter.load(model, "cpu", precision="fp32")
        sampler = MemorySampler(root / "out")
        before = rss_mb()
        sampler.start()
        start = time.perf_counter()
        summary = segmenter.run_folder(root / "in", root / "out")
        seconds = time.perf_counter() - start
        sampler.stopped.set()
        sampler.join()

    rows = profile(sampler.samples, args.studies)
    emit("reliability", rows, None)
    warm = next(s for s in sampler.samples if s[1] >= max(1, round(args.studies * WARMUP_SHARE)))
    end = sampler.samples[-1]
    growth = end[2] - warm[2]
    per_100 = growth / max(1, end[1] - warm[1]) * 100
    peak = max(s[2] for s in sampler.samples)
    result = {
        "studies": args.studies,
        "done": summary["counts"]["done"],
        "failed": summary["counts"]["failed"],
        "seconds": round(seconds, 1),
        "seconds_per_study": round(seconds / args.studies, 3),
        "rss_before_mb": round(before, 1),
        "rss_after_warmup_mb": round(warm[2], 1),
        "rss_end_mb": round(end[2], 1),
        "rss_peak_mb": round(peak, 1),
        "growth_after_warmup_mb": round(growth, 1),
        "growth_per_100_studies_mb": round(per_100, 2),
    }
    emit("reliability", [result], args.json)
    if args.json:  # the profile too, beside the summary
        data = json.loads(Path(args.json).read_text())
        data["profile"] = rows
        Path(args.json).write_text(json.dumps(data, indent=2))
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
