"""Write an evaluation: JSON (everything), CSV per case and class, CSV summary, and a terminal table."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from medseg.metrics.aggregate import CLASS_MEAN
from medseg.utils.atomic import write_text_atomic

#: File names written into the output folder.
JSON_NAME, CASES_CSV, SUMMARY_CSV = "metrics.json", "metrics_per_case.csv", "metrics_summary.csv"
#: Columns of the terminal table: (metric key, heading, decimals).
TABLE_COLUMNS = (
    ("dice", "Dice", 3),
    ("hd95_mm", "HD95 mm", 2),
    ("nsd", "NSD", 3),
    ("lesion_f1", "lesion F1", 3),
)
#: Statistics columns of the summary CSV.
STATISTICS = ("mean", "median", "std", "ci95_low", "ci95_high", "n")


def _csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def per_case_rows(result: dict) -> tuple[list[str], list[list]]:
    """Header and rows (one per case and class) of the per-case CSV."""
    first = next(iter(next(iter(result["cases"].values())).values()))
    keys = list(first)
    rows = [
        [case, name, *(entry[key] for key in keys)]
        for case, per_class in result["cases"].items()
        for name, entry in per_class.items()
    ]
    return ["case", "class", *keys], rows


def summary_rows(result: dict) -> tuple[list[str], list[list]]:
    """Header and rows (one per class and metric) of the summary CSV."""
    rows = []
    for name, metrics in result["summary"].items():
        for key, stats in metrics.items():
            if key != "empty":
                rows.append([name, key, *(stats.get(stat, "") for stat in STATISTICS)])
    return ["class", "metric", *STATISTICS], rows


def write_outputs(result: dict, out_dir: str | os.PathLike) -> list[Path]:
    """Write `JSON_NAME`, `CASES_CSV` and `SUMMARY_CSV` into `out_dir` atomically; return their paths."""
    out_dir = Path(out_dir)
    text = json.dumps(result, indent=1, allow_nan=False)
    return [
        write_text_atomic(out_dir / JSON_NAME, text + "\n"),
        write_text_atomic(out_dir / CASES_CSV, _csv_text(*per_case_rows(result))),
        write_text_atomic(out_dir / SUMMARY_CSV, _csv_text(*summary_rows(result))),
    ]


def format_statistics(stats: dict, decimals: int) -> str:
    """``mean ±std [ci95_low, ci95_high]`` (just the mean where only the mean is known)."""
    if "ci95_low" not in stats:
        return f"{stats['mean']:.{decimals}f}"
    return (
        f"{stats['mean']:.{decimals}f} ±{stats['std']:.{decimals}f} "
        f"[{stats['ci95_low']:.{decimals}f}, {stats['ci95_high']:.{decimals}f}]"
    )


def format_table(result: dict) -> str:
    """A plain-text table: per class mean ±std [95% CI] of the main metrics and the empty-mask counts."""
    header = ["class", *(heading for _, heading, _ in TABLE_COLUMNS), "n", "empty both/pred/ref"]
    rows = []
    for name, metrics in result["summary"].items():
        cells = [format_statistics(metrics[key], decimals) for key, _, decimals in TABLE_COLUMNS]
        n = metrics["dice"].get("n", "")
        empty = metrics.get("empty")
        counts = "/".join(str(empty[kind]) for kind in ("both", "prediction", "reference")) if empty else ""
        rows.append([name, *cells, str(n), counts])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    cases = len(result["cases"])
    return "\n".join(
        [*lines, f"{cases} case(s); mean ±std [bootstrap 95% CI]; '{CLASS_MEAN}' averages the classes"]
    )
