"""Every test file that pydicom, nibabel and pynetdicom install, through ``medseg info`` one by one: each
is read, or refused in one line naming the file; never a traceback, never a hang (the sweep runs in a
child process with a deadline). The files were written by other teams, for their own regression tests:
truncated headers, odd VRs, big-endian, palette colour, Siemens mosaics, MINC, PAR/REC, streamlines...

The outcome counts are printed (``pytest -s``) and recorded in docs/reliability.md."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nibabel
import pydicom
import pynetdicom
from infer_models import save_threshold_checkpoint

#: The folders of outside test files, as installed.
SOURCES = {
    "pydicom": Path(pydicom.__file__).parent / "data" / "test_files",
    "nibabel": Path(nibabel.__file__).parent / "tests" / "data",
    "nibabel.nicom": Path(nibabel.__file__).parent / "nicom" / "tests" / "data",
    "pynetdicom": Path(pynetdicom.__file__).parent / "tests" / "dicom_files",
}
# highdicom's wheel installs no test files (its tests read pydicom's), so it adds none here.
#: Every file of the corpus must be answered within this many seconds in all (about 0.1 s each here).
DEADLINE_S = 600
#: The sweep: one process imports medseg once and runs ``medseg info`` on each file, catching nothing
#: that medseg would not catch itself: an exception escaping ``main`` is a traceback the user would see.
SWEEP = r"""
import contextlib, io, json, sys, traceback
from medseg.cli.main import configure_logging, main
configure_logging(debug=False)  # the log handler writes to the process's own stderr, as for a user
results = []
for path in sys.argv[1:]:
    err, out = io.StringIO(), io.StringIO()
    record = {"path": path}
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            record["status"] = main(["info", path])
    except SystemExit as stop:
        record["status"] = stop.code
    except BaseException:
        record["traceback"] = traceback.format_exc().splitlines()[-1]
    record["stderr"] = [line for line in err.getvalue().splitlines() if line.strip()]
    results.append(record)
print(json.dumps(results))
"""


def corpus() -> list[Path]:
    files = [path for folder in SOURCES.values() for path in sorted(folder.iterdir()) if path.is_file()]
    return [path for path in files if path.suffix not in (".py", ".pyc")]


def test_every_outside_file_is_read_or_refused_in_one_line():
    files = corpus()
    assert len(files) > 150
    done = subprocess.run(
        [sys.executable, "-c", SWEEP, *map(str, files)], capture_output=True, text=True, timeout=DEADLINE_S
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]  # nor logged by a library (pydicom's decoders)
    results = json.loads(done.stdout.splitlines()[-1])
    tracebacks = [f"{r['path']}: {r['traceback']}" for r in results if "traceback" in r]
    assert tracebacks == []
    outcomes = Counter()
    for record in results:
        if record["status"] == 0:
            outcomes["read"] += 1
            continue
        assert record["status"] == 2, record
        [line] = record["stderr"]  # one line, naming the file
        assert line.startswith(f"medseg info: error: {record['path']}: "), line
        outcomes["refused"] += 1
    print(f"\n{len(results)} outside files: {dict(outcomes)}")
    assert outcomes["read"] >= 20 and outcomes["refused"] >= 100  # most are other formats or non-images


def test_infer_over_the_whole_corpus_finishes_with_a_reason_for_every_file(tmp_path):
    """One batch over every outside file (flattened into one folder, as a careless export would be):
    it ends, prints no traceback, and summary.json gives every file an outcome and a one-line reason."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for source, path in ((s, p) for s, f in SOURCES.items() for p in sorted(f.iterdir()) if p.is_file()):
        if path.suffix not in (".py", ".pyc"):
            shutil.copy(path, folder / f"{source}__{path.name}")
    model = save_threshold_checkpoint(tmp_path / "m.pt", 3, [1.0, 1.0, 1.0], [16, 16, 16])
    argv = ["infer", str(folder), "-m", str(model), "-o", str(tmp_path / "out"), "--no-overlays", "--no-seg"]
    done = subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", *argv], capture_output=True, text=True, timeout=DEADLINE_S
    )
    assert done.returncode in (0, 3), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    items = json.loads((tmp_path / "out" / "summary.json").read_text())["items"]
    outcomes = Counter(item["status"] for item in items)
    assert len(items) > 150  # files of one series make one input
    for item in items:
        assert item["status"] == "done" or "\n" not in item["reason"], item
    print(f"\ninfer over {len(items)} inputs: {dict(outcomes)}")
