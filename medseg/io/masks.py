"""What the values of a clinician's mask file mean: labels as they are, or an 8-bit picture of a mask.

Label maps (NIfTI, NRRD, SEG) hold class values 0, 1, 2... and are read as they are. Masks drawn in
image editors are 8-bit pictures: foreground 255 on background 0, and after resizing or JPEG also grey
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
#: In an anti-aliased picture most pixels are still exactly 0 or 255 (99.8% in the shared chest X-ray
#: masks, 94% after a 1.5-pixel blur); a label map with classes up to 255 has its foreground spread over
#: them. At least this share of pixels at 0 or 255 (with some at 255) makes a picture of a mask.
PICTURE_EXTREME_SHARE = 0.8


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
    if present.size > 2 and present.max() == PICTURE_FOREGROUND:
        extreme = np.isin(values, (0, PICTURE_FOREGROUND)).mean()
        if extreme >= PICTURE_EXTREME_SHARE:
            grey = int(present.size - 2)
            note = (
                f"anti-aliased 8-bit mask ({grey} grey edge values) binarised at value > {PICTURE_THRESHOLD}"
            )
            return MaskReading(_binary(mask, values > PICTURE_THRESHOLD), note, "anti-aliased")
    return MaskReading(mask)


def _binary(mask: LabelMap, foreground: np.ndarray) -> LabelMap:
    return LabelMap(foreground.astype(np.uint8), mask.affine.copy(), dict(mask.meta))
