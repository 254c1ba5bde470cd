"""Blocks shared by the native FCN, DeepLab and PSPNet models, dimension-generic on MONAI's factories.

Pooled branches (DeepLab's image pooling, PSPNet's pyramid bins) use a biased convolution without
normalisation: with the batch size of 1–2 usual for 3D volumes, batch or instance norm of a 1×1 map is
undefined (PyTorch refuses it), whereas the papers trained with batches of 16 and batch norm there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Act, Conv, Norm, Pool
from torch import nn

from medseg.errors import ConfigError
from medseg.models.backbone import DEFAULT_STRIDES, DilatedResNet, plan_strides
from medseg.models.padding import stride_product

#: Normalisations the native models accept.
NORMS = ("batch", "instance")
#: Loss weight the PSPNet paper gives its auxiliary head (a suggestion for training code).
PSPNET_AUX_WEIGHT = 0.4


def conv_norm_act(
    spatial_dims: int, in_ch: int, out_ch: int, kernel: int, norm: str, dilation: int = 1
) -> nn.Sequential:
    """Convolution (no bias) + normalisation + ReLU, padded to keep the spatial size."""
    conv = Conv[Conv.CONV, spatial_dims](
        in_ch, out_ch, kernel, padding=dilation * (kernel // 2), dilation=dilation, bias=False
    )
    return nn.Sequential(conv, Norm[norm, spatial_dims](out_ch, affine=True), Act[Act.RELU](inplace=True))


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(Bi/tri)linear resize of a feature or logits map to spatial `size`."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    mode = "bilinear" if x.dim() == 4 else "trilinear"
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=False)


class ConvHead(nn.Sequential):
    """3×3 conv + norm + ReLU + dropout + 1×1 classifier (FCN's head, PSPNet's and the auxiliary heads)."""

    def __init__(self, spatial_dims: int, in_ch: int, mid_ch: int, out_ch: int, norm: str, dropout: float):
        super().__init__(
            conv_norm_act(spatial_dims, in_ch, mid_ch, 3, norm),
            nn.Dropout(dropout),
            Conv[Conv.CONV, spatial_dims](mid_ch, out_ch, 1),
        )


class PooledBranch(nn.Module):
    """Adaptive average pooling to `bins` cells, 1×1 conv + ReLU, resized back to the input's size."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int, bins: int):
        super().__init__()
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](bins)
        self.conv = Conv[Conv.CONV, spatial_dims](in_ch, out_ch, 1)
        self.act = Act[Act.RELU](inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize(self.act(self.conv(self.pool(x))), x.shape[2:])


@dataclass(frozen=True)
class NativeOptions:
    """What every native model passes to `BackboneSegmenter` (see `medseg.models.backbone` for the trunk)."""

    spatial_dims: int
    in_channels: int
    out_channels: int
    depth: int
    width: int
    strides: Sequence[int | Sequence[int]]
    output_stride: int
    norm: str
    dropout: float
    aux_head: bool


class BackboneSegmenter(nn.Module):
    """Base of the native models: a `DilatedResNet`, a model-specific head, an optional auxiliary head.

    Subclasses build their head and implement `logits(features, size)`. With ``aux_head=True`` a
    `ConvHead` on ``layer3`` adds a second output in training mode (see `medseg.models.outputs`).
    """

    def __init__(self, options: NativeOptions) -> None:
        super().__init__()
        o = options
        if o.norm not in NORMS:
            raise ConfigError(f"norm must be one of {NORMS}, got {o.norm!r}")
        self.backbone = DilatedResNet(
            o.spatial_dims, o.in_channels, o.depth, o.width, o.strides, o.output_stride, o.norm
        )
        layer3 = self.backbone.channels[3]
        self.aux = (
            ConvHead(o.spatial_dims, layer3, layer3 // 4, o.out_channels, o.norm, o.dropout)
            if o.aux_head
            else None
        )

    def logits(self, features: list[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        size = x.shape[2:]
        features = self.backbone(x)
        main = self.logits(features, size)
        if self.training and self.aux is not None:
            return main, resize(self.aux(features[3]), size)
        return main


def backbone_divisor(spatial_dims: int, options: dict) -> tuple[int, ...]:
    """Required input divisor of a `BackboneSegmenter`: its total stride along each axis."""
    strides = options.get("strides", DEFAULT_STRIDES)
    planned, _ = plan_strides(strides, options.get("output_stride", 32), spatial_dims)
    return stride_product(planned, spatial_dims)
