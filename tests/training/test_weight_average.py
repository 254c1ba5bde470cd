"""The weight average a run validates and publishes (`RunConfig.ema_decay`)."""

from __future__ import annotations

import itertools

import pytest
import torch

from medseg.training.averaging import WeightAverage, ramped_decay


def _network() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1))


def test_the_decay_ramps_up_from_a_tenth_to_its_cap():
    decays = [ramped_decay(0.99, n) for n in range(2000)]
    assert decays[0] == pytest.approx(0.1)
    assert all(a <= b for a, b in itertools.pairwise(decays))
    assert max(decays) == 0.99 and decays[-1] == 0.99


def test_the_average_smooths_weights_that_oscillate_and_leaves_the_trained_ones_alone():
    """Weights jumping between two states each step (as late-training weights jitter around a
    minimum): the average settles at their midpoint; the trained network is not touched."""
    torch.manual_seed(0)
    network = _network()
    low = {k: v.clone() for k, v in network.state_dict().items()}
    high = {k: v + 1 for k, v in low.items()}
    average = WeightAverage(network, decay=0.98)
    for step in range(600):
        network.load_state_dict(high if step % 2 else low)
        average.update(network)
    for name, value in average.network.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, low[name] + 0.5, atol=0.02, rtol=0)
        else:  # BatchNorm's counter is copied, not averaged
            assert torch.equal(value, high[name]), name
    assert torch.equal(network.state_dict()["0.weight"], high["0.weight"])
    assert not any(p.requires_grad for p in average.network.parameters())


def test_the_first_updates_forget_the_initial_weights():
    torch.manual_seed(0)
    network = _network()
    average = WeightAverage(network, decay=0.999)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(1.0)
    for _ in range(100):
        average.update(network)
    for mine, theirs in zip(average.network.parameters(), network.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=0)
