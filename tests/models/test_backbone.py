"""The shared dilated ResNet trunk and the native heads, checked against published parameter counts."""

from __future__ import annotations

import pytest
import torch

from medseg.models import count_parameters, create_model
from medseg.models.backbone import DilatedResNet, plan_strides
from medseg.models.fcn import LearnedUpsample

#: torchvision's resnet18/resnet50 (11,689,512 / 25,557,032 parameters) minus their 1000-class fc layer
#: (512*1000+1000 / 2048*1000+1000): the standard convolutional trunks.
RESNET18_TRUNK = 11_689_512 - 513_000
RESNET50_TRUNK = 25_557_032 - 2_049_000
#: torchvision segmentation models with a ResNet-50 backbone, 21 classes, auxiliary head included.
TORCHVISION_FCN_RESNET50 = 35_322_218
TORCHVISION_DEEPLABV3_RESNET50 = 42_004_074
#: torchvision's DeepLabHead adds a 3x3 conv 256->256 + BN after ASPP (the paper has none), and batch-
#: normalises the image-pooling branch where medseg uses a conv bias (see medseg.models.heads).
TORCHVISION_DEEPLAB_EXTRA = 256 * 256 * 9 + 2 * 256 + 2 * 256 - 256


def meta_count(name: str, **options) -> int:
    with torch.device("meta"):
        return count_parameters(create_model(name, 2, 3, 21, depth=50, **options))


@pytest.mark.parametrize(("depth", "expected"), [(18, RESNET18_TRUNK), (50, RESNET50_TRUNK)])
def test_backbone_has_the_standard_resnet_trunk_parameter_count(depth, expected):
    with torch.device("meta"):
        backbone = DilatedResNet(2, in_channels=3, depth=depth, width=64)
    assert count_parameters(backbone) == expected


def test_fcn_and_deeplab_heads_match_torchvision_counts():
    # torchvision's fcn_resnet50 is FCN-32s with bilinear upsampling (and a dilated trunk: no parameters).
    assert meta_count("fcn32s", upsample="interpolate", aux_head=True) == TORCHVISION_FCN_RESNET50
    deeplab = meta_count("deeplabv3", aux_head=True)
    assert deeplab + TORCHVISION_DEEPLAB_EXTRA == TORCHVISION_DEEPLABV3_RESNET50


def test_output_stride_turns_late_strides_into_dilation():
    strides, dilations = plan_strides([2, 2, 2, 2, 2], output_stride=8, spatial_dims=2)
    assert strides == [(2, 2), (2, 2), (2, 2), (1, 1), (1, 1)]
    assert dilations == [(1, 1), (1, 1), (1, 1), (2, 2), (4, 4)]
    # A thin z axis (stride 1 in the stem and max-pool) keeps its strides longer.
    strides, dilations = plan_strides([(2, 2, 1), (2, 2, 1), 2, 2, 2], output_stride=8, spatial_dims=3)
    assert strides[3:] == [(1, 1, 2), (1, 1, 2)]
    assert dilations[4] == (4, 4, 1)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_stage_features_have_the_planned_strides(output_stride):
    backbone = DilatedResNet(2, in_channels=1, depth=18, width=4, output_stride=output_stride)
    x = torch.randn(2, 1, 64, 96)
    features = backbone(x)
    for feature, total, channels in zip(features, backbone.total_strides, backbone.channels, strict=True):
        assert feature.shape[1] == channels
        assert tuple(feature.shape[2:]) == (64 // total[0], 96 // total[1])
    assert backbone.total_strides[-1] == (min(32, output_stride),) * 2


def test_learned_upsampling_starts_as_linear_interpolation():
    upsample = LearnedUpsample(2, channels=2, factors=(4, 2))
    ramp = torch.arange(8.0).repeat(2, 2, 8, 1).transpose(2, 3)  # values grow along the first axis
    with torch.no_grad():
        out = upsample(ramp)
    assert out.shape == (2, 2, 32, 16)
    expected = torch.nn.functional.interpolate(
        ramp, scale_factor=(4, 2), mode="bilinear", align_corners=False
    )
    # Away from the zero-padded border, the transposed conv reproduces bilinear interpolation.
    torch.testing.assert_close(out[..., 4:-4, 2:-2], expected[..., 4:-4, 2:-2])
