"""Every model learns: it overfits one real 3D MRI and one real 2D chest X-ray to Dice >= 0.9.

A wiring bug (a skip from the wrong level, an output cropped from the wrong corner, a head that gets no
gradient) keeps a network from fitting even a single image, so this is the cheapest end-to-end check.
The loss covers every output of the deep-supervision contract, and Dice is measured in eval mode.
"""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss

from medseg.models import auxiliary_weights, create_model, deep_supervision_outputs, list_models

TARGET_DICE = 0.9
MAX_STEPS = 150
CHECK_EVERY = 5
LEARNING_RATE = 3e-3


def mean_foreground_dice(logits: torch.Tensor, labels: torch.Tensor) -> float:
    prediction = logits.argmax(dim=1, keepdim=True)
    scores = []
    for label in range(1, logits.shape[1]):
        predicted, true = prediction == label, labels == label
        scores.append(2 * (predicted & true).sum().item() / (predicted.sum() + true.sum()).item())
    return sum(scores) / len(scores)


@pytest.mark.slow
@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", list_models())
def test_overfits_one_real_image(name, spatial_dims, hippocampus_sample, cxr_sample, tiny):
    image, labels = hippocampus_sample if spatial_dims == 3 else cxr_sample
    classes = int(labels.max()) + 1
    torch.manual_seed(0)
    model = create_model(name, spatial_dims, 1, classes, **tiny(name, spatial_dims, tuple(image.shape[2:])))
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    dice = 0.0
    for step in range(1, MAX_STEPS + 1):
        model.train()
        optimiser.zero_grad()
        outputs = deep_supervision_outputs(model(image))
        weights = auxiliary_weights(len(outputs))
        loss = sum(w * loss_function(o, labels) for w, o in zip(weights, outputs, strict=True))
        loss.backward()
        optimiser.step()
        if step % CHECK_EVERY == 0:
            model.eval()
            with torch.no_grad():
                dice = mean_foreground_dice(model(image), labels)
            if dice >= TARGET_DICE:
                break
    assert dice >= TARGET_DICE, f"{name} {spatial_dims}D reached Dice {dice:.3f} after {step} steps"
