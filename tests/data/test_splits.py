"""Splits: deterministic, independent of file order, disjoint, and saved in nnU-Net's JSON shape."""

from __future__ import annotations

import json
import random

import pytest

from medseg.data.datasets import read_msd
from medseg.data.splits import (
    kfold_splits,
    load_splits,
    save_splits,
    splits_from_records,
    train_val_split,
    trainable_ids,
)
from medseg.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def ids(datasets_dir):
    return read_msd(datasets_dir / "msd_hippocampus").ids


def test_kfold_is_seeded_stable_under_order_and_disjoint(ids):
    folds = kfold_splits(ids, folds=5, seed=7)
    shuffled = list(ids)
    random.Random(1).shuffle(shuffled)
    assert kfold_splits(shuffled, folds=5, seed=7) == folds
    assert kfold_splits(ids, folds=5, seed=8) != folds

    all_val = [case for fold in folds for case in fold["val"]]
    assert sorted(all_val) == sorted(ids)  # every case validated exactly once
    assert {len(fold["val"]) for fold in folds} == {46}
    for fold in folds:
        assert not set(fold["train"]) & set(fold["val"])
        assert set(fold["train"]) | set(fold["val"]) == set(ids)


def test_train_val_split(ids):
    split = train_val_split(ids, val_fraction=0.2, seed=3)
    assert len(split["val"]) == 46 and len(split["train"]) == 184
    assert not set(split["train"]) & set(split["val"])
    assert train_val_split(reversed(ids), val_fraction=0.2, seed=3) == split
    with pytest.raises(ConfigError):
        train_val_split(ids, val_fraction=1.5)
    with pytest.raises(ConfigError):
        kfold_splits(ids[:3], folds=5)


def test_save_load_round_trip_and_validation(tmp_path, ids):
    folds = kfold_splits(ids, folds=3)
    path = save_splits(folds, tmp_path / "splits_final.json")
    assert json.loads(path.read_text())[0].keys() == {"train", "val"}
    assert load_splits(path) == folds

    path.write_text(json.dumps([{"train": ["a", "b"], "val": ["b"]}]))
    with pytest.raises(InputError, match="both train and val"):
        load_splits(path)
    path.write_text(json.dumps({"train": []}))
    with pytest.raises(InputError, match="non-empty list"):
        load_splits(path)


def test_declared_splits_from_records():
    records = [
        {"id": "a", "split": "train"},
        {"id": "b", "split": "val"},
        {"id": "c", "split": "test"},
        {"id": "d"},
    ]
    # unmarked rows train; test rows neither train nor validate
    assert splits_from_records(records) == {"train": ["a", "d"], "val": ["b"]}
    assert trainable_ids(records) == ["a", "b", "d"]
    assert splits_from_records([{"id": "a"}, {"id": "b", "split": "train"}]) is None
