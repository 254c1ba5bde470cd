"""Every bundle's files: metadata against the vendored MONAI schema, network in/out, shipped weights."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from bundle_cases import BUNDLE_NAMES, BUNDLES_DIR
from monai.bundle import ConfigParser, verify_metadata, verify_net_in_out

from medseg.bundle import publish
from medseg.bundles import inference_defaults
from medseg.checkpoint import load_checkpoint
from medseg.data.datasets import open_dataset
from medseg.data.loading import load_case
from medseg.data.phantom import generate_case
from medseg.data.splits import kfold_splits
from medseg.errors import ConfigError
from medseg.inference.ensemble import load_ensemble
from medseg.metrics.overlap import overlap_per_class
from medseg.training.config import config_from_dict

#: verify_metadata warns that the (vendored, not downloaded) schema file has no hash to check.
pytestmark = pytest.mark.filterwarnings("ignore:No hash value provided:UserWarning")

SCHEMA = Path(__file__).with_name("meta_schema.json")
#: Files of MONAI's bundle layout that every bundle has.
LAYOUT = (
    "configs/metadata.json",
    "configs/train.json",
    "configs/inference.json",
    "configs/evaluate.json",
    "configs/multi_gpu_train.json",
    "docs/README.md",
    "LICENSE",
    "models/model.pt",
)
#: Shipped weights must stay below this size (larger ones are documented for reproduction instead).
MAX_WEIGHTS_BYTES = 20 * 1024**2


def metadata(name: str) -> dict:
    return json.loads((BUNDLES_DIR / name / "configs" / "metadata.json").read_text())


def members(name: str) -> list[Path]:
    """The bundle's shipped checkpoints (``models/*.pt``: several form one ensemble)."""
    return sorted((BUNDLES_DIR / name / "models").glob("*.pt"))


def test_bundle_folders_are_the_shipped_ones():
    found = sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs").is_dir())
    assert found == sorted(BUNDLE_NAMES)


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_layout(name: str):
    missing = [path for path in LAYOUT if not (BUNDLES_DIR / name / path).is_file()]
    assert not missing, f"{name} lacks {missing}"
    assert sum(path.stat().st_size for path in members(name)) < MAX_WEIGHTS_BYTES


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_metadata_matches_schema(name: str):
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(metadata(name), schema)
    # MONAI's own check; the schema file exists, so nothing is downloaded.
    verify_metadata(meta_file=str(BUNDLES_DIR / name / "configs" / "metadata.json"), filepath=str(SCHEMA))


@pytest.mark.parametrize(
    ("field", "edit"),
    [
        ("network_data_format", lambda meta: meta.pop("network_data_format")),
        ("num_channels", lambda meta: meta["network_data_format"]["inputs"]["image"].update(num_channels=0)),
        ("version", lambda meta: meta.update(version="first")),
        ("is_patch_data", lambda meta: meta["network_data_format"]["outputs"]["pred"].pop("is_patch_data")),
    ],
)
def test_schema_refuses_broken_metadata(field: str, edit):
    broken = metadata("hippocampus_mri_3d")
    edit(broken)
    with pytest.raises(jsonschema.ValidationError, match=field):
        jsonschema.validate(broken, json.loads(SCHEMA.read_text()))


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_network_in_out(name: str):
    """MONAI's verify_net_in_out on the inference config's network_def, with its defaults (n=1), as the
    model zoo checks bundles."""
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(BUNDLES_DIR / name / "configs" / "metadata.json"),
        config_file=str(BUNDLES_DIR / name / "configs" / "inference.json"),
        device="cpu",
    )


def state_slice_axis(configs: Path) -> int | None:
    return load_checkpoint(configs.parent / "models" / "model.pt")["model"].get("slice_axis")


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_configs_and_weights_agree(name: str):
    """train.json and inference.json describe one network, which is the one models/model.pt holds."""
    configs = BUNDLES_DIR / name / "configs"
    train, inference = ConfigParser(), ConfigParser()
    train.read_config(str(configs / "train.json"))
    inference.read_config(str(configs / "inference.json"))
    keys = ("model", "model_options", "spatial_dims", "in_channels", "out_channels")
    assert train.get("slice_axis") == inference.get("slice_axis") == state_slice_axis(configs)
    assert {k: train[k] for k in keys} == {k: inference[k] for k in keys}
    state = load_checkpoint(configs.parent / "models" / "model.pt")
    assert state["model"]["name"] == inference["model"]
    assert state["model"]["options"] == inference["model_options"]
    network = inference.get_parsed_content("network_def")
    network.load_state_dict(state["state_dict"])  # strict: every tensor has its place and shape
    meta = metadata(name)["network_data_format"]
    assert len(state["class_names"]) == meta["outputs"]["pred"]["num_channels"] == inference["out_channels"]
    network_dims = 2 if state["plan"].get("slice_axis") is not None else state["plan"]["dim"]
    assert network_dims == inference["spatial_dims"] == len(meta["inputs"]["image"]["spatial_shape"])
    with torch.no_grad():
        shape = [int(str(size).split("*")[0]) for size in meta["inputs"]["image"]["spatial_shape"]]  # n = 1
        assert network.eval()(torch.zeros(1, 1, *shape)).shape == (1, inference["out_channels"], *shape)
    inference["bundle_root"] = str(configs.parent)
    ensemble = load_ensemble([inference.get_parsed_content("model_file")])  # members share plan and classes
    assert ensemble.sources == members(name)  # inference.json runs every shipped member


