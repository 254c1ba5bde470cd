"""`fit(config)`: a whole training run, as ``medseg train CONFIG`` runs it.

One run trains one fold: it preprocesses and caches the cases (`medseg.training.patches`), trains on
patches with the configured loss, optimiser and schedule (`medseg.training.optim`), validates whole
volumes every `val_interval` epochs (`medseg.training.validation`), and writes to its run folder:

- ``best.pt`` (best mean validation Dice; without validation cases, fold ``all``, the latest epoch's
  weights) and ``last.pt`` (end of the latest epoch, or the moment of
  an interrupt), both `medseg.checkpoint` files that inference loads; ``last.pt`` also holds
  the optimiser, scaler and RNG states, the position in the epoch and the history, for ``--resume``.
  With `RunConfig.ema_decay` both hold the averaged weights (`medseg.training.averaging`), which
  are also the ones validated; ``last.pt`` keeps the trained weights beside them to resume from;
- ``validation.json`` (the best validation), ``history.csv``/``.json``, ``training_curve.png``,
  TensorBoard events, ``config.yaml`` and ``plans.json``.

Under `torchrun` every rank trains on its share of the patches; rank 0 validates, logs and saves.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from medseg.checkpoint import BEST, LAST, load_checkpoint, require_network, save_checkpoint
from medseg.data.planner import save_plan
from medseg.errors import ConfigError
from medseg.runtime import distributed
from medseg.runtime.compilation import compile_network
from medseg.runtime.device import resolve_device
from medseg.runtime.memory_format import channels_last_format, wants_channels_last
from medseg.runtime.precision import Precision, resolve_precision
from medseg.training.averaging import WeightAverage
from medseg.training.config import RunConfig, save_config
from medseg.training.experiment import Experiment, prepare
from medseg.training.optim import SegmentationLoss, make_optimizer, set_learning_rate
from medseg.training.patches import EpochLoader, training_dataset, validation_dataset
from medseg.training.rng_state import capture_rng, restore_rng, seed_everything
from medseg.training.run_log import RunLog, TrainingBar
from medseg.training.validation import validate
from medseg.utils.atomic import remove_temporaries, write_text_atomic

log = logging.getLogger(__name__)

VALIDATION = "validation.json"
#: Keys of the config that must not change when a run is resumed (the weights would not fit, or the
#: saved weights would be averaged differently from here on).
RESUME_FIXED_KEYS = (
    "model",
    "model_options",
    "patch_size",
    "batch_size",
    "fold",
    "optimizer",
    "dims",
    "context_slices",
    "ema_decay",
)

#: Called after every optimiser step with (global step, loss); raise KeyboardInterrupt to stop the run.
StepCallback = Callable[[int, float], None]


class Trainer:
    """The state of one run and its loop; `fit` is the entry point."""

    def __init__(self, experiment: Experiment, context: distributed.Context, device: str):
        config = experiment.config
        self.experiment, self.config, self.context, self.device = experiment, config, context, device
        self.folder = config.output_dir
        self.precision: Precision = resolve_precision(config.precision, device)
        self.gpu = device.startswith("cuda")
        model = experiment.model_config.build()
        if experiment.initial_weights is not None:  # fine-tuning; --resume then loads last.pt over it
            model.load_state_dict(experiment.initial_weights)
        model = model.to(device)
        dim = experiment.plan.network_dims  # a slice plan trains its 2D network on 2D patches
        self.memory_format: torch.memory_format | None = None
        if wants_channels_last(config.channels_last, device, dim):
            self.memory_format = channels_last_format(dim)
            model = model.to(memory_format=self.memory_format)
        self.model = model
        self.network = distributed.wrap(model, context, device)  # DDP gives every rank rank 0's weights
        self.average = WeightAverage(model, config.ema_decay) if config.ema_decay else None
        if config.compile:
            self.network = compile_network(self.network, device)
        self.loss = SegmentationLoss(
            config.loss, config.deep_supervision_weights, config.batch_dice, config.dice_background
        )
        self.optimizer = make_optimizer(
            model.parameters(), config.optimizer, config.learning_rate, config.weight_decay, config.momentum
        )
        self.scaler = torch.amp.GradScaler(
            device=torch.device(device).type, enabled=self.precision.needs_scaler
        )
        self.epoch, self.step, self.step_in_epoch, self.elapsed = 0, 0, 0, 0.0
        self.epoch_losses: list[float] = []
        self.best_dice, self.validations_since_best = -math.inf, 0
        self.history: list[dict[str, Any]] = []

    @property
    def published(self) -> torch.nn.Module:
        """The network validated and saved: the weight average when the run keeps one."""
        return self.average.network if self.average else self.model

    # ----- checkpoints -----------------------------------------------------------------------------------
    def _save(self, name: str, full_state: bool, extra: dict[str, Any] | None = None) -> None:
        training: dict[str, Any] = {
            "epoch": self.epoch,
            "step": self.step,
            "fold": self.config.fold,
            "best_mean_dice": self.best_dice if math.isfinite(self.best_dice) else None,
            "config": self.config.to_dict(),
            "patch_size": self.experiment.patch_size,
            **(extra or {}),
        }
        if full_state:
            training.update(
                step_in_epoch=self.step_in_epoch,
                elapsed=self.elapsed,
                epoch_losses=list(self.epoch_losses),
                validations_since_best=self.validations_since_best,
                history=self.history,
                optimizer=self.optimizer.state_dict(),
                scaler=self.scaler.state_dict(),
                rng=capture_rng(),
            )
            if self.average:
                trained = {key: value.detach().cpu() for key, value in self.model.state_dict().items()}
                training.update(trained_weights=trained, average_updates=self.average.updates)
        plan = dataclasses.asdict(self.experiment.plan)
        save_checkpoint(
            self.folder / name,
            self.published,
            self.experiment.model_config,
            plan,
            self.experiment.class_names,
            training,
        )

    def resume(self) -> None:
        """Continue from ``last.pt``: weights, optimiser, scaler, RNG states, position and history."""
        state = load_checkpoint(self.folder / LAST, map_location=self.device)
        training = state["training"]
        saved, now = training["config"], self.config.to_dict()
        for key in RESUME_FIXED_KEYS:
            before, after = saved.get(key), now[key]
            if key == "context_slices":  # None and 0 both mean one slice, no context
                before, after = before or 0, after or 0
            if before != after:
                raise ConfigError(
                    f"{self.folder / LAST}: cannot resume: {key} was {before!r}, "
                    f"the config now says {after!r}"
                )
        if self.average:
            self.average.network.load_state_dict(state["state_dict"])
            self.average.updates = training["average_updates"]
            self.model.load_state_dict(training["trained_weights"])
        else:
            self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(training["optimizer"])
        self.scaler.load_state_dict(training["scaler"])
        restore_rng(training["rng"])
        self.epoch, self.step, self.step_in_epoch = (
            training["epoch"],
            training["step"],
            training["step_in_epoch"],
        )
        self.elapsed, self.epoch_losses = training["elapsed"], list(training["epoch_losses"])
        self.best_dice = training["best_mean_dice"] if training["best_mean_dice"] is not None else -math.inf
        self.validations_since_best, self.history = training["validations_since_best"], training["history"]
        log.info("resumed at epoch %d, step %d", self.epoch, self.step)

    # ----- the loop ----------------------------------------------------------------------------------------
    def _progress(self, total_steps: int) -> float:
        """Share of the budget used: planned steps, or wall-clock time (not in deterministic mode)."""
        progress = self.step / total_steps
        if self.config.max_time and not self.config.deterministic:
            progress = max(progress, self.elapsed / self.config.max_time)
        return progress

    def train_step(self, batch: dict[str, torch.Tensor]) -> float:
        image = batch["image"].to(self.device, non_blocking=True)
        label = batch["label"].to(self.device, non_blocking=True)
        if self.memory_format:
            image = image.contiguous(memory_format=self.memory_format)
        self.optimizer.zero_grad(set_to_none=True)
        with self.precision.autocast():
            output = self.network(image)
        loss = self.loss(output, label)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.average:
            self.average.update(self.model)
        return float(loss.detach())

    def _validate(self, cases) -> dict[str, Any]:
        result = validate(
            self.published,
            cases,
            self.experiment.class_names,
            self.experiment.patch_size,
            self.config.val_overlap,
            self.precision,
            channels_last=self.memory_format is not None,
        )
        row = {
            "val_mean_dice": result["mean_dice"],
            **{f"val_dice_{k}": v for k, v in result["dice"].items()},
        }
        if result["mean_dice"] > self.best_dice:
            self.best_dice, self.validations_since_best = result["mean_dice"], 0
            cases = [
                {"case": record["id"], **dice}
                for record, dice in zip(self.experiment.val_records, result["cases"], strict=True)
            ]
            summary = {"fold": self.config.fold, "epoch": self.epoch, "step": self.step, **result}
            summary["cases"] = cases
            write_text_atomic(self.folder / VALIDATION, json.dumps(summary, indent=1) + "\n")
            self._save(BEST, full_state=False, extra={"validation": row})
        else:
            self.validations_since_best += 1
        return row

    def run(self, on_step: StepCallback | None = None) -> dict[str, Any]:
        exp, config, main = self.experiment, self.config, self.context.is_main
        train_data = training_dataset(
            exp.train_records,
            exp.plan,
            exp.patch_size,
            config.foreground_fraction,
            config.augmentation,
            cache=config.cache,
            cache_dir=self.folder / "cache",
            progress=config.progress and main,
        )
        validating = main and bool(exp.val_records)
        val_data = validation_dataset(exp.val_records, exp.plan, config.cache) if validating else None
        if main and self.average:
            log.info(
                "validating and saving the average of the weights (ema_decay %g), not the weights as "
                "trained; the training loss is that of the trained weights",
                self.average.decay,
            )
        if main and not validating:
            log.info(
                "no validation cases (fold %s): %s will hold the last epoch's weights", config.fold, BEST
            )
        loader = EpochLoader(
            train_data,
            exp.batch_size,
            exp.steps_per_epoch,
            config.seed,
            config.num_workers,
            self.context.rank,
            self.context.world_size,
            pin_memory=self.gpu,
        )
        run_log = RunLog(self.folder, self.history) if main else None
        total_steps = config.epochs * exp.steps_per_epoch
        bar = TrainingBar(total_steps, self.step, config.max_time, self.elapsed, config.progress and main)
        start = time.perf_counter() - self.elapsed
        stop = False
        rate = self.optimizer.param_groups[0]["lr"]  # stays valid if a resumed epoch has no batch left
        try:
            while self.epoch < config.epochs and not stop:
                batches = loader.epoch(self.epoch)
                for _ in range(self.step_in_epoch):  # resuming inside an epoch: replay its first batches
                    next(batches)
                for batch in batches:
                    rate = set_learning_rate(
                        self.optimizer, config.learning_rate, config.schedule, self._progress(total_steps)
                    )
                    loss = self.train_step(batch)
                    self.step, self.step_in_epoch = self.step + 1, self.step_in_epoch + 1
                    self.epoch_losses.append(loss)
                    self.elapsed = time.perf_counter() - start
                    postfix = {"epoch": self.epoch, "loss": f"{loss:.3f}", "lr": f"{rate:.2e}"}
                    bar.update(self.step, self.elapsed, **postfix)
                    if on_step is not None:
                        on_step(self.step, loss)
                    if config.max_time and self.elapsed >= config.max_time:
                        break
                out_of_time = bool(config.max_time and self.elapsed >= config.max_time)
                self.epoch += 1
                row: dict[str, Any] = {
                    "epoch": self.epoch,
                    "step": self.step,
                    "seconds": round(self.elapsed, 2),
                    "learning_rate": rate,
                    "train_loss": distributed.average(float(np.mean(self.epoch_losses)), self.context),
                }
                self.epoch_losses, self.step_in_epoch = [], 0
                last_epoch = self.epoch >= config.epochs or out_of_time
                if validating and (self.epoch % config.val_interval == 0 or last_epoch):
                    row.update(self._validate(val_data))
                    bar.write(
                        f"epoch {self.epoch}: loss {row['train_loss']:.4f}, "
                        f"val mean Dice {row['val_mean_dice']:.4f}"
                    )
                early = (
                    config.early_stopping is not None and self.validations_since_best >= config.early_stopping
                )
                stop = distributed.broadcast_flag(out_of_time or early, self.context)
                self.history.append(row)
                if main:
                    run_log.add(row)
                    self._save(LAST, full_state=True)
                    if not validating:  # fold all: the latest weights are the ones to use
                        self._save(BEST, full_state=False)
                distributed.barrier(self.context)
        except KeyboardInterrupt:
            if main:
                self._save(LAST, full_state=True)
                log.info("interrupted at step %d; continue with --resume", self.step)
            raise
        finally:
            bar.close()
            if run_log is not None:
                run_log.close()
        return {
            "epochs": self.epoch,
            "steps": self.step,
            "seconds": self.elapsed,
            "best_mean_dice": self.best_dice,
            "history": self.history,
            "folder": str(self.folder),
            "model": self.published,
        }


def fit(
    config: RunConfig,
    resume: bool = False,
    on_step: StepCallback | None = None,
    network: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Train as `config` says (the Python twin of ``medseg train``); return a summary of the run.

    `network`: the network the weights will be loaded into (a bundle's ``network_def``); a run that
    would train another one is refused before it starts.

    The summary has ``epochs``, ``steps``, ``seconds``, ``best_mean_dice``, ``history``, ``folder`` and
    ``model`` (the network as trained to the end, its weight average with `RunConfig.ema_decay`;
    ``best.pt`` holds the best validated one, or for fold ``all`` the last epoch's). Torch's thread
    count and deterministic-algorithms flag are set for the run and restored afterwards.
    """
    device = resolve_device(config.device)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    if config.threads:
        torch.set_num_threads(config.threads)
    context = distributed.setup(device)
    try:
        device = distributed.device_for(context, device)
        experiment = prepare(config)
        require_network(experiment.model_config, network)
        seed_everything(config.seed + context.rank, config.deterministic)
        trainer = Trainer(experiment, context, device)
        if context.is_main:
            trainer.folder.mkdir(parents=True, exist_ok=True)
            save_config(config, trainer.folder / "config.yaml")
            save_plan(experiment.plan, trainer.folder / "plans.json")
        if resume and (trainer.folder / LAST).is_file():
            if context.is_main:
                remove_temporaries(trainer.folder)  # left by a run killed while saving
            trainer.resume()
        elif resume:
            log.info("no %s yet in %s: starting from the beginning", LAST, trainer.folder)
        distributed.barrier(context)
        return trainer.run(on_step)
    finally:
        distributed.teardown(context)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
