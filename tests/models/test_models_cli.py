"""`medseg models`: the shipped bundles with their figures, then every architecture with its dimensions,
defaults and parameter count."""

from __future__ import annotations

import json

from medseg.cli.main import main
from medseg.models import count_parameters, create_model, get_spec, list_models


def test_models_json_lists_every_model_with_counts_of_real_builds(capsys):
    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    models = {m["name"]: m for m in listing["architectures"]}
    bundles = {b["name"]: b for b in listing["bundles"]}
    assert sorted(bundles) == [
        "abdomen_ct_3d",
        "hippocampus_deeplab_3d",
        "hippocampus_mri_3d",
        "lgg_flair_2d",
        "lgg_flair_fcn8s_2d",
        "lung_cxr_2d",
    ]
    assert bundles["hippocampus_mri_3d"]["validation"]["val_mean_dice"] > 0.85
    assert "Anterior" in bundles["hippocampus_mri_3d"]["classes"]
    assert "not a medical device" in bundles["hippocampus_mri_3d"]["intended_use"]
    assert sorted(models) == list_models()
    for name, model in models.items():
        assert model["dims"] == [2, 3]
        assert set(model["defaults"]) == set(get_spec(name).defaults)
        assert model["parameters"]["2d"] > 0 and model["parameters"]["3d"] > model["parameters"]["2d"]
    assert models["unet"]["parameters"]["3d"] == count_parameters(create_model("unet", 3, 1, 2))
    assert models["unet"]["defaults"]["channels"] == [16, 32, 64, 128, 256]


def test_models_table_shows_dimensions_and_options(capsys):
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert table.index("lung_cxr_2d") < table.index("Architectures")
    assert "pspnet          2D/3D" in table
    assert "bins=(1, 2, 3, 6)" in table
