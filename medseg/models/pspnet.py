"""PSPNet (Zhao et al., CVPR 2017) on a dilated 2D/3D ResNet at output stride 8.

The pyramid pooling module average-pools ``layer4`` into 1, 2, 3 and 6 bins per axis, reduces each to
a quarter of the channels with a 1×1 conv, resizes them back and concatenates them with ``layer4``; a
3×3 conv head then predicts the classes, upsampled (bi/tri)linearly to the input size. The auxiliary
head on ``layer3`` (on by default, as in the paper) gives the deep-supervision output; the paper
weights its loss by 0.4 (`medseg.models.heads.PSPNET_AUX_WEIGHT`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medseg.models.backbone import DEFAULT_STRIDES
from medseg.models.heads import (
    BackboneSegmenter,
    ConvHead,
    NativeOptions,
    PooledBranch,
    backbone_divisor,
    resize,
)
from medseg.models.registry import register

#: The paper's head width is 512 for a 2048-channel layer4: a quarter.
HEAD_REDUCTION = 4


class PSPNet(BackboneSegmenter):
    """Dilated ResNet + pyramid pooling module + 3×3 conv head (+ auxiliary head on layer3)."""

    def __init__(self, options: NativeOptions, bins: Sequence[int]) -> None:
        super().__init__(options)
        spatial_dims = options.spatial_dims
        channels = self.backbone.channels[4]
        branch_channels = channels // len(bins)
        self.pyramid = nn.ModuleList(PooledBranch(spatial_dims, channels, branch_channels, b) for b in bins)
        pooled = channels + branch_channels * len(bins)
        head_channels = channels // HEAD_REDUCTION
        self.head = ConvHead(
            spatial_dims, pooled, head_channels, options.out_channels, options.norm, options.dropout
        )

    def logits(self, features: list[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        x = features[4]
        x = torch.cat([x, *(branch(x) for branch in self.pyramid)], dim=1)
        return resize(self.head(x), size)


@register(
    "pspnet",
    family="PSPNet",
    description="PSPNet: dilated ResNet (output stride 8), pyramid pooling (bins 1,2,3,6), auxiliary head",
    divisor=backbone_divisor,
)
def pspnet(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    depth: int = 50,
    width: int = 64,
    strides: Sequence[int | Sequence[int]] = DEFAULT_STRIDES,
    output_stride: int = 8,
    bins: Sequence[int] = (1, 2, 3, 6),
    norm: str = "batch",
    dropout: float = 0.1,
    aux_head: bool = True,
) -> PSPNet:
    options = NativeOptions(
        spatial_dims, in_channels, out_channels, depth, width, strides, output_stride, norm, dropout, aux_head
    )
    return PSPNet(options, bins)
