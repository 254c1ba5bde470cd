"""The bad-input corpus (`corpus.CASES`): each case gives its documented error with a one-line message
naming the file, and a batch ``medseg infer`` over all of them goes on, records every failure, exits
with status 3 and prints no traceback unless ``--debug``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from corpus import CASES, Case, reference_mask
from infer_models import save_threshold_checkpoint

from medseg.data.datasets import read_manifest
from medseg.data.fingerprint import compute_fingerprint
from medseg.errors import MedsegError
from medseg.inference.runner import EXIT_SOME_FAILED
from medseg.io.reader import read_image
from medseg.metrics.cohort import read_labels
from medseg.metrics.evaluate import check_same_grid

IMAGE_CASES = [case for case in CASES if case.role == "image"]


def _slug(case: Case) -> str:
    return re.sub(r"[^a-z0-9]+", "_", case.name.lower()).strip("_")


def _use(case: Case, path: Path) -> None:
    """Read `path` as medseg does for the case's role."""
    if case.role == "image":
        read_image(path)
    elif case.role == "mask":
        check_same_grid(read_labels(path), reference_mask(), path, "reference.nii.gz")
    else:
        compute_fingerprint(read_manifest(path), progress=False)


def test_the_corpus_covers_the_issue():
    assert len(CASES) >= 40
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=_slug)
def test_case_gives_its_error_naming_the_file(case: Case, tmp_path: Path):
    folder = tmp_path / "case"
    path = case.build(folder)
    if case.error is None:
        _use(case, path)  # reads without an error
        return
    with pytest.raises(MedsegError) as raised:
        _use(case, path)
    message = str(raised.value)
    assert type(raised.value) is case.error, message
    assert re.search(case.words, message), message
    assert "\n" not in message
    assert message.startswith(str(folder)), f"the message does not name the file: {message}"


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Every image case and one good series under one folder: (that folder, a model, an output folder)."""
    root = tmp_path_factory.mktemp("corpus")
    for number, case in enumerate(IMAGE_CASES):
        case.build(root / f"{number:02d}_{_slug(case)}")
    from dicom_factory import ct_image, write_series

    write_series(ct_image(seed=7), root / "zz_good_series")
    model = save_threshold_checkpoint(root.parent / "model.pt", 3, [3.0, 3.0, 3.0], [16, 16, 8])
    out = root.parent / "out"
    return root, model, out


def test_a_batch_goes_on_records_every_case_and_exits_3(batch, zygote):
    root, model, out = batch
    args = ["infer", root, "--model", model, "--out", out, "--no-seg", "--no-overlays"]
    status, output = zygote.run(args, out.parent / "batch.log")
    assert status == EXIT_SOME_FAILED, output
    assert "Traceback" not in output and "failed:" in output
    items = json.loads((out / "summary.json").read_text())["items"]
    for number, case in enumerate(IMAGE_CASES):
        prefix = f"{number:02d}_{_slug(case)}"
        mine = [item for item in items if item["input"].split("/")[0] == prefix]
        assert mine, f"{case.name}: not in the summary"
        statuses = {item["status"] for item in mine}  # files left out beside a series are skipped
        assert case.batch in statuses and statuses <= {case.batch, "skipped"}, (case.name, mine)
        for item in mine:
            if item["status"] == "failed" and case.error is not None:
                assert re.search(case.words, item["reason"]), (case.name, item["reason"])
                assert str(root / prefix) in item["reason"], item["reason"]
    good = [item for item in items if item["input"] == "zz_good_series"]
    assert [item["status"] for item in good] == ["done"]


def test_debug_shows_the_traceback_of_a_failed_input(batch, zygote, tmp_path):
    root, model, _ = batch
    broken = next(root.glob("*_bitsallocated_12"))
    args = ["--debug", "infer", broken, "--model", model, "--out", tmp_path, "--no-seg", "--no-overlays"]
    status, output = zygote.run(args, tmp_path / "debug.log")
    assert status == EXIT_SOME_FAILED
    assert "Traceback" in output and "BitsAllocated 12 is not supported" in output
