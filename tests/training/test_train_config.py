"""Bad training configs fail before any training, with one clear line naming the problem."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from train_fixtures import hippocampus_manifest, tiny_config

from medseg.checkpoint import load_checkpoint
from medseg.cli.main import main
from medseg.errors import ConfigError, InputError
from medseg.inference.sliding_window import WindowSettings
from medseg.runtime import precision
from medseg.runtime.distributed import Context
from medseg.runtime.memory_format import wants_channels_last
from medseg.runtime.precision import resolve_precision
from medseg.training.config import RunConfig, config_from_dict, load_config
from medseg.training.experiment import prepare
from medseg.training.trainer import Trainer, fit


@pytest.fixture(scope="module")
def manifest(datasets_dir, tmp_path_factory):
    return hippocampus_manifest(datasets_dir, tmp_path_factory.mktemp("hippo"), train=6, val=2)


def write_yaml(path, config) -> str:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


def test_yaml_and_json_configs_load_to_the_same_run_config(manifest, tmp_path):
    raw = tiny_config(manifest, tmp_path / "run", augmentation={"elastic": True, "affine_prob": 0.5})
    from_yaml = load_config(write_yaml(tmp_path / "c.yaml", raw))
    (tmp_path / "c.json").write_text(json.dumps(raw))
    from_json = load_config(tmp_path / "c.json")
    assert from_yaml == from_json
    assert isinstance(from_yaml, RunConfig) and from_yaml.augmentation.elastic is True
    assert from_yaml.patch_size == [24, 32, 24] and from_yaml.optimizer == "adamw"


def test_unknown_key_names_the_key_and_the_valid_ones(manifest, tmp_path):
    with pytest.raises(ConfigError) as error:
        config_from_dict({**tiny_config(manifest, tmp_path), "learning_rat": 0.1})
    message = str(error.value)
    assert "'learning_rat'" in message and "did you mean 'learning_rate'" in message
    assert "valid keys:" in message and "batch_size" in message and "max_time" in message
    with pytest.raises(ConfigError, match=r"augmentation: unknown key 'flips'.*valid keys: flip"):
        config_from_dict({**tiny_config(manifest, tmp_path), "augmentation": {"flips": True}})


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"batch_size": "four"}, r"batch_size must be int \| None, got 'four'"),
        ({"optimizer": "adam"}, r"optimizer must be one of sgd, adamw, got 'adam'"),
        ({"fold": 5}, r"fold must be in 0\.\.4"),
        ({"fold": "all", "early_stopping": 3}, r"early_stopping needs validation cases; fold all has none"),
        ({"context_slices": -1}, r"context_slices must be a whole number >= 0, got -1"),
        ({"ema_decay": 1.0}, r"ema_decay must be between 0 and 1 \(or left out\), got 1\.0"),
        ({"precision": "fp8"}, r"precision must be one of auto, bf16, fp16, fp32"),
        ({"channels_last": "yes"}, r"channels_last must be auto, true or false, got 'yes'"),
    ],
)
def test_bad_values_are_refused(manifest, tmp_path, change, pattern):
    with pytest.raises(ConfigError, match=pattern):
        config_from_dict({**tiny_config(manifest, tmp_path), **change})


def test_unknown_model_lists_the_valid_models_before_reading_any_image(manifest, tmp_path):
    config = config_from_dict(tiny_config(manifest, tmp_path / "run", model="unett", model_options={}))
    with pytest.raises(
        ConfigError, match=r"unknown model 'unett' \(did you mean 'unet'.*valid models: .*dynunet"
    ):
        prepare(config)
    assert not (tmp_path / "run").exists()


def test_unknown_model_option_is_named(manifest, tmp_path):
    config = config_from_dict(tiny_config(manifest, tmp_path / "run", model_options={"chanels": [8, 16]}))
    with pytest.raises(ConfigError, match=r"model 'unet' has no option 'chanels'.*valid options: channels"):
        prepare(config)


def test_plan_with_the_wrong_channel_count_is_refused(manifest, tmp_path):
    config = config_from_dict(tiny_config(manifest, tmp_path / "run"))
    plan = json.loads(json.dumps(prepare(config).plan.__dict__))
    plan["normalization"] = plan["normalization"] * 2  # a plan made for two-channel data
    (tmp_path / "plans.json").write_text(json.dumps(plan))
    config = config_from_dict(tiny_config(manifest, tmp_path / "run", plan=str(tmp_path / "plans.json")))
    with pytest.raises(
        ConfigError, match=r"plan normalises 2 channel\(s\) but the dataset's cases have \[1\]"
    ):
        fit(config)


def test_missing_data_is_an_input_error_naming_the_path(tmp_path):
    config = config_from_dict({"dataset": str(tmp_path / "nowhere"), "output": str(tmp_path / "run")})
    with pytest.raises(InputError, match="nowhere: no such dataset folder or manifest"):
        fit(config)


def test_cli_prints_one_line_errors_and_checks_a_good_config(manifest, tmp_path, capsys):
    bad = write_yaml(tmp_path / "bad.yaml", {**tiny_config(manifest, tmp_path / "run"), "model": "nope"})
    assert main(["train", bad]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("medseg train: error: unknown model 'nope'") and "\n" not in error
    good = write_yaml(tmp_path / "good.yaml", tiny_config(manifest, tmp_path / "run"))
    assert main(["train", good, "--check", "--set", "batch_size=3"]) == 0
    out = capsys.readouterr().out
    assert "config OK: 6 training / 2 validation cases, unet 3D, patch [24, 32, 24], batch 3" in out
    assert main(["train", good, "--set", "batch_size"]) == 2
    assert "--set expects KEY=VALUE" in capsys.readouterr().err


def test_init_weights_must_name_a_checkpoint_of_the_same_network(manifest, tmp_path, capsys):
    """`--init-weights`: a missing file, a folder of several non-run checkpoints and a checkpoint of
    another network are refused with the path before any training (the fitting case is a slow test)."""
    from infer_models import plan

    from medseg.checkpoint import ModelConfig, save_checkpoint

    good = write_yaml(tmp_path / "good.yaml", tiny_config(manifest, tmp_path / "run"))
    assert main(["train", good, "--check", "--init-weights", str(tmp_path / "none.pt")]) == 2
    assert "none.pt: no such checkpoint file or model folder" in capsys.readouterr().err
    config = ModelConfig("unet", 3, 1, 3, {"channels": [4, 8], "strides": [2], "num_res_units": 0})
    folder = tmp_path / "models"
    for name in ("a.pt", "b.pt"):
        save_checkpoint(
            folder / name, config.build(), config, plan(3, [1.0] * 3, [16] * 3), {0: "background"}
        )
    assert main(["train", good, "--check", "--init-weights", str(folder)]) == 2
    assert "holds several checkpoints; name one of them" in capsys.readouterr().err
    assert main(["train", good, "--check", "--init-weights", str(folder / "a.pt")]) == 2
    error = capsys.readouterr().err
    assert (
        "a.pt holds another network: options {'channels': [4, 8]" in error
        and "(the run: {'channels': [8, 16, 32]" in error
    )


def test_precision_fp16_needs_a_gpu_and_auto_is_bf16_only_on_cpus_that_run_it_natively(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        resolve_precision("fp16", "cpu")
    assert not resolve_precision("bf16", "cpu").needs_scaler
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    native = re.search(r"\b(avx512_bf16|amx_bf16)\b", cpuinfo)  # oneDNN emulates bf16 on other AVX-512
    if cpuinfo:
        assert resolve_precision("auto", "cpu").name == ("bf16" if native else "fp32")
    fake = Path(tmp_path / "cpuinfo")
    monkeypatch.setattr(precision, "CPUINFO", fake)
    for flags, name in (("fpu avx512f avx512bw", "fp32"), ("fpu avx512f avx512_bf16", "bf16")):
        fake.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert resolve_precision("auto", "cpu").name == name
    for native, name in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda native=native: native)
        assert resolve_precision("auto", "cpu").name == name
        assert WindowSettings((8, 8)).precision == name


def test_channels_last_auto_means_gpus_and_3d_on_cpus(manifest, tmp_path):
    assert [wants_channels_last("auto", "cpu", dims) for dims in (2, 3)] == [False, True]
    assert wants_channels_last("auto", "cuda", 2) and not wants_channels_last(False, "cuda", 3)
    assert WindowSettings((8, 8)).channels_last is False and WindowSettings((8, 8, 8)).channels_last is True
    assert WindowSettings((8, 8), channels_last=True).channels_last is True
    trainer = Trainer(prepare(config_from_dict(tiny_config(manifest, tmp_path))), Context(), "cpu")
    weight = next(p for p in trainer.model.parameters() if p.ndim == 5 and p.shape[1] > 1)
    assert trainer.memory_format == torch.channels_last_3d
    assert weight.is_contiguous(memory_format=torch.channels_last_3d) and not weight.is_contiguous()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_run_with_fp16_scaler_and_channels_last(manifest, tmp_path):
    raw = tiny_config(
        manifest, tmp_path / "run", device="cuda", precision="fp16", epochs=1, steps_per_epoch=2
    )
    summary = fit(config_from_dict(raw))
    assert summary["steps"] == 2 and next(summary["model"].parameters()).is_cuda
    assert load_checkpoint(tmp_path / "run" / "last.pt")["training"]["scaler"]["scale"] > 0
