"""A CI-sized leak check of batch inference: after a warm-up, segmenting more studies (every output on)
leaves no Python or numpy memory behind. The 200-study RSS profile is `medseg bench reliability`."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

from dicom_factory import ct_image, write_series
from infer_models import THRESHOLD_HU, save_threshold_checkpoint

from medseg.inference.segmenter import Segmenter

WARMUP, MEASURED = 2, 8
#: Studies of 64x64x16 voxels: 128 kB of int16, so leaking any per-study array would show.
SHAPE = (64, 64, 16)
#: Largest memory the measured studies may leave allocated: 64 kB a study (the summary records stay).
ALLOWED_GROWTH_BYTES = MEASURED * 64 * 1024


def _studies(folder: Path, count: int, first_seed: int) -> Path:
    for number in range(count):
        image = ct_image(SHAPE, seed=first_seed + number)
        image.array[10:30, 10:30, 4:10] = THRESHOLD_HU + 200
        write_series(image, folder / f"study_{number}")
    return folder


def test_more_studies_leave_no_memory_behind(tmp_path: Path, one_torch_thread):
    checkpoint = save_threshold_checkpoint(tmp_path / "m.pt", 3, [1.0, 1.0, 2.5], [16, 16, 8])
    segmenter = Segmenter.load(checkpoint, "cpu", precision="fp32")
    warmup = _studies(tmp_path / "warmup", WARMUP, 0)
    measured = _studies(tmp_path / "measured", MEASURED, 100)
    segmenter.run_folder(warmup, tmp_path / "out_warmup")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        summary = segmenter.run_folder(measured, tmp_path / "out")
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert summary["counts"]["done"] == MEASURED
    assert growth < ALLOWED_GROWTH_BYTES, f"{growth / 1024:.0f} kB left after {MEASURED} studies"
