"""A dimension-generic, dilatable ResNet trunk that returns its stage features (for FCN, DeepLab, PSPNet).

Why not `monai.networks.nets.ResNet`: its blocks hard-code ``padding=1`` and have no dilation argument,
and its stages take one scalar stride, so it can neither trade strides for dilation (output stride 8 or
16, as DeepLab and PSPNet need) nor keep a thin z axis at full resolution. This module is the same
architecture (ResNet v1.5: the stride sits on the 3×3 convolution of a bottleneck) written on MONAI's
layer factories, with per-axis strides and dilations. With ``depth=50, width=64, in_channels=3`` it has
exactly the 23,508,032 parameters of the standard ResNet-50 trunk without its classifier.

Stage features, in order (`STAGE_NAMES`): ``stem`` (after the 7×7 conv, stride 2), ``layer1`` (after the
max-pool, stride 4), ``layer2`` (stride 8, FCN's "pool3"), ``layer3`` (stride 16, "pool4"), ``layer4``
(stride 32). Strides are per axis; ``output_stride`` caps the total stride along every axis and turns
each stride it removes into dilation of the later convolutions (Chen et al., DeepLab).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Act, Conv, Norm, Pool
from torch import nn

from medseg.errors import ConfigError
from medseg.models.padding import per_axis

#: Blocks per stage for each supported depth, and whether the depth uses bottleneck blocks.
DEPTHS: dict[int, tuple[tuple[int, int, int, int], bool]] = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
}
STAGE_NAMES = ("stem", "layer1", "layer2", "layer3", "layer4")
#: Default strides of (stem conv, max-pool, layer2, layer3, layer4).
DEFAULT_STRIDES = (2, 2, 2, 2, 2)
#: A bottleneck block's output has this many times its inner width.
BOTTLENECK_EXPANSION = 4

Triple = tuple[int, ...]


def _norm(norm: str, spatial_dims: int, channels: int) -> nn.Module:
    return Norm[norm, spatial_dims](channels, affine=True)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self, spatial_dims: int, in_ch: int, width: int, stride: Triple, dilation: Triple, norm: str
    ):
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.conv1 = conv(in_ch, width, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.norm1 = _norm(norm, spatial_dims, width)
        self.conv2 = conv(width, width, 3, padding=dilation, dilation=dilation, bias=False)
        self.norm2 = _norm(norm, spatial_dims, width)
        self.act = Act[Act.RELU](inplace=True)
        self.shortcut = _shortcut(spatial_dims, in_ch, width, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided, dilated), 1×1 expand, with a residual connection (ResNet-50/101)."""

    expansion = BOTTLENECK_EXPANSION

    def __init__(
        self, spatial_dims: int, in_ch: int, width: int, stride: Triple, dilation: Triple, norm: str
    ):
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        out_ch = width * self.expansion
        self.conv1 = conv(in_ch, width, 1, bias=False)
        self.norm1 = _norm(norm, spatial_dims, width)
        self.conv2 = conv(width, width, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.norm2 = _norm(norm, spatial_dims, width)
        self.conv3 = conv(width, out_ch, 1, bias=False)
        self.norm3 = _norm(norm, spatial_dims, out_ch)
        self.act = Act[Act.RELU](inplace=True)
        self.shortcut = _shortcut(spatial_dims, in_ch, out_ch, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.norm1(self.conv1(x)))
        out = self.act(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        return self.act(out + self.shortcut(x))


def _shortcut(spatial_dims: int, in_ch: int, out_ch: int, stride: Triple, norm: str) -> nn.Module:
    """Identity, or a strided 1×1 convolution + norm when the shape changes (ResNet option B)."""
    if in_ch == out_ch and all(s == 1 for s in stride):
        return nn.Identity()
    conv = Conv[Conv.CONV, spatial_dims](in_ch, out_ch, 1, stride=stride, bias=False)
    return nn.Sequential(conv, _norm(norm, spatial_dims, out_ch))


def plan_strides(
    strides: Sequence[int | Sequence[int]], output_stride: int, spatial_dims: int
) -> tuple[list[Triple], list[Triple]]:
    """Per-stage (stride, dilation) per axis once `output_stride` caps the total stride on each axis.

    A stride that would take an axis past `output_stride` becomes 1 and multiplies the dilation of
    that stage and all later ones instead, so the receptive field is unchanged.
    """
    if len(strides) != len(STAGE_NAMES):
        raise ConfigError(
            f"strides needs {len(STAGE_NAMES)} entries ({', '.join(STAGE_NAMES)}), got {strides!r}"
        )
    if output_stride < 1 or output_stride & (output_stride - 1):
        raise ConfigError(f"output_stride must be a power of two, got {output_stride}")
    total = [1] * spatial_dims
    dilation = [1] * spatial_dims
    stage_strides, stage_dilations = [], []
    for stride in strides:
        stage_stride = list(per_axis(stride, spatial_dims))
        for axis, s in enumerate(stage_stride):
            if total[axis] * s > output_stride:
                dilation[axis] *= s
                stage_stride[axis] = 1
            total[axis] *= stage_stride[axis]
        stage_strides.append(tuple(stage_stride))
        stage_dilations.append(tuple(dilation))
    return stage_strides, stage_dilations


class DilatedResNet(nn.Module):
    """ResNet-18/34/50/101 trunk for 2D or 3D returning the five stage features (see module docstring).

    `width` is the channel count of the stem (64 in the paper); stage widths are width × (1, 2, 4, 8),
    times 4 for bottleneck depths. `strides` lists the stride of (stem conv, max-pool, layer2, layer3,
    layer4), each one number or one per axis (use 1 on a thin z axis).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        depth: int = 50,
        width: int = 64,
        strides: Sequence[int | Sequence[int]] = DEFAULT_STRIDES,
        output_stride: int = 32,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ConfigError(f"backbone depth must be one of {sorted(DEPTHS)}, got {depth}")
        blocks, bottleneck = DEPTHS[depth]
        block = Bottleneck if bottleneck else BasicBlock
        stage_strides, stage_dilations = plan_strides(strides, output_stride, spatial_dims)
        self.strides = stage_strides
        self.dilations = stage_dilations
        stem_stride, pool_stride = stage_strides[0], stage_strides[1]
        self.stem = nn.Sequential(
            Conv[Conv.CONV, spatial_dims](in_channels, width, 7, stride=stem_stride, padding=3, bias=False),
            _norm(norm, spatial_dims, width),
            Act[Act.RELU](inplace=True),
        )
        pool_kernel = tuple(3 if s > 1 else 1 for s in pool_stride)
        self.pool = Pool[Pool.MAX, spatial_dims](
            pool_kernel, stride=pool_stride, padding=tuple(k // 2 for k in pool_kernel)
        )
        self.channels = [width]
        layers = []
        in_ch = width
        for index, count in enumerate(blocks):
            stage_width = width * 2**index
            stride = (1,) * spatial_dims if index == 0 else stage_strides[index + 1]
            dilation = stage_dilations[index + 1]
            stage = []
            for number in range(count):
                stage.append(
                    block(
                        spatial_dims,
                        in_ch,
                        stage_width,
                        stride if number == 0 else (1,) * spatial_dims,
                        dilation,
                        norm,
                    )
                )
                in_ch = stage_width * block.expansion
            layers.append(nn.Sequential(*stage))
            self.channels.append(in_ch)
        self.layer1, self.layer2, self.layer3, self.layer4 = layers

    @property
    def total_strides(self) -> list[tuple[int, ...]]:
        """Per-axis stride of each stage's output relative to the input."""
        totals, running = [], [1] * len(self.strides[0])
        for stride in self.strides:
            running = [r * s for r, s in zip(running, stride, strict=True)]
            totals.append(tuple(running))
        return totals

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.stem(x)
        layer1 = self.layer1(self.pool(stem))
        layer2 = self.layer2(layer1)
        layer3 = self.layer3(layer2)
        layer4 = self.layer4(layer3)
        return [stem, layer1, layer2, layer3, layer4]
