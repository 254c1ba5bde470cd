"""An exponential moving average of the network's weights, the network a run validates and publishes.

Late in a run the weights still move from batch to batch, and so does validation Dice (LGG tumour,
one hour: 0.76 to 0.84 between neighbouring validations). Averaging the weights over the last
thousand or so steps smooths that out without another forward pass per step, and makes the published
network less dependent on which validation happened to peak (Polyak averaging; timm's ``ModelEmaV3``).
"""

from __future__ import annotations

import copy

import torch


def ramped_decay(decay: float, updates: int) -> float:
    """The decay of update number `updates` (0 first): ``n / (n + 1)`` capped at `decay`. Until
    ``1 / (1 - decay)`` updates the average is the plain mean of the weights after every step so far
    (the first update copies them, so the random initial weights never count); then it is an exponential
    average over about the last ``1 / (1 - decay)`` steps."""
    return min(decay, updates / (updates + 1))


class WeightAverage:
    """A copy of `network` whose parameters and buffers follow its weights as an exponential average."""

    def __init__(self, network: torch.nn.Module, decay: float):
        self.decay = decay
        self.network = copy.deepcopy(network).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, network: torch.nn.Module) -> None:
        """Move the average towards `network`'s current weights (call after every optimiser step)."""
        weight = 1.0 - ramped_decay(self.decay, self.updates)
        averaged, current = [], []
        for mine, theirs in zip(self._tensors(self.network), self._tensors(network), strict=True):
            if mine.is_floating_point():
                averaged.append(mine)
                current.append(theirs)
            else:  # counters such as BatchNorm's num_batches_tracked
                mine.copy_(theirs)
        torch._foreach_lerp_(averaged, current, weight)
        self.updates += 1

    @staticmethod
    def _tensors(network: torch.nn.Module) -> list[torch.Tensor]:
        return [*network.parameters(), *network.buffers()]
