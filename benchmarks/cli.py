"""Command-line start-up: `medseg --help`, `medseg COMMAND --help` and `medseg info` on a NIfTI, timed.

Each command runs as a fresh process (``python -m medseg.cli.main ...``), best of ``--repeats`` after a
warm-up. Baselines in the same run: the interpreter alone (``python -c pass``, the floor) and importing
torch and MONAI (what a parser that imports its command modules' dependencies pays before printing
anything). Target: every row under 1 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from _common import emit

#: A small NIfTI of the shared data for `medseg info`.
NIFTI = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "msd_hippocampus" / "imagesTr"
HELP_COMMANDS = ("infer", "train", "evaluate", "report", "pacs", "plan", "info")


def seconds(command: list[str], repeats: int) -> float:
    """Best wall time of `command` over `repeats` runs after one warm-up."""
    subprocess.run(command, check=True, capture_output=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medseg bench cli", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    python, medseg = sys.executable, [sys.executable, "-m", "medseg.cli.main"]
    floor = seconds([python, "-c", "pass"], args.repeats)
    cases = {"medseg --help": [*medseg, "--help"]}
    cases.update({f"medseg {name} --help": [*medseg, name, "--help"] for name in HELP_COMMANDS})
    cases["medseg info CASE.nii.gz"] = [*medseg, "info", str(min(NIFTI.glob("*.nii.gz")))]
    cases["baseline: import torch, monai"] = [python, "-c", "import torch, monai"]
    rows = []
    for label, command in cases.items():
        took = seconds(command, args.repeats)
        rows.append({"command": label, "seconds": round(took, 3), "over_interpreter": round(took / floor, 1)})
    rows.insert(
        0, {"command": "baseline: python -c pass", "seconds": round(floor, 3), "over_interpreter": 1.0}
    )
    emit("cli", rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
