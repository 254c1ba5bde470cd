"""The weight average a run validates and publishes (`RunConfig.ema_decay`)."""

from __future__ import annotations

import itertools

import torch

from medseg.training.averaging import WeightAverage, ramped_decay


def _network() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1))


def test_the_decay_grows_from_zero_to_its_cap():
    decays = [ramped_decay(0.99, n) for n in range(2000)]
    assert decays[0] == 0  # the first update copies the trained weights
    assert all(a <= b for a, b in itertools.pairwise(decays))
    assert decays[98] < 0.99 and decays[99] == 0.99 == decays[-1]


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


def test_before_the_cap_the_average_is_the_mean_of_the_weights_after_each_step():
    """The random initial weights never count; the k-th update weighs in at 1/k."""
    torch.manual_seed(0)
    network = _network()
    average = WeightAverage(network, decay=0.999)
    start = [p.clone() for p in network.parameters()]
    with torch.no_grad():
        for step in range(1, 51):
            for parameter, initial in zip(network.parameters(), start, strict=True):
                parameter.copy_(initial + step)
            average.update(network)
    for mine, initial in zip(average.network.parameters(), start, strict=True):
        torch.testing.assert_close(mine, initial + 25.5)  # the mean of 1..50
