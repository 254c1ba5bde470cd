"""Class display colours, one per class value: the overlays, the report, the SEG's recommended display
colours and the RTSTRUCT's ROI colours all take them from here, so a viewer shows what the report shows."""

from __future__ import annotations

import colorsys

#: Class colours (label 1 gets the first); distinct hues, none of them a disagreement colour.
PALETTE = [
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (210, 245, 60), (0, 128, 128), (170, 110, 40), (128, 0, 0), (170, 255, 195), (128, 128, 0),
    (0, 0, 128), (250, 190, 212), (220, 190, 255), (255, 215, 180),
]  # fmt: skip
#: Hue step for classes beyond the palette: successive hues never repeat and stay far apart.
GOLDEN_RATIO_CONJUGATE = 0.618033988749895


def class_colour(label: int) -> tuple[int, int, int]:
    """The display colour of class `label`: `PALETTE`, then hues spaced by the golden angle."""
    if 1 <= label <= len(PALETTE):
        return PALETTE[label - 1]
    hue = (label * GOLDEN_RATIO_CONJUGATE) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.7, 0.95)
    return round(red * 255), round(green * 255), round(blue * 255)
