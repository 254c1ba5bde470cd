"""The cohort page: summary table, box plots per class, and every case, worst first, linked to its page."""

from __future__ import annotations

import os
from collections.abc import Mapping
from html import escape
from pathlib import Path

import numpy as np

from medseg.metrics.aggregate import CLASS_MEAN
from medseg.metrics.outputs import format_statistics
from medseg.report.boxplot import box_plot_svg
from medseg.report.html import number, page, table, text_cell
from medseg.utils.atomic import write_text_atomic

#: Summary columns: (metric key, heading, decimals).
SUMMARY_COLUMNS = (
    ("dice", "Dice", 3), ("iou", "IoU", 3), ("hd95_mm", "HD95 mm", 2), ("assd_mm", "ASSD mm", 2),
    ("nsd", "NSD", 3), ("lesion_f1", "lesion F1", 3),
)  # fmt: skip
#: Metrics drawn as box plots, one plot per metric with one box per class.
BOX_PLOTS = (
    ("dice", "Dice per class", "Dice"),
    ("hd95_mm", "HD95 per class", "mm"),
    ("nsd", "NSD per class", "NSD"),
)


def _summary_cell(stats: Mapping[str, float] | None, decimals: int) -> str:
    if stats is None:
        return number(None)
    return f'<td data-value="{stats["mean"]!r}">{escape(format_statistics(stats, decimals))}</td>'


def _summary_table(summary: Mapping[str, Mapping]) -> str:
    header = ["class", *(heading for _, heading, _ in SUMMARY_COLUMNS), "cases", "empty both/pred/ref"]
    rows = []
    for name, metrics in summary.items():
        cells = f'<td class="text" data-class="{escape(name)}">{escape(name)}</td>'
        cells += "".join(_summary_cell(metrics.get(key), decimals) for key, _, decimals in SUMMARY_COLUMNS)
        cells += number(metrics["dice"].get("n"))
        empty = metrics.get("empty")
        counts = "/".join(str(empty[k]) for k in ("both", "prediction", "reference")) if empty else ""
        rows.append(cells + text_cell(counts))
    return table(header, rows, "summary")


def _cases_table(cases: Mapping[str, Mapping], links: Mapping[str, str]) -> str:
    """Every case, lowest mean Dice over classes first, with per-class Dice and the empty flags."""
    classes = list(next(iter(cases.values())))
    mean_dice = {case: float(np.mean([e["dice"] for e in per.values()])) for case, per in cases.items()}
    header = ["case", "mean Dice", *(f"Dice {name}" for name in classes), "empty masks"]
    rows = []
    for case in sorted(cases, key=lambda c: (mean_dice[c], c)):
        href = links.get(case)
        label = f'<a href="{escape(href)}">{escape(case)}</a>' if href else escape(case)
        cells = f'<td class="text" data-case="{escape(case)}">{label}</td>' + number(mean_dice[case])
        cells += "".join(number(cases[case][name]["dice"]) for name in classes)
        flags = [
            f"{name}: {entry['empty']}" for name, entry in cases[case].items() if entry["empty"] != "none"
        ]
        rows.append(cells + text_cell("; ".join(flags)))
    return table(header, rows, "cases")


def write_cohort_report(
    out_path: str | os.PathLike,
    result: Mapping,
    study_pages: Mapping[str, str] | None = None,
    title: str = "Cohort evaluation",
) -> Path:
    """Write the cohort page of an evaluation (`medseg.metrics.cohort.evaluate_cohort`'s result).

    `study_pages` maps case names to the (relative) addresses of their study pages.
    """
    summary, cases = result["summary"], result["cases"]
    classes = [name for name in summary if name != CLASS_MEAN]
    plots = [
        box_plot_svg({name: [cases[c][name][key] for c in cases] for name in classes}, plot_title, unit)
        for key, plot_title, unit in BOX_PLOTS
    ]
    settings = result.get("settings", {})
    body = [
        f'<p class="note">{len(cases)} case(s). Case-averaged: mean ±std [bootstrap 95% interval of the '
        "mean, "
        f"{escape(str(settings.get('bootstrap_samples', '')))} resamples, seed "
        f"{escape(str(settings.get('seed', '')))}]. NSD tolerance "
        f"{escape(str(settings.get('nsd_tolerance_mm', '')))} mm.</p>",
        "<h2>Summary</h2>",
        _summary_table(summary),
        f'<p class="note">Empty-mask policy: {escape(result.get("empty_mask_policy", ""))}.</p>',
        "<h2>Distribution per class</h2>",
        "".join(f'<div class="plot">{svg}</div>' for svg in plots),
        "<h2>Cases, worst first</h2>",
        _cases_table(cases, study_pages or {}),
    ]
    data = {
        key: result[key] for key in ("settings", "empty_mask_policy", "summary", "cases") if key in result
    }
    return write_text_atomic(out_path, page(title, "".join(body), data))
