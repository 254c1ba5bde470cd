"""The training loss's Dice options: batch Dice and leaving the background to the cross-entropy."""

from __future__ import annotations

import torch

from medseg.training.optim import SegmentationLoss

CONFIDENT = 20.0  # logit margin that makes the softmax practically one-hot


def confident_logits(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Logits whose softmax is (almost exactly) the one-hot of `labels` (B, 1, *spatial)."""
    one_hot = torch.nn.functional.one_hot(labels[:, 0], classes).movedim(-1, 1).float()
    return one_hot * CONFIDENT


def test_batch_dice_forgives_a_false_positive_in_a_patch_without_foreground():
    reference = torch.zeros(2, 1, 8, 8, 8, dtype=torch.long)
    reference[0, :, 2:6, 2:6, 2:6] = 1  # the first patch holds the structure, the second none
    predicted = reference.clone()
    predicted[1, :, 0, 0, 0] = 1  # one false-positive voxel in the empty patch
    logits = confident_logits(predicted, 2)
    per_patch = SegmentationLoss("dice_ce", batch_dice=False, dice_background=False)(logits, reference)
    batch = SegmentationLoss("dice_ce", batch_dice=True, dice_background=False)(logits, reference)
    # Per patch, the empty one scores Dice 0 for one voxel: half the mean Dice term is lost.
    assert per_patch.item() > 0.45
    # Over the batch, one wrong voxel against 64 right ones costs under 1% of Dice (plus that voxel's
    # cross-entropy, 20 / 1024, in both).
    assert batch.item() < 0.03


def test_leaving_out_the_background_makes_a_missed_structure_cost_more():
    reference = torch.zeros(1, 1, 16, 16, 16, dtype=torch.long)
    reference[0, :, 4:8, 4:8, 4:8] = 1
    logits = confident_logits(torch.zeros_like(reference), 2)  # the structure is missed entirely
    with_background = SegmentationLoss("dice_ce", dice_background=True)(logits, reference).item()
    without = SegmentationLoss("dice_ce", dice_background=False)(logits, reference).item()
    # The background's Dice is nearly perfect and halves the Dice term when it is counted.
    assert without - with_background > 0.45
