"""Deterministic train/validation and k-fold splits of case ids, stored like nnU-Net's splits_final.json.

A split file is a JSON list of folds, each ``{"train": [ids...], "val": [ids...]}``. Splits depend only
on the set of ids and the seed: ids are sorted before shuffling, so the order files were listed in
does not matter.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from medseg.errors import ConfigError, InputError
from medseg.utils.atomic import write_text_atomic

#: Seed used unless told otherwise (nnU-Net uses 12345 for its 5-fold cross-validation too).
DEFAULT_SEED = 12345
#: Default number of cross-validation folds.
DEFAULT_FOLDS = 5
#: Default share of cases held out for validation in a single train/validation split.
DEFAULT_VAL_FRACTION = 0.2

Fold = dict[str, list[str]]


def _shuffled(ids: Iterable[str], seed: int) -> list[str]:
    unique = sorted(set(ids))
    order = np.random.default_rng(seed).permutation(len(unique))
    return [unique[i] for i in order]


def kfold_splits(ids: Iterable[str], folds: int = DEFAULT_FOLDS, seed: int = DEFAULT_SEED) -> list[Fold]:
    """`folds` folds whose validation sets are disjoint, cover every id once and differ in size by <= 1."""
    shuffled = _shuffled(ids, seed)
    if not 2 <= folds <= len(shuffled):
        raise ConfigError(f"folds must be between 2 and the number of cases ({len(shuffled)}), got {folds}")
    parts = np.array_split(np.arange(len(shuffled)), folds)
    result = []
    for part in parts:
        held = set(part.tolist())
        val = sorted(shuffled[i] for i in held)
        train = sorted(shuffled[i] for i in range(len(shuffled)) if i not in held)
        result.append({"train": train, "val": val})
    return result


def train_val_split(
    ids: Iterable[str], val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = DEFAULT_SEED
) -> Fold:
    """One split holding out ``round(val_fraction * n)`` cases (at least 1) for validation."""
    shuffled = _shuffled(ids, seed)
    if not 0 < val_fraction < 1 or len(shuffled) < 2:
        raise ConfigError(
            f"val_fraction must be in (0, 1) with 2+ cases, got {val_fraction} and {len(shuffled)}"
        )
    n_val = min(len(shuffled) - 1, max(1, round(val_fraction * len(shuffled))))
    return {"train": sorted(shuffled[n_val:]), "val": sorted(shuffled[:n_val])}


#: What a manifest row's ``split`` may say, mapped to medseg's names. ``test`` rows are kept out of
#: training and validation (cross-validation folds and fold ``all`` alike).
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def trainable_ids(records: Sequence[dict]) -> list[str]:
    """Every case a fold may train or validate on: all but the rows marked ``split: test``."""
    return sorted(r["id"] for r in records if r.get("split") != "test")


def splits_from_records(records: Sequence[dict]) -> Fold | None:
    """The fold the records declare: ``split: val`` rows validate, every other trainable row (marked
    ``train`` or unmarked) trains; None if no row is marked ``val``."""
    val = {r["id"] for r in records if r.get("split") == "val"}
    if not val:
        return None
    return {"train": [i for i in trainable_ids(records) if i not in val], "val": sorted(val)}


def _validate(folds: object, where: Path | None) -> list[Fold]:
    if not isinstance(folds, list) or not folds:
        raise InputError(where, "splits must be a non-empty list of {'train': [...], 'val': [...]}")
    for number, fold in enumerate(folds):
        if not isinstance(fold, dict) or set(fold) != {"train", "val"}:
            raise InputError(where, f"fold {number} must have exactly the keys 'train' and 'val'")
        if not all(isinstance(i, str) for i in [*fold["train"], *fold["val"]]):
            raise InputError(where, f"fold {number}: case ids must be strings")
        overlap = set(fold["train"]) & set(fold["val"])
        if overlap:
            raise InputError(where, f"fold {number}: {len(overlap)} case(s) in both train and val")
    return folds


def save_splits(folds: list[Fold], path: str | os.PathLike) -> Path:
    """Write `folds` as JSON (atomically) after checking them."""
    _validate(folds, None)
    return write_text_atomic(path, json.dumps(folds, indent=2) + "\n")


def load_splits(path: str | os.PathLike) -> list[Fold]:
    """Read and check a splits JSON file (a list of ``{"train": [...], "val": [...]}``)."""
    path = Path(path)
    try:
        folds = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(path, f"cannot read splits ({error})") from None
    return _validate(folds, path)
