"""Kill and resume: ``medseg train`` and a batch ``medseg infer`` are killed with SIGKILL at six points
each (the killed process gets no chance to clean up), then run again. After every kill each visible file
is complete; the run that finishes leaves the same outputs as an uninterrupted one (deterministic mode).

Each kill waits for a progress marker (a file in the output folder, or the step counter of the training
progress bar), not for a fixed time. The kills are chained: every run resumes what the killed one left.
The runs are forked from a `Zygote`, so that each does not import torch again.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import PIL.Image
import pydicom
import pytest
import torch
import yaml
from conftest import Zygote
from dicom_factory import ct_image, write_series
from infer_models import THRESHOLD_HU, save_threshold_checkpoint
from train_fixtures import hippocampus_manifest, tiny_config

from medseg.checkpoint import load_checkpoint
from medseg.cli.main import main
from medseg.training.config import config_from_dict
from medseg.training.trainer import fit

#: Longest wait for one progress marker (s).
MARKER_TIMEOUT = 120
#: Training: 3 epochs of 2 steps, validated after each.
EPOCHS, STEPS_PER_EPOCH = 3, 2
#: Batch inference: small CT studies.
STUDIES = 6

Marker = Callable[[str], bool]  # output so far -> kill now?


def kill_at(zygote: Zygote, args: list[str | Path], marker: Marker, log: Path) -> str:
    """Start ``medseg ARGS``, SIGKILL it as soon as `marker` says so (polling every 20 ms), and return
    its output so far. The output is read from its log (progress bars redraw with carriage returns)."""
    pid = zygote.start(args, log)
    try:
        while not marker(log.read_text(errors="replace") if log.exists() else ""):
            if zygote.finished(pid):
                pytest.fail(f"finished before the kill point: {log.read_text()[-2000:]}")
            time.sleep(0.02)
    finally:
        os.kill(pid, signal.SIGKILL)
        status = zygote.wait(pid)
    assert status == -signal.SIGKILL, f"the run ended (status {status}) before the kill landed"
    return log.read_text(errors="replace") if log.exists() else ""


def finish(zygote: Zygote, args: list[str | Path], log: Path) -> None:
    status, output = zygote.run(args, log)
    assert status == 0, output[-3000:]


def assert_every_visible_file_is_complete(folder: Path) -> None:
    """Each file not hidden (temporaries are) reads in full with the library that reads its format."""
    for path in folder.rglob("*"):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        name = path.name
        if name.endswith(".pt"):
            load_checkpoint(path)
        elif name.endswith(".json"):
            json.loads(path.read_text())
        elif name.endswith(".csv"):
            list(csv.reader(path.open()))
        elif name.endswith(".yaml"):
            yaml.safe_load(path.read_text())
        elif name.endswith(".nii.gz"):
            np.asarray(nib.load(path).dataobj)
        elif name.endswith(".png"):
            PIL.Image.open(path).load()
        elif name.endswith(".dcm"):
            assert pydicom.dcmread(path).pixel_array.size
        elif name.endswith(".html"):
            assert path.read_text().rstrip().endswith("</html>"), path


def _exists(path: Path) -> Marker:
    return lambda output: path.exists()


def _step_shown(step: int) -> Marker:
    """The progress bar shows `step` (or later) out of the run's steps."""
    total = EPOCHS * STEPS_PER_EPOCH
    return lambda output: any(int(n) >= step for n in re.findall(rf"(\d+)/{total} \[", output))


def _history_rows(path: Path, rows: int) -> Marker:
    def marker(output: str) -> bool:
        try:
            return len(json.loads(path.read_text())) >= rows
        except (OSError, ValueError):
            return False

    return marker


# ----- training --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def training_config(datasets_dir: Path, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("train")
    manifest = hippocampus_manifest(datasets_dir, root, train=2, val=1)
    return tiny_config(
        manifest,
        root / "reference",
        epochs=EPOCHS,
        steps_per_epoch=STEPS_PER_EPOCH,
        val_interval=1,
        deterministic=True,
        progress=True,
        precision="fp32",
    )


@pytest.fixture(scope="module")
def uninterrupted_training(training_config: dict) -> Path:
    """The reference: the same run without interruption, in this process."""
    fit(config_from_dict(dict(training_config, progress=False)))
    return Path(training_config["output"])


def _run_folder(output: Path) -> Path:
    [folder] = [p.parent for p in output.rglob("config.yaml")]
    return folder


