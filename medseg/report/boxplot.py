"""Box plots as inline SVG (no plotting library): one box per group, Tukey whiskers, outliers as dots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

import numpy as np

#: Plot geometry in SVG user units (pixels).
BOX_WIDTH, GAP, HEIGHT, MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP = 36, 24, 220, 56, 70, 24
#: Whiskers reach the furthest value within this many inter-quartile ranges of the box.
WHISKER_IQR = 1.5
#: Horizontal grid lines.
TICKS = 5


def box_statistics(values: Sequence[float]) -> dict[str, float | list[float]]:
    """Quartiles, Tukey whisker ends and the outliers beyond them."""
    array = np.asarray(values, dtype=np.float64)
    q1, median, q3 = np.percentile(array, [25, 50, 75])
    reach = WHISKER_IQR * (q3 - q1)
    inside = array[(array >= q1 - reach) & (array <= q3 + reach)]
    return {
        "q1": float(q1),
        "median": float(median),
        "q3": float(q3),
        "low": float(inside.min()),
        "high": float(inside.max()),
        "outliers": sorted(float(v) for v in array[(array < q1 - reach) | (array > q3 + reach)]),
    }


def box_plot_svg(groups: Mapping[str, Sequence[float]], title: str, y_label: str) -> str:
    """An SVG element with one box per group (label below it), y axis from the data range."""
    stats = {name: box_statistics(values) for name, values in groups.items() if len(values)}
    every = [v for values in groups.values() for v in values]
    low, high = (min(every), max(every)) if every else (0.0, 1.0)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5

    def y(value: float) -> float:
        return MARGIN_TOP + (high - value) / (high - low) * HEIGHT

    width = MARGIN_LEFT + len(stats) * (BOX_WIDTH + GAP) + GAP
    total_height = MARGIN_TOP + HEIGHT + MARGIN_BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_height}"'
        f' role="img" aria-label="{escape(title)}" font-family="sans-serif" font-size="11">',
        f'<text x="{MARGIN_LEFT}" y="14" font-weight="bold">{escape(title)}</text>',
        f'<text x="12" y="{MARGIN_TOP + HEIGHT / 2}" transform="rotate(-90 12 {MARGIN_TOP + HEIGHT / 2})"'
        f' text-anchor="middle">{escape(y_label)}</text>',
    ]
    for tick in np.linspace(low, high, TICKS):
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{width}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#ddd"/>'
            f'<text x="{MARGIN_LEFT - 4}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.3g}</text>'
        )
    for index, (name, box) in enumerate(stats.items()):
        left = MARGIN_LEFT + GAP + index * (BOX_WIDTH + GAP)
        centre, median = left + BOX_WIDTH / 2, y(box["median"])
        parts.append(
            f'<g class="box" data-group="{escape(name)}" data-median="{box["median"]:.6g}">'
            f'<line x1="{centre}" x2="{centre}" y1="{y(box["high"]):.1f}" y2="{y(box["low"]):.1f}"'
            f' stroke="#333"/><rect x="{left}" y="{y(box["q3"]):.1f}" width="{BOX_WIDTH}"'
            f' height="{max(y(box["q1"]) - y(box["q3"]), 1):.1f}" fill="#9ecae1" stroke="#333"/>'
            f'<line x1="{left}" x2="{left + BOX_WIDTH}" y1="{median:.1f}" y2="{median:.1f}"'
            f' stroke="#000" stroke-width="2"/>'
        )
        parts.extend(
            f'<circle cx="{centre}" cy="{y(v):.1f}" r="2.5" fill="none" stroke="#c00"/>'
            for v in box["outliers"]
        )
        label_y = MARGIN_TOP + HEIGHT + 12
        parts.append(
            f'<text x="{centre}" y="{label_y}" text-anchor="end" transform="rotate(-35 {centre} {label_y})">'
            f"{escape(name)}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)
