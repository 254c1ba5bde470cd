"""Training on real hippocampus MRI: Dice rises, outputs are written, an interrupted run resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from train_fixtures import hippocampus_manifest, tiny_config

from medseg.checkpoint import ModelConfig, load_checkpoint, model_from_checkpoint
from medseg.cli.main import main
from medseg.errors import ConfigError
from medseg.runtime.precision import resolve_precision
from medseg.training.config import config_from_dict
from medseg.training.experiment import prepare
from medseg.training.patches import validation_dataset
from medseg.training.rng_state import seed_everything
from medseg.training.run_log import DICE_COLOUR, LOSS_COLOUR
from medseg.training.trainer import fit
from medseg.training.validation import validate

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def manifest(datasets_dir, tmp_path_factory):
    return hippocampus_manifest(datasets_dir, tmp_path_factory.mktemp("hippo"), train=12, val=4)


@pytest.fixture(scope="module")
def trained(manifest, tmp_path_factory):
    """A short real run: 12 epochs of 5 steps, validating every 4 epochs."""
    output = tmp_path_factory.mktemp("run") / "fold_0"
    config = config_from_dict(
        tiny_config(
            manifest,
            output,
            epochs=12,
            steps_per_epoch=5,
            batch_size=4,
            val_interval=4,
            learning_rate=1e-2,
            foreground_fraction=0.67,
        )
    )
    return config, fit(config)


def test_short_run_raises_validation_dice_well_above_the_untrained_model(trained):
    config, summary = trained
    experiment = prepare(config)
    seed_everything(config.seed, deterministic=False)
    untrained = experiment.model_config.build()  # the same initial weights the run started from
    cases = list(validation_dataset(experiment.val_records, experiment.plan))
    precision = resolve_precision(config.precision, "cpu")
    before = validate(untrained, cases, experiment.class_names, experiment.patch_size, 0.25, precision)
    state = load_checkpoint(config.output_dir / "best.pt")
    after = validate(
        model_from_checkpoint(state), cases, experiment.class_names, experiment.patch_size, 0.25, precision
    )
    assert after["mean_dice"] == pytest.approx(summary["best_mean_dice"], abs=1e-6)
    # 60 steps of a tiny network: from ~0.05 (chance) to ~0.3; both structures are found
    assert after["mean_dice"] > before["mean_dice"] + 0.2, (before["dice"], after["dice"])
    assert min(after["dice"].values()) > 2 * max(before["dice"].values())


def test_run_folder_holds_checkpoints_history_curve_and_events(trained):
    config, summary = trained
    folder = config.output_dir
    best = load_checkpoint(folder / "best.pt")
    assert ModelConfig(**best["model"]).name == "unet"
    assert best["class_names"] == {0: "background", 1: "Anterior", 2: "Posterior"}
    assert best["plan"]["dim"] == 3 and best["training"]["patch_size"] == [24, 32, 24]
    history = json.loads((folder / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, 13))
    assert [("val_mean_dice" in row) for row in history] == [False, False, False, True] * 3
    assert (folder / "history.csv").read_text().splitlines()[0].startswith("epoch,step,seconds")
    with PILImage.open(folder / "training_curve.png") as curve:
        assert curve.size == (800, 400)
        colours = {tuple(pixel) for pixel in np.asarray(curve.convert("RGB")).reshape(-1, 3).tolist()}
    assert LOSS_COLOUR in colours and DICE_COLOUR in colours  # both curves were drawn
    assert any((folder / "tensorboard").glob("events.out.tfevents.*"))
    validation = json.loads((folder / "validation.json").read_text())
    assert validation["mean_dice"] == pytest.approx(summary["best_mean_dice"])
    assert len(validation["cases"]) == 4
    val_images = [
        case["image"]
        for case in json.loads(Path(config.dataset).read_text())["cases"]
        if case["split"] == "val"
    ]
    assert [case["case"] for case in validation["cases"]] == [
        Path(image).name.split(".")[0] for image in val_images
    ]


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_interrupted_run_resumes_with_the_same_losses(manifest, tmp_path, ema_decay):
    """Deterministic mode: stop after 4 of 6 steps (mid-epoch), resume, and match an uninterrupted run
    (with a weight average too: it resumes from the saved average, training from the trained weights)."""

    def run(output, stop_at=None, resume=False):
        losses = []

        def record(step, loss):
            losses.append(loss)
            if step == stop_at:
                raise KeyboardInterrupt

        config = config_from_dict(
            tiny_config(manifest, output, deterministic=True, val_interval=2, ema_decay=ema_decay)
        )
        try:
            summary = fit(config, resume=resume, on_step=record)
        except KeyboardInterrupt:
            summary = None
        return losses, summary

    reference, full = run(tmp_path / "a")
    first, _ = run(tmp_path / "b", stop_at=4)
    changed = tiny_config(
        manifest, tmp_path / "b", deterministic=True, val_interval=2, batch_size=3, ema_decay=ema_decay
    )
    with pytest.raises(
        ConfigError, match=r"b/last\.pt: cannot resume: batch_size was 2, the config now says 3"
    ):
        fit(config_from_dict(changed), resume=True)
    rest, resumed = run(tmp_path / "b", resume=True)
    assert len(reference) == 6 and len(first) == 4 and len(rest) == 2
    assert first + rest == reference  # bit-identical losses
    assert [r["train_loss"] for r in resumed["history"]] == [r["train_loss"] for r in full["history"]]
    for name, tensor in full["model"].state_dict().items():
        assert torch.equal(tensor, resumed["model"].state_dict()[name]), name
    last = load_checkpoint(tmp_path / "a" / "last.pt")
    published = last["state_dict"]  # what inference loads: the average, when the run keeps one
    assert all(torch.equal(published[k], v) for k, v in full["model"].state_dict().items())
    if ema_decay is not None:
        trained = last["training"]["trained_weights"]
        assert trained.keys() == published.keys()
        assert not all(torch.equal(published[k], trained[k]) for k in trained)


def test_compiled_training_follows_the_eager_losses_and_saves_plain_weights(manifest, tmp_path, monkeypatch):
    """`compile: true` (torch.compile of the training network): same losses as eager to rounding, and a
    checkpoint that loads into the plain network (no `_orig_mod.` prefixes). Dynamo and AOT autograd
    trace the network as in a real run, but without inductor's C++ kernels (most of the test's time):
    inductor's numerics are checked by the compiled inference test."""
    compile_with_inductor = torch.compile
    monkeypatch.setattr(
        torch,
        "compile",
        lambda network, **options: compile_with_inductor(network, backend="aot_eager", **options),
    )

    def losses(output, compile):
        seen = []
        config = config_from_dict(tiny_config(manifest, output, compile=compile, deterministic=True))
        fit(config, on_step=lambda step, loss: seen.append(loss))
        return seen

    eager = losses(tmp_path / "eager", compile=False)
    compiled = losses(tmp_path / "compiled", compile=True)
    torch._dynamo.reset()
    assert len(compiled) == len(eager) == 6
    np.testing.assert_allclose(compiled, eager, rtol=2e-3)
    model_from_checkpoint(load_checkpoint(tmp_path / "compiled" / "best.pt"))  # strict load