def test_training_killed_six_times_resumes_to_the_uninterrupted_result(
    training_config: dict, uninterrupted_training: Path, zygote: Zygote, tmp_path: Path
):
    output = tmp_path / "killed"
    config = tmp_path / "config.json"
    config.write_text(json.dumps(dict(training_config, output=str(output))))
    reference = _run_folder(uninterrupted_training)
    folder = output / reference.relative_to(uninterrupted_training)
    command = ["train", config, "--resume"]
    kill_points = [
        ("during set-up, before any step", _exists(folder / "plans.json")),
        ("inside the first epoch", _step_shown(1)),
        ("just after the first epoch's checkpoint", _exists(folder / "last.pt")),
        ("inside the second epoch, after resuming", _step_shown(3)),
        ("between the history and the checkpoint of epoch 2", _history_rows(folder / "history.json", 2)),
        ("during the last validation", _step_shown(EPOCHS * STEPS_PER_EPOCH)),
    ]
    for number, (_, marker) in enumerate(kill_points):
        kill_at(zygote, command, marker, tmp_path / f"killed_{number}.log")
        assert_every_visible_file_is_complete(output)
    finish(zygote, command, tmp_path / "finished.log")
    for name in ("best.pt", "last.pt"):
        expected, resumed = load_checkpoint(reference / name), load_checkpoint(folder / name)
        assert expected["state_dict"].keys() == resumed["state_dict"].keys()
        for key, tensor in expected["state_dict"].items():
            assert torch.equal(tensor, resumed["state_dict"][key]), (name, key)
    expected, resumed = (json.loads((f / "history.json").read_text()) for f in (reference, folder))
    drop = {"seconds"}
    assert [{k: v for k, v in row.items() if k not in drop} for row in resumed] == [
        {k: v for k, v in row.items() if k not in drop} for row in expected
    ]
    assert len(resumed) == EPOCHS
    assert not list(folder.rglob(".*.tmp*"))


# ----- batch inference -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def infer_inputs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("infer")
    for number in range(STUDIES):
        image = ct_image(seed=number)
        image.array[4:12, 4:10, 1:5] = THRESHOLD_HU + 200
        write_series(image, root / "in" / f"study_{number}")
    model = save_threshold_checkpoint(root / "model.pt", 3, [1.0, 1.0, 2.5], [16, 16, 8])
    return root / "in", model


@pytest.fixture(scope="module")
def uninterrupted_infer(infer_inputs, tmp_path_factory, one_torch_thread) -> Path:
    studies, model = infer_inputs
    out = tmp_path_factory.mktemp("reference")
    assert main(["infer", str(studies), "--model", str(model), "--out", str(out), "--precision", "fp32"]) == 0
    return out


def _results(out: Path, at_least: int) -> Marker:
    return lambda output: len(list(out.glob("*/result.json"))) >= at_least


def _mid_job(out: Path) -> Marker:
    """A study this run is writing: files newer than the marker's first poll (the run's start) and no
    result.json yet. Files from a run killed earlier are older: this run redoes that study first."""
    began: list[float] = []

    def written_since_start(path: Path) -> bool:
        try:
            return path.stat().st_mtime >= began[0]
        except FileNotFoundError:  # a temporary renamed meanwhile
            return False

    def marker(output: str) -> bool:
        began[:] = began or [time.time()]
        return any(
            folder.is_dir()
            and not (folder / "result.json").exists()
            and any(written_since_start(path) for path in folder.iterdir())
            for folder in out.glob("*")
        )

    return marker


def _all_of(*markers: Marker) -> Marker:
    """Kill when every marker agrees; each is asked at every poll (`_mid_job` notes the run's start)."""

    def marker(output: str) -> bool:
        return all([each(output) for each in markers])

    return marker


def _same_outputs(expected: Path, actual: Path) -> None:
    keys = sorted(p.name for p in expected.iterdir() if p.is_dir())
    assert keys == sorted(p.name for p in actual.iterdir() if p.is_dir())
    for key in keys:
        a, b = expected / key, actual / key
        assert sorted(p.relative_to(a) for p in a.rglob("*")) == sorted(
            p.relative_to(b) for p in b.rglob("*")
        )
        first, second = nib.load(a / "mask.nii.gz"), nib.load(b / "mask.nii.gz")
        assert np.array_equal(np.asarray(first.dataobj), np.asarray(second.dataobj))
        assert np.array_equal(first.affine, second.affine)
        one, two = (json.loads((f / "result.json").read_text()) for f in (a, b))
        assert {**one, "seconds": 0} == {**two, "seconds": 0}
        assert np.array_equal(
            pydicom.dcmread(a / "seg.dcm").pixel_array, pydicom.dcmread(b / "seg.dcm").pixel_array
        )
        for picture in a.glob("overlays/*.png"):
            assert picture.read_bytes() == (b / "overlays" / picture.name).read_bytes()


def test_batch_infer_killed_six_times_resumes_to_the_uninterrupted_result(
    infer_inputs, uninterrupted_infer: Path, zygote: Zygote, tmp_path: Path
):
    studies, model = infer_inputs
    out = tmp_path / "out"
    command = ["infer", studies, "--model", model, "--out", out, "--precision", "fp32"]
    kill_points = [
        ("before the first study is done", _mid_job(out)),
        ("after the first study", _results(out, 1)),
        ("while a study is being written", _mid_job(out)),
        ("after three studies", _results(out, 3)),
        ("while the fifth study is being written", _all_of(_results(out, 4), _mid_job(out))),
        ("inside the last study", _results(out, STUDIES - 1)),
    ]
    for number, (_, marker) in enumerate(kill_points):
        kill_at(zygote, command, marker, tmp_path / f"killed_{number}.log")
        assert_every_visible_file_is_complete(out)
    finish(zygote, command, tmp_path / "finished.log")
    _same_outputs(uninterrupted_infer, out)
    assert not list(out.rglob(".*.tmp*"))
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["counts"]["failed"] == 0
        and summary["counts"]["done"] + summary["counts"]["skipped"] == STUDIES
    )
