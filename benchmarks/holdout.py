"""Held-out Dice of a trained fold through the product path: `medseg infer` on the fold's validation
images (with and without mirroring TTA; with `--tta-zooms` both also zoom), then `medseg evaluate`
against their reference labels.

The run folder is what `medseg train` wrote (best.pt, config.yaml); the validation cases are the fold's
entry in the splits.json beside it; several run folders of the same fold run as one ensemble. Training's
own validation Dice is computed on the resampled grid; this one is on each image's own grid, as a user
would see it.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import yaml
from _common import emit

from medseg.cli.main import main as medseg
from medseg.data.datasets import Dataset, open_dataset
from medseg.data.planner import load_plan
from medseg.io.image import LabelMap
from medseg.io.png import binarize_mask
from medseg.io.reader import read_image
from medseg.io.volume import write_volume


def validation_cases(run: Path) -> tuple[Dataset, list[dict]]:
    """The run's dataset and the cases of its validation fold."""
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    splits_file = Path(config.get("splits") or run.parent / "splits.json")
    fold = config.get("fold", 0)
    if not isinstance(fold, int):
        raise SystemExit(f"{run}: trained on fold {fold!r}, which has no validation cases")
    ids = set(json.loads(splits_file.read_text(encoding="utf-8"))[fold]["val"])
    dataset = open_dataset(config["dataset"])
    cases = [case for case in dataset.cases if case["id"] in ids]
    if len(cases) != len(ids):
        raise SystemExit(f"{splits_file}: {len(ids) - len(cases)} validation cases are not in the dataset")
    return dataset, cases


def reference_file(case: dict, folder: Path) -> Path:
    """The case's label file as training reads it: binarised into `folder` first where the dataset sets a
    threshold, else the file itself (evaluation, like training, binarises 8-bit pictures of masks)."""
    label = Path(case["label"]).resolve()
    if case.get("mask_threshold") is None:
        return label
    mask = binarize_mask(read_image(label, LabelMap), float(case["mask_threshold"]))
    folder.mkdir(parents=True, exist_ok=True)
    return write_volume(mask, folder / f"{case['id']}.nii.gz")


def infer_and_evaluate(
    runs: list[Path],
    dataset: Dataset,
    cases: list[dict],
    references: list[Path],
    work: Path,
    extra: list[str],
) -> dict:
    """Run `medseg infer` on the cases' images and `medseg evaluate` of the masks against `references`
    (one per case); the metrics summary."""
    inputs = work / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    for case in cases:
        link = inputs / Path(case["image"]).name
        if not link.exists():
            link.symlink_to(Path(case["image"]).resolve())
    out = work / "masks"
    models = [str(run / "best.pt") for run in runs]
    if medseg(["infer", str(inputs), "--model", *models, "--out", str(out), "--no-seg",
               "--no-overlays", "--no-uncertainty", *extra]) != 0:  # fmt: skip
        raise SystemExit(f"medseg infer failed; see {out / 'summary.json'}")
    records = json.loads((out / "summary.json").read_text(encoding="utf-8"))["items"]
    by_input = {Path(r["input"]).name: out / r["output"] / "mask.nii.gz" for r in records}
    manifest = work / "pairs.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "prediction", "reference"])
        for case, reference in zip(cases, references, strict=True):
            writer.writerow([case["id"], by_input[Path(case["image"]).name], reference])
    metrics = work / "metrics"
    labels = work / "labels.json"
    names = load_plan(runs[0] / "plans.json").label_names  # the classes the model outputs
    labels.write_text(json.dumps({str(value): name for value, name in names.items()}))
    if medseg(["evaluate", "--manifest", str(manifest), "--out", str(metrics), "--labels", str(labels)]) != 0:
        raise SystemExit("medseg evaluate failed")
    return json.loads((metrics / "metrics.json").read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medseg bench holdout", description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs",
        type=Path,
        nargs="+",
        help="run folder(s) written by `medseg train` (fold_N/); several: an ensemble",
    )
    parser.add_argument("--device", default="auto", help="inference device (default: auto)")
    parser.add_argument("--roi", type=int, nargs="+", help="inference window (default: the plan's patch)")
    parser.add_argument(
        "--tta-zooms",
        type=float,
        nargs="+",
        metavar="FACTOR",
        help="test-time zooms of every row (medseg infer)",
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    window = ["--roi", *map(str, args.roi)] if args.roi else []
    if args.tta_zooms:
        window += ["--tta-zooms", *map(str, args.tta_zooms)]

    dataset, cases = validation_cases(args.runs[0])
    for run in args.runs[1:]:
        if [case["id"] for case in validation_cases(run)[1]] != [case["id"] for case in cases]:
            raise SystemExit(f"{run}: another validation fold than {args.runs[0]}")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        references = [reference_file(case, Path(scratch) / "references") for case in cases]
        for tta in (False, True):
            extra = ["--device", args.device, *window, *(["--tta"] if tta else [])]
            work = Path(scratch) / f"tta{int(tta)}"
            summary = infer_and_evaluate(args.runs, dataset, cases, references, work, extra)["summary"]
            dice = {name: scores["dice"]["mean"] for name, scores in summary.items()}
            rows.append({"tta": tta, "zooms": args.tta_zooms or [], **dice})
    print(f"{' + '.join(map(str, args.runs))}: {len(cases)} held-out validation cases")
    emit("holdout", rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
