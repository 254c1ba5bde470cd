"""DeepLabV3 (Chen et al. 2017) and DeepLabV3+ (Chen et al. 2018) on a dilated 2D/3D ResNet.

The backbone runs at output stride 16 or 8 (the papers'; any power of two for small medical patches):
the last stride(s) become dilation. ASPP has a 1×1 branch, three 3×3 atrous branches (rates 6, 12, 18
at output stride 16, doubled at 8, as in the paper) and an image-pooling branch; their concatenation is
projected to `aspp_channels` by a 1×1 conv. DeepLabV3 maps
that to classes with a 1×1 conv and upsamples (bi/tri)linearly; DeepLabV3+ first upsamples to ``layer1``
(stride 4), concatenates its 1×1-reduced low-level features and refines with two 3×3 convs.

MONAI's `SimpleASPP` is not used: it has no image-pooling branch nor per-branch normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv
from torch import nn

from medseg.models.backbone import DEFAULT_STRIDES
from medseg.models.heads import (
    BackboneSegmenter,
    NativeOptions,
    PooledBranch,
    backbone_divisor,
    conv_norm_act,
    resize,
)
from medseg.models.registry import register

#: Atrous rates of the paper at output stride 16; they double at output stride 8.
PAPER_RATES_OS16 = (6, 12, 18)
#: DeepLabV3+ reduces the low-level features to this fraction of the ASPP width (48 of 256 in the paper).
LOW_LEVEL_FRACTION = 48 / 256


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with image pooling, projected to `out_ch` channels."""

    def __init__(
        self, spatial_dims: int, in_ch: int, out_ch: int, rates: Sequence[int], norm: str, dropout: float
    ):
        super().__init__()
        branches = [conv_norm_act(spatial_dims, in_ch, out_ch, 1, norm)]
        branches += [conv_norm_act(spatial_dims, in_ch, out_ch, 3, norm, dilation=rate) for rate in rates]
        branches.append(PooledBranch(spatial_dims, in_ch, out_ch, bins=1))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(
            conv_norm_act(spatial_dims, out_ch * len(branches), out_ch, 1, norm), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


class DeepLab(BackboneSegmenter):
    """DeepLabV3, or DeepLabV3+ when `plus` is true."""

    def __init__(
        self, options: NativeOptions, plus: bool, atrous_rates: Sequence[int] | None, aspp_channels: int
    ) -> None:
        super().__init__(options)
        if atrous_rates is None:
            atrous_rates = tuple(r * 16 // options.output_stride for r in PAPER_RATES_OS16)
        spatial_dims, norm = options.spatial_dims, options.norm
        channels = self.backbone.channels
        conv = Conv[Conv.CONV, spatial_dims]
        self.aspp = ASPP(spatial_dims, channels[4], aspp_channels, atrous_rates, norm, options.dropout)
        self.plus = plus
        if plus:
            low_channels = max(1, round(aspp_channels * LOW_LEVEL_FRACTION))
            self.reduce_low = conv_norm_act(spatial_dims, channels[1], low_channels, 1, norm)
            self.decoder = nn.Sequential(
                conv_norm_act(spatial_dims, aspp_channels + low_channels, aspp_channels, 3, norm),
                conv_norm_act(spatial_dims, aspp_channels, aspp_channels, 3, norm),
            )
        self.classifier = conv(aspp_channels, options.out_channels, 1)

    def logits(self, features: list[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        x = self.aspp(features[4])
        if self.plus:
            low = self.reduce_low(features[1])
            x = self.decoder(torch.cat([resize(x, low.shape[2:]), low], dim=1))
        return resize(self.classifier(x), size)


def _build(plus: bool):
    def build(
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        depth: int = 50,
        width: int = 64,
        strides: Sequence[int | Sequence[int]] = DEFAULT_STRIDES,
        output_stride: int = 16,
        atrous_rates: Sequence[int] | None = None,
        aspp_channels: int = 256,
        norm: str = "batch",
        dropout: float = 0.1,
        aux_head: bool = False,
    ) -> DeepLab:
        options = NativeOptions(
            spatial_dims,
            in_channels,
            out_channels,
            depth,
            width,
            strides,
            output_stride,
            norm,
            dropout,
            aux_head,
        )
        return DeepLab(options, plus, atrous_rates, aspp_channels)

    return build


register(
    "deeplabv3",
    family="DeepLab",
    description="DeepLabV3: dilated ResNet (output stride 16/8), ASPP with image pooling",
    divisor=backbone_divisor,
)(_build(plus=False))
register(
    "deeplabv3plus",
    family="DeepLab",
    description="DeepLabV3+: DeepLabV3 with a decoder fusing stride-4 low-level features",
    divisor=backbone_divisor,
)(_build(plus=True))
