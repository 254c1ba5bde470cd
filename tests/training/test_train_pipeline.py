"""The training data pipeline: cache modes agree, epochs are reproducible, ranks share epochs disjointly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from train_fixtures import hippocampus_manifest, tiny_config

from medseg.errors import ConfigError
from medseg.training.config import AugmentationConfig, config_from_dict
from medseg.training.experiment import prepare
from medseg.training.patches import (
    EpochLoader,
    EpochSampler,
    augmentations,
    preprocessing_key,
    training_dataset,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def experiment(datasets_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    manifest = hippocampus_manifest(datasets_dir, folder, train=4, val=1)
    return prepare(config_from_dict(tiny_config(manifest, folder / "run")))


def first_batches(experiment, cache: str, cache_dir, epoch: int) -> list[dict]:
    dataset = training_dataset(
        experiment.train_records,
        experiment.plan,
        experiment.patch_size,
        1 / 3,
        AugmentationConfig(elastic=True, affine_prob=0.5),
        cache=cache,
        cache_dir=cache_dir,
    )
    return list(EpochLoader(dataset, batch_size=2, steps_per_epoch=2, seed=5).epoch(epoch))


def test_memory_disk_and_no_cache_give_the_same_patches_and_epochs_repeat(experiment, tmp_path):
    memory = first_batches(experiment, "memory", None, epoch=1)
    disk = first_batches(experiment, "disk", tmp_path / "cache", epoch=1)
    assert any((tmp_path / "cache").iterdir())  # PersistentDataset wrote its cache
    uncached = first_batches(experiment, "none", None, epoch=1)
    other_epoch = first_batches(experiment, "memory", None, epoch=2)
    assert memory[0]["image"].shape == (2, 1, 24, 32, 24) and memory[0]["label"].shape == (2, 1, 24, 32, 24)
    for batches in (disk, uncached):  # each built afresh: the same seed gives the same patches
        for expected, got in zip(memory, batches, strict=True):
            assert torch.equal(expected["image"], got["image"]) and torch.equal(
                expected["label"], got["label"]
            )
    assert not torch.equal(memory[0]["image"], other_epoch[0]["image"])
    # another plan never reads this disk cache: each preprocessing has its own subfolder
    coarser = dataclasses.replace(experiment.plan, target_spacing=[2.0, 2.0, 2.0])
    assert preprocessing_key(coarser, experiment.patch_size) != preprocessing_key(
        experiment.plan, experiment.patch_size
    )
    again = training_dataset(
        experiment.train_records[:1],
        coarser,
        experiment.patch_size,
        1 / 3,
        AugmentationConfig(),
        cache="disk",
        cache_dir=tmp_path / "cache",
    )
    assert again[0][0]["image"].shape[1:] == tuple(experiment.patch_size)  # one patch per item
    assert len(list((tmp_path / "cache").iterdir())) == 2
    labels = torch.cat([batch["label"] for batch in memory])
    assert set(labels.unique().tolist()) <= {0, 1, 2} and (labels > 0).any()


def test_flips_only_along_the_plans_mirror_axes(datasets_dir, tmp_path):
    flips_only = AugmentationConfig(affine_prob=0, intensity_prob=0, gamma_prob=0, noise_prob=0)
    image = torch.arange(4 * 5 * 6, dtype=torch.float32).reshape(1, 4, 5, 6)  # no symmetry on any axis
    seen = set()
    for seed in range(24):
        steps = augmentations(3, flips_only, mirror_axes=(1, 2))
        for index, step in enumerate(steps):
            step.set_random_state(seed * len(steps) + index)
        data = {"image": image.clone(), "label": image.clone()}
        for step in steps:
            data = step(data)
        flipped = [
            axes  # spatial axes: tensor dimension 0 is the channel
            for axes in ((), (1,), (2,), (1, 2))
            if torch.equal(torch.as_tensor(data["image"]), image.flip([axis + 1 for axis in axes]))
        ]
        assert len(flipped) == 1 and torch.equal(data["label"], data["image"])  # never along axis 0
        seen.add(flipped[0])
    assert seen == {(), (1,), (2,), (1, 2)}
    assert augmentations(2, flips_only, mirror_axes=()) == []

    manifest = hippocampus_manifest(datasets_dir, tmp_path, train=2, val=1)
    config = tiny_config(manifest, tmp_path / "run", augmentation={"flip": False})
    assert prepare(config_from_dict(config)).plan.mirror_axes == []  # nor test-time mirroring later


def test_epoch_sampler_splits_each_epoch_between_ranks_without_overlap():
    ranks = [EpochSampler(num_cases=10, samples_per_rank=5, seed=1, rank=r, world_size=2) for r in range(2)]
    for sampler in ranks:
        sampler.set_epoch(3)
    drawn = [list(sampler) for sampler in ranks]
    assert sorted(drawn[0] + drawn[1]) == list(range(10))  # one permutation, shared out
    ranks[0].set_epoch(4)
    assert list(ranks[0]) != drawn[0]
    long_epoch = EpochSampler(num_cases=3, samples_per_rank=7, seed=1)
    assert len(list(long_epoch)) == 7 and set(long_epoch) == {0, 1, 2}


def test_a_model_that_reads_its_own_tensors_while_building_is_prepared(datasets_dir, tmp_path):
    """The options check builds the network on the meta device; SwinUNETR reads tensor values while
    building, which the meta device refuses, so it is built on the CPU instead of failing the run."""
    manifest = hippocampus_manifest(datasets_dir, tmp_path, train=2, val=1)
    config = tiny_config(
        manifest,
        tmp_path / "run",
        model="swin_unetr",
        model_options={"feature_size": 12},
        patch_size=[32, 32, 32],
    )
    experiment = prepare(config_from_dict(config))
    assert experiment.model_config.name == "swin_unetr"


def test_folds_keep_test_rows_out_and_refuse_empty_ones(datasets_dir, tmp_path):
    """Rows marked ``split: test`` never reach k-fold cross-validation nor fold ``all``; a fold
    without validation or training cases is refused by name instead of training blind."""
    manifest = hippocampus_manifest(datasets_dir, tmp_path, train=6, val=0)
    rows = json.loads(manifest.read_text())
    rows["cases"][0]["split"] = "test"
    manifest.write_text(json.dumps(rows))
    kept_out = Path(rows["cases"][0]["image"]).name.split(".")[0]

    def fold(run: str, **changes) -> dict:
        return prepare(config_from_dict(tiny_config(manifest, tmp_path / run, **changes))).fold

    folds = [fold("cv/fold_{fold}", fold=k, folds=5) for k in range(5)]
    validated = sorted(i for f in folds for i in f["val"])
    assert len(validated) == 5 and kept_out not in validated + folds[0]["train"]
    assert kept_out not in fold("cv/fold_{fold}", fold="all")["train"]

    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps([{"train": folds[0]["train"] + folds[0]["val"], "val": []}]))
    with pytest.raises(ConfigError, match=r"splits\.json: fold 0 has no validation cases"):
        fold("x", splits=str(splits))
    splits.write_text(json.dumps([{"train": [kept_out], "val": folds[0]["val"]}]))
    with pytest.raises(ConfigError, match=r"names 1 case\(s\) not in the dataset or marked split: test"):
        fold("x", splits=str(splits))
    rows["cases"] = [{**case, "split": "test"} for case in rows["cases"]]
    manifest.write_text(json.dumps(rows))
    with pytest.raises(ConfigError, match="fold all has no training cases"):
        fold("y", fold="all")