def test_fine_tuning_starts_from_the_checkpoint_weights(trained, manifest, tmp_path, caplog):
    """`init_weights`: with a learning rate too small to move the weights, the first validation gives
    the checkpoint's Dice, where the same run from scratch scores near chance."""
    config, summary = trained

    def short_run(name: str, **changes) -> tuple[list[float], float]:
        losses: list[float] = []
        changes = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "learning_rate": 1e-7, **changes}
        result = fit(
            config_from_dict(tiny_config(manifest, tmp_path / name, **changes)),
            on_step=lambda s, loss: losses.append(loss),
        )
        return losses, result["best_mean_dice"]

    fresh_losses, fresh_dice = short_run("fresh")
    tuned_losses, tuned_dice = short_run("tuned", init_weights=str(config.output_dir / "best.pt"))
    assert tuned_dice == pytest.approx(summary["best_mean_dice"], abs=0.01)
    assert tuned_dice > fresh_dice + 0.2 and tuned_losses[0] < fresh_losses[0]
    with caplog.at_level("WARNING"):  # another grid than the checkpoint's: allowed, with a warning
        prepare(
            config_from_dict(
                tiny_config(
                    manifest,
                    tmp_path / "x",
                    init_weights=str(config.output_dir),
                    target_spacing=[1.5, 1.5, 1.5],
                )
            )
        )
    assert "was trained with target_spacing" in caplog.text
    other = tiny_config(manifest, tmp_path / "y", init_weights=str(config.output_dir / "best.pt"))
    other["model_options"] = {**other["model_options"], "channels": [8, 16, 64]}
    with pytest.raises(
        ConfigError, match=r"best.pt holds another network: options .*Set model and model_options"
    ):
        prepare(config_from_dict(other))


def test_fold_all_trains_on_every_case_and_keeps_the_last_weights(trained, manifest, tmp_path, capsys):
    config, _ = trained
    run = config.output_dir.parent / "fold_all"  # beside fold 0: crossval (below) must ignore it
    settings = tmp_path / "config.json"
    settings.write_text(json.dumps(tiny_config(manifest, config.output_dir.parent / "fold_{fold}")))
    everything = prepare(config_from_dict({**tiny_config(manifest, run), "fold": "all"}))
    assert everything.val_records == [] and len(everything.train_records) == 16
    rows = json.loads(manifest.read_text())
    rows["cases"][0]["split"] = "test"  # a manifest's test rows stay out of the final model too
    kept_out = tmp_path / "with_test.json"
    kept_out.write_text(json.dumps(rows))
    trained_on = prepare(config_from_dict({**tiny_config(kept_out, run), "fold": "all"})).train_records
    assert len(trained_on) == 15 and rows["cases"][0]["image"] not in [r["image"] for r in trained_on]
    assert main(["train", str(settings), "--fold", "all"]) == 0
    assert "no validation; outputs in" in capsys.readouterr().out
    assert not (run / "validation.json").exists()
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert best["training"]["fold"] == "all" and best["training"]["step"] == last["training"]["step"] == 6
    for name, tensor in best["state_dict"].items():
        torch.testing.assert_close(tensor, last["state_dict"][name])
    assert all("val_mean_dice" not in row for row in json.loads((run / "history.json").read_text()))
    assert main(["train", str(settings), "--fold", "some", "--check"]) != 0
    assert "fold must be in 0..4 for folds=5 or 'all', got 'some'" in capsys.readouterr().err


def test_crossval_gathers_the_fold_results_into_one_table(trained, capsys):
    config, summary = trained
    assert main(["crossval", str(config.output_dir.parent)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| fold | epoch | cases | dice_Anterior | dice_Posterior | mean_dice |"
    assert table[2].startswith("| 0 | ") and table[2].endswith(f"| {summary['best_mean_dice']:.4f} |")
    rows = json.loads((config.output_dir.parent / "crossval.json").read_text())
    assert [row["fold"] for row in rows] == [0, "mean", "std"]
    assert rows[1]["mean_dice"] == pytest.approx(summary["best_mean_dice"]) and rows[2]["mean_dice"] == 0.0
