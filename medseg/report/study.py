"""The second-opinion page of one study: overlays, structures, lesions, metrics and uncertainty.

`write_study_report` is what the inference engine calls; ``medseg report`` calls it per case. The page
shows no patient identifiers: only the title the caller gives, the grid geometry and the findings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path

from medseg.io.image import LabelMap, ScalarImage
from medseg.metrics.cohort import EMPTY_MASK_POLICY
from medseg.metrics.evaluate import DEFAULT_NSD_TOLERANCE_MM, check_same_grid, evaluate_case
from medseg.metrics.units import size_key
from medseg.report.html import figure, number, page, table, text_cell
from medseg.report.overlay import render_overlays, render_uncertainty
from medseg.report.structures import class_names_for, lesion_list, structure_stats
from medseg.utils.atomic import write_text_atomic
from medseg.utils.colours import class_colour

#: Lesions listed per class (largest first); the rest are counted.
MAX_LESIONS_LISTED = 20
#: Metric columns of the study page: (key, heading, decimals).
METRIC_COLUMNS = (
    ("dice", "Dice", 3), ("iou", "IoU", 3), ("precision", "precision", 3), ("sensitivity", "sensitivity", 3),
    ("hd95_mm", "HD95 mm", 2), ("assd_mm", "ASSD mm", 2), ("nsd", "NSD", 3), ("detected", "lesions found", 0),
    ("missed", "missed", 0), ("false", "false", 0), ("lesion_f1", "lesion F1", 3),
)  # fmt: skip


def _unit(mask: LabelMap) -> str:
    return "mL" if size_key(mask) == "volume_ml" else "cm²"


def _centroid(point: list[float] | None) -> str:
    return "-" if point is None else "(" + ", ".join(f"{v:.1f}" for v in point) + ")"


def _swatch(label: int) -> str:
    red, green, blue = class_colour(label)
    return f'<span class="swatch" style="background: rgb({red}, {green}, {blue})"></span>'


def _structures_table(stats: dict, reference_stats: dict | None, mask: LabelMap) -> str:
    key, unit = size_key(mask), _unit(mask)
    header = ["structure", f"AI size ({unit})", "voxels", "lesions", "centroid RAS mm", "largest slice"]
    if reference_stats is not None:
        header += [f"reference ({unit})", f"difference ({unit})"]
    rows = []
    for name, entry in stats.items():
        cells = (
            f'<td class="text" data-class="{escape(name)}">{_swatch(entry["label"])}{escape(name)}</td>'
            + number(entry[key])
            + number(entry["voxels"])
            + number(entry["lesions"])
            + text_cell(_centroid(entry["centroid_ras_mm"]))
            + number(entry["largest_slice"])
        )
        if reference_stats is not None:
            expected = reference_stats[name][key]
            cells += number(expected) + number(entry[key] - expected)
        rows.append(cells)
    return table(header, rows, "structures")


def _lesions_section(mask: LabelMap, stats: dict) -> tuple[str, dict]:
    key, unit = size_key(mask), _unit(mask)
    rows, data = [], {}
    for name, entry in stats.items():
        lesions = lesion_list(mask, entry["label"]) if entry["voxels"] else []
        data[name] = lesions
        for number_, lesion in enumerate(lesions[:MAX_LESIONS_LISTED], start=1):
            cells = text_cell(name) + number(number_) + number(lesion[key]) + number(lesion["voxels"])
            rows.append(cells + text_cell(_centroid(lesion["centroid_ras_mm"])))
        if len(lesions) > MAX_LESIONS_LISTED:
            rows.append(text_cell(f"{name}: {len(lesions) - MAX_LESIONS_LISTED} smaller lesions not listed"))
    header = ["structure", "lesion", f"size ({unit})", "voxels", "centroid RAS mm"]
    return "<h2>Lesions</h2>" + table(header, rows, "lesions"), data


def _metrics_section(metrics: dict, tolerance_mm: float) -> str:
    header = ["structure", *(heading for _, heading, _ in METRIC_COLUMNS), "empty mask"]
    rows = []
    for name, entry in metrics.items():
        cells = f'<td class="text" data-class="{escape(name)}">{escape(name)}</td>'
        cells += "".join(number(entry[key], decimals) for key, _, decimals in METRIC_COLUMNS)
        flag = entry["empty"]
        cells += text_cell(flag, ' data-empty="true"' if flag != "none" else "")
        rows.append(cells)
    policy = f"NSD tolerance {tolerance_mm:g} mm. Empty-mask policy: {EMPTY_MASK_POLICY}."
    heading = "<h2>Agreement with the reference</h2>"
    return f'{heading}{table(header, rows, "metrics")}<p class="note">{escape(policy)}</p>'


def _overlays_section(
    image: ScalarImage,
    mask: LabelMap,
    reference: LabelMap | None,
    names: dict[int, str],
    overlays: list,
    window: tuple[float, float] | None,
    modality: str | None,
) -> str:
    """The overlays; with a reference, one row per slice: AI mask, reference, and their disagreement."""
    note = "AI mask: translucent fill and outline per structure."
    if reference is None:
        figures = [figure(overlay.picture, overlay.caption) for overlay in overlays]
        return f'<h2>Overlays</h2><p class="note">{escape(note)}</p>' + "".join(figures)
    note += " Rows: AI mask, reference, disagreement (missed yellow, added magenta, other class white)."
    slices = None if image.ndim == 2 else [overlay.slice_index for overlay in overlays]
    alone = render_overlays(image, mask, names, None, window, modality, slices)
    references = render_overlays(image, reference, names, None, window, modality, slices)
    rows = [
        '<div class="row">'
        + figure(ai.picture, f"AI mask, {ai.caption}")
        + figure(expected.picture, f"reference, {expected.caption}")
        + figure(both.picture, f"disagreement, {both.caption}")
        + "</div>"
        for ai, expected, both in zip(alone, references, overlays, strict=True)
    ]
    return f'<h2>Overlays</h2><p class="note">{escape(note)}</p>' + "".join(rows)


def write_study_report(
    out_path: str | os.PathLike,
    image: ScalarImage,
    mask: LabelMap,
    class_names: Mapping[int, str],
    *,
    reference: LabelMap | None = None,
    uncertainty: ScalarImage | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    title: str = "Segmentation second opinion",
    window: tuple[float, float] | None = None,
    modality: str | None = None,
    tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
    notes: Sequence[str] = (),
) -> Path:
    """Write one self-contained HTML page for a study and return its path.

    `mask` is the AI segmentation; `reference` an optional reference or clinician mask on the same grid
    (its disagreement is drawn and metrics computed); `uncertainty` an optional per-voxel map (e.g.
    entropy from TTA or an ensemble) on the image grid. `window` (width, level) and `modality` choose
    the display window (see `medseg.report.overlay`). `notes` are shown under the model line and kept in
    the page's data: what the reader must know to trust the figures (how a mask's values were read, an
    input unlike the model's training data). Written atomically.
    """
    if reference is not None:
        check_same_grid(
            mask, reference, mask.meta.get("source", "mask"), reference.meta.get("source", "reference")
        )
    names = class_names_for(mask, class_names)
    if reference is not None:
        names = dict(sorted({**class_names_for(reference, class_names), **names}.items()))
    overlays = render_overlays(image, mask, names, reference, window, modality)
    stats = structure_stats(mask, names)
    reference_stats = structure_stats(reference, names) if reference is not None else None
    model = f"{model_name or 'unnamed model'} (version {model_version or 'unknown'})"
    geometry = (
        f"Image grid {' x '.join(map(str, image.shape))} voxels of "
        f"{' x '.join(f'{s:.3g}' for s in image.spacing)} mm, orientation {image.orientation}."
    )
    body = [f'<p><strong>Model:</strong> {escape(model)}</p><p class="note">{escape(geometry)}</p>']
    body += [f'<p class="warning"><strong>Note:</strong> {escape(note)}</p>' for note in notes]
    body.append(_overlays_section(image, mask, reference, names, overlays, window, modality))
    body.append("<h2>Structures</h2>" + _structures_table(stats, reference_stats, mask))
    lesions_html, lesions = _lesions_section(mask, stats)
    body.append(lesions_html)
    data: dict = {
        "model": {"name": model_name, "version": model_version},
        "structures": stats,
        "lesions": lesions,
        "notes": list(notes),
    }
    if reference is not None:
        data["metrics"] = evaluate_case(mask, reference, names, tolerance_mm)
        body.append(_metrics_section(data["metrics"], tolerance_mm))
    if uncertainty is not None:
        heat = render_uncertainty(image, uncertainty, [o.slice_index for o in overlays], window, modality)
        body.append(
            '<h2>Uncertainty</h2><p class="note">Per-voxel uncertainty over the image, same slices.</p>'
        )
        body += [figure(picture.picture, picture.caption) for picture in heat]
    return write_text_atomic(out_path, page(title, "".join(body), data))
