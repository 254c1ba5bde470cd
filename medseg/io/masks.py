"""What the values of a clinician's mask file mean: labels as they are, or an 8-bit picture of a mask.

Label maps hold class values 0, 1, 2... and are read as they are. Masks drawn in image editors are 8-bit
pictures: foreground 255 on background 0 (in 2D or 3D), and, in 2D pictures after resizing or JPEG, grey
values along the edges (anti-aliased). Read as labels those would be 256 "classes" (or class 255, which a
model's class 1 never matches). `interpret_mask` recognises both from the values themselves and
binarises them, returning a note that says what was done, so that the caller can show it; it never
guesses otherwise. An explicit threshold is the user's instruction and wins, except where it would empty
a mask that holds labels (a 0/1 mask at threshold 127): that mask is read as it is, and the note says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medseg.io.image import LabelMap

#: The foreground value of an 8-bit picture of a mask.
PICTURE_FOREGROUND = 255
#: Threshold of an anti-aliased mask: the middle of 0..255 (label 1 where value > 127).
PICTURE_THRESHOLD = 127
#: In an anti-aliased picture most foreground pixels are exactly 255, the grey ones only line the edges
#: (98% in the shared chest X-ray masks, 85% after a 1.5-pixel blur); a label map with a value 255 beside
#: its classes has most of its foreground in the classes. At least this share of the non-zero pixels at
#: 255 makes a 2D mask an anti-aliased picture.
PICTURE_FOREGROUND_SHARE = 0.75


@dataclass(frozen=True)
class MaskReading:
    """A mask as labels, and how its file's values were read (None: as they are)."""

    labels: LabelMap
    note: str | None = None
    #: What was done, for counting: None (values as they are), "thresholded", "threshold_not_applied",
    #: "0/255" or "anti-aliased".
    kind: str | None = None


def interpret_mask(mask: LabelMap, threshold: float | None = None) -> MaskReading:
    """`mask` as labels: binarised at `threshold` when one is given, binarised when its values are those of
    an 8-bit picture of a mask (0/255, or anti-aliased), else unchanged."""
    values = mask.array
    present = np.unique(values)
    if threshold is not None and present.max(initial=0) > threshold:
        note = f"binarised at value > {threshold:g}, as asked"
        return MaskReading(_binary(mask, values > threshold), note, "thresholded")
    if threshold is not None and present.max(initial=0) > 0:  # the threshold would empty a labelled mask
        note = f"values {present.min()}..{present.max()} are labels: threshold {threshold:g} not applied"
        return MaskReading(mask, note, "threshold_not_applied")
    if present.size and present.max() == PICTURE_FOREGROUND and np.all(np.isin(present, (0, 255))):
        return MaskReading(_binary(mask, values == PICTURE_FOREGROUND), "0/255 mask read as 0/1", "0/255")
    if mask.ndim == 2 and present.size > 2 and present.max() == PICTURE_FOREGROUND:
        # Of the non-background pixels of an anti-aliased picture most are exactly 255; of a label map
        # with an "ignore" value 255 beside its classes, most are the classes.
        foreground = values[values != 0]
        if np.mean(foreground == PICTURE_FOREGROUND) >= PICTURE_FOREGROUND_SHARE:
            grey = int(present.size - 2)
            note = (
                f"anti-aliased 8-bit mask ({grey} grey edge values) binarised at value > {PICTURE_THRESHOLD}"
            )
            return MaskReading(_binary(mask, values > PICTURE_THRESHOLD), note, "anti-aliased")
    return MaskReading(mask)


def _binary(mask: LabelMap, foreground: np.ndarray) -> LabelMap:
    return LabelMap(foreground.astype(np.uint8), mask.affine.copy(), dict(mask.meta))