def test_model_card_records_the_shipped_dice():
    """Each model card quotes the validation Dice stored in each of its checkpoints, and metadata.json
    the same (for an ensemble: per member, beside the ensemble's own figure, which the card quotes)."""
    for name in BUNDLE_NAMES:
        card = (BUNDLES_DIR / name / "docs" / "README.md").read_text()
        metrics = metadata(name)["eval_metrics"]
        dice = {path.name: load_checkpoint(path)["training"]["best_mean_dice"] for path in members(name)}
        for file, value in dice.items():
            assert f"{value:.4f}" in card, f"{name}: model card does not quote {file}'s Dice {value:.4f}"
        if len(dice) == 1:
            assert metrics["val_mean_dice"] == pytest.approx(dice["model.pt"], abs=5e-5)
        else:
            assert metrics["member_val_mean_dice"] == pytest.approx(dice, abs=5e-5)
            assert f"{metrics['val_mean_dice']:.4f}" in card


#: Shipped weights on the first validation cases of their fold: mean foreground Dice at least this
#: (a little below each model card's fold average, which these cases are part of).
SHIPPED_QUALITY = [
    ("hippocampus_mri_3d", "msd_hippocampus", None, 0.75),
    ("hippocampus_deeplab_3d", "msd_hippocampus", None, 0.65),
    ("lung_cxr_2d", "cxr_lung_mc_shenzhen", "XRAY", 0.85),
    ("lgg_flair_2d", "lgg_flair_mri", None, 0.7),
    ("lgg_flair_fcn8s_2d", "lgg_flair_mri", None, 0.7),
]
QUALITY_CASES = 2


@pytest.mark.parametrize(("name", "dataset", "modality", "minimum"), SHIPPED_QUALITY)
def test_shipped_weights_segment_validation_cases(name, dataset, modality, minimum, datasets_dir: Path):
    data = open_dataset(datasets_dir / dataset, modality=modality)
    validation = set(kfold_splits(data.ids)[0]["val"])
    records = [record for record in data.cases if record["id"] in validation][:QUALITY_CASES]
    ensemble = load_ensemble([BUNDLES_DIR / name])
    settings = ensemble.settings(
        precision="fp32", zooms=inference_defaults(BUNDLES_DIR / name).get("tta_zooms")
    )  # as it runs
    scores = []
    for record in records:
        image, label = load_case(record)
        prediction = ensemble.predict(image, settings)
        per_class = overlap_per_class(prediction.array, label.array, ensemble.class_names)
        scores += [float(score["dice"]) for score in per_class.values()]
    assert np.mean(scores) >= minimum, f"{name}: {scores}"


def test_shipped_abdomen_weights_on_a_validation_phantom():
    """phantom_000 (seed 0) is in fold 0's validation set of the shipped abdomen model's 24-case cohort."""
    case = generate_case("phantom_000", seed=0)
    ensemble = load_ensemble([BUNDLES_DIR / "abdomen_ct_3d"])
    prediction = ensemble.predict(case.image, ensemble.settings(precision="fp32"))
    dice = overlap_per_class(prediction.array, case.label.array, ensemble.class_names)
    assert all(float(dice[organ]["dice"]) >= 0.9 for organ in ("liver", "spleen", "kidney")), dice
    assert float(dice["tumour"]["dice"]) >= 0.5, dice


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_multi_gpu_config_merges_onto_train(name: str):
    """configs/multi_gpu_train.json, merged onto train.json as torchrun users pass them, is a valid run."""
    configs = BUNDLES_DIR / name / "configs"
    parser = ConfigParser(
        ConfigParser.load_config_files([str(configs / "train.json"), str(configs / "multi_gpu_train.json")])
    )
    parser["bundle_root"] = str(BUNDLES_DIR / name)
    config = config_from_dict(parser.get_parsed_content("training"))
    single = ConfigParser(ConfigParser.load_config_files(str(configs / "train.json")))
    single["bundle_root"] = str(BUNDLES_DIR / name)
    assert config.device == "cuda" and config.num_workers > 0
    assert config.model_options == single.get_parsed_content("training")["model_options"]


def test_inference_defaults_are_read_from_inference_json_without_evaluating_it(tmp_path: Path):
    assert inference_defaults(BUNDLES_DIR / "lung_cxr_2d")["tta_zooms"] == [0.9, 0.95, 1.05, 1.1]
    assert "tta_zooms" not in inference_defaults(BUNDLES_DIR / "hippocampus_mri_3d")
    assert inference_defaults(BUNDLES_DIR / "hippocampus_mri_3d")["overlap"] == 0.5
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "inference.json").write_text(json.dumps({"run": [{"tta_zooms": "$__import__('os')"}]}))
    with pytest.raises(ConfigError, match=r"inference\.json: tta_zooms must be a literal list"):
        inference_defaults(tmp_path)
    (configs / "inference.json").write_text(json.dumps({"run": [{"tta_zooms": [True, 1.1]}]}))
    with pytest.raises(ConfigError, match=r"inference\.json: tta_zooms must be a literal list"):
        inference_defaults(tmp_path)
    (configs / "inference.json").write_text('{"run": [')
    with pytest.raises(ConfigError, match=r"inference\.json: not a JSON object"):
        inference_defaults(tmp_path)


def test_publishing_warns_of_members_trained_on_another_plan(tmp_path: Path, caplog):
    """Retraining one member of the X-ray ensemble at another pixel size breaks the ensemble: say so."""
    models = tmp_path / "models"
    shutil.copytree(BUNDLES_DIR / "lung_cxr_2d" / "models", models)
    with caplog.at_level(logging.WARNING, logger="medseg.bundle"):
        publish(BUNDLES_DIR / "lung_cxr_2d" / "models" / "model.pt", models / "model.pt")
    assert not caplog.records  # the same plan: still one ensemble
    publish(BUNDLES_DIR / "hippocampus_mri_3d" / "models" / "model.pt", models / "model.pt")
    assert "model_dynunet.pt" in caplog.text and "another plan" in caplog.text
