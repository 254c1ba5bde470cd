"""Registry, option validation, size handling and the deep-supervision helpers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.models import (
    PadToDivisor,
    auxiliary_weights,
    count_parameters,
    create_model,
    deep_supervision_outputs,
    default_parameter_count,
    get_spec,
    list_models,
)

#: The architectures the model zoo promises (issue 4).
PROMISED = {
    "unet", "attention_unet", "unetpp", "dynunet", "segresnet", "unetr", "swin_unetr", "resunet",
    "fcn32s", "fcn16s", "fcn8s", "deeplabv3", "deeplabv3plus", "pspnet",
}  # fmt: skip


def test_every_promised_model_is_registered_for_2d_and_3d():
    assert set(list_models()) == PROMISED
    for name in PROMISED:
        spec = get_spec(name)
        assert spec.dims == (2, 3)
        assert spec.description and spec.family


def test_unknown_model_suggests_the_closest_name_and_lists_all():
    with pytest.raises(ConfigError) as error:
        create_model("untr", 3, 1, 2)
    message = str(error.value)
    assert "'unetr'" in message.split(";")[0]
    assert all(name in message for name in PROMISED)


def test_unknown_option_suggests_the_closest_and_lists_the_valid_ones():
    with pytest.raises(ConfigError) as error:
        create_model("unet", 3, 1, 2, chanels=(4, 8))
    message = str(error.value)
    assert "did you mean 'channels'" in message
    assert all(option in message for option in get_spec("unet").defaults)


def test_invalid_values_are_config_errors():
    with pytest.raises(ConfigError, match="spatial_dims"):
        create_model("unet", 1, 1, 2)
    with pytest.raises(ConfigError, match="out_channels"):
        create_model("unet", 2, 1, 0)
    with pytest.raises(ConfigError, match="depth"):
        create_model("pspnet", 2, 1, 2, depth=42)
    with pytest.raises(ConfigError, match="img_size"):
        create_model("unetr", 2, 1, 2, img_size=40)


def test_defaults_are_the_builder_signature_and_options_reach_monai():
    assert get_spec("unet").defaults["channels"] == (16, 32, 64, 128, 256)
    model = create_model("unet", 3, 2, 4, channels=(4, 8, 16), strides=(2, 2), num_res_units=0)
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    assert convolutions[0].in_channels == 2
    assert {m.out_channels for m in convolutions} >= {4, 8, 16}


def test_parameter_count_on_the_meta_device_matches_a_real_build():
    assert default_parameter_count("unet", 2) == count_parameters(create_model("unet", 2, 1, 2))


def test_divisor_is_recorded_per_axis_for_anisotropic_strides():
    unet = create_model("unet", 3, 1, 2, channels=(4, 8, 16), strides=((2, 2, 1), (2, 2, 1)))
    assert unet.divisor == (4, 4, 1)
    fcn = create_model("fcn8s", 3, 1, 2, depth=18, width=4, strides=((2, 2, 1), (2, 2, 1), 2, 2, 2))
    assert fcn.divisor == (32, 32, 8)
    thin = torch.randn(1, 1, 40, 36, 3)  # three slices: z must not be downsampled by 32
    with torch.no_grad():
        assert fcn.eval()(thin).shape == (1, 2, 40, 36, 3)
        assert unet.eval()(thin).shape == (1, 2, 40, 36, 3)


def test_padding_is_cropped_back_from_the_same_corner():
    seen = []

    class Record(nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape[2:]))
            return x * 2

    x = torch.randn(1, 1, 13, 30, 7)
    y = PadToDivisor(Record(), divisor=(8, 16, 1))(x)
    assert seen == [(16, 32, 7)]
    torch.testing.assert_close(y, x * 2)


def test_fixed_size_models_pad_smaller_inputs_and_refuse_larger_ones():
    model = create_model(
        "unetr", 2, 1, 2, img_size=32, feature_size=4, hidden_size=24, mlp_dim=24, num_heads=2
    )
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 1, 17, 32)).shape == (1, 2, 17, 32)
        with pytest.raises(ConfigError, match=r"up to \(32, 32\)"):
            model(torch.randn(1, 1, 33, 32))


def test_deep_supervision_outputs_normalises_both_forms():
    main = torch.zeros(1, 2, 4, 4)
    assert deep_supervision_outputs(main) == [main]
    aux = torch.ones(1, 2, 4, 4)
    assert deep_supervision_outputs((main, aux)) == [main, aux]
    with pytest.raises(ValueError, match="auxiliary output 1"):
        deep_supervision_outputs((main, torch.ones(1, 2, 2, 2)))


def test_dynunet_stacked_output_is_split_main_first():
    model = create_model(
        "dynunet", 2, 1, 3, kernel_size=(3, 3, 3, 3), strides=(1, 2, 2, 2), filters=(4, 8, 16, 32)
    )
    x = torch.randn(2, 1, 20, 20)
    outputs = deep_supervision_outputs(model.train()(x))
    assert len(outputs) == 3  # main + deep_supr_num=2 heads
    stacked = model.network.network(torch.nn.functional.pad(x, (0, 4, 0, 4)))  # MONAI's own output
    assert stacked.shape == (2, 3, 3, 24, 24)
    for index, output in enumerate(outputs):
        torch.testing.assert_close(output, stacked[:, index, :, :20, :20])


def test_auxiliary_weights_halve_and_sum_to_one():
    weights = auxiliary_weights(3)
    assert weights == pytest.approx([4 / 7, 2 / 7, 1 / 7])
