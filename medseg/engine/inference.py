"""Sliding-window inference of a segmentation model over a whole image."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from medseg.engine.training import autocast
from medseg.io.image import LabelMap, ScalarImage

#: Windows evaluated together; 4 was fastest on a 2-core CPU.
SW_BATCH_SIZE = 4


@torch.no_grad()
def predict_labels(
    model: torch.nn.Module,
    image: ScalarImage,
    normalise: Callable[[np.ndarray], np.ndarray],
    roi_size: Sequence[int],
    overlap: float = 0.5,
    sw_batch_size: int = SW_BATCH_SIZE,
    mixed_precision: bool = True,
    device: str = "cpu",
) -> LabelMap:
    """Segment `image` with gaussian-blended sliding windows; the label map is on the image's own grid."""
    model.to(device).eval()
    tensor = torch.as_tensor(normalise(image.array.astype(np.float32)), device=device)[None, None]
    with autocast(device, mixed_precision):
        logits = sliding_window_inference(
            tensor, roi_size, sw_batch_size, model, overlap=overlap, mode="gaussian"
        )
    labels = logits[0].argmax(dim=0).to(torch.uint8).cpu().numpy()
    return LabelMap(labels, image.affine.copy(), {"source": image.meta.get("source", "")})
