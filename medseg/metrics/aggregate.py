"""Cohort summaries of per-case metrics: case-averaged, as nnU-Net reports them.

For every class and metric: mean, median, standard deviation (ddof=1; 0 for one case), a seeded
percentile-bootstrap 95% interval of the mean (cases resampled with replacement), the number of cases,
and how many of them fell under each branch of the empty-mask policy. Every case counts: the policy
gives each metric a finite value, so nothing is dropped from an average. ``"mean over classes"`` is the
mean of the class means (nnU-Net's "foreground mean").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: Per-class numbers that are summarised (counts of lesions are summarised too; labels are not).
SUMMARY_SKIP = {"label", "empty"}
#: Bootstrap resamples and the interval's coverage.
BOOTSTRAP_SAMPLES, INTERVAL = 2000, 0.95
#: Name of the row that averages the class means.
CLASS_MEAN = "mean over classes"


def bootstrap_interval(values: np.ndarray, samples: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval (`INTERVAL`) of the mean of `values`, reproducible for a seed."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    tail = (1.0 - INTERVAL) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def summarise(values: Sequence[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, float]:
    """Mean, median, std, bootstrap 95% interval and n of a list of finite values."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError("summarise needs at least one value, all finite (see the empty-mask policy)")
    low, high = bootstrap_interval(array, samples, seed)
    return {
        "mean": float(array.mean()),
        "median": float(np.median(array)),
        "std": float(array.std(ddof=1)) if array.size > 1 else 0.0,
        "ci95_low": low,
        "ci95_high": high,
        "n": int(array.size),
    }


def aggregate(
    cases: Mapping[str, Mapping[str, Mapping]], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> dict[str, dict]:
    """Summaries per class and metric of ``{case: {class: {metric: value}}}``, plus the class mean.

    Each class also gets ``"empty"``: how many cases had both masks empty, or only the prediction or
    only the reference.
    """
    classes = list(dict.fromkeys(name for per_class in cases.values() for name in per_class))
    summary: dict[str, dict] = {}
    for name in classes:
        entries = [per_class[name] for per_class in cases.values()]
        metrics = [key for key in entries[0] if key not in SUMMARY_SKIP]
        summary[name] = {key: summarise([e[key] for e in entries], samples, seed) for key in metrics}
        empties = [e["empty"] for e in entries]
        summary[name]["empty"] = {kind: empties.count(kind) for kind in ("both", "prediction", "reference")}
    if len(classes) > 1:
        metrics = [key for key in summary[classes[0]] if key != "empty"]
        summary[CLASS_MEAN] = {
            key: {"mean": float(np.mean([summary[name][key]["mean"] for name in classes]))} for key in metrics
        }
    return summary
