"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer & Darrell, CVPR 2015) on a 2D/3D ResNet backbone.

The VGG fc6/fc7 layers of the paper become a 3×3 conv head on ``layer4`` (stride 32), as in
torchvision's ResNet FCN. FCN-16s adds a 1×1 score layer on ``layer3`` ("pool4", stride 16) and fuses
it with the 2× upsampled coarse score; FCN-8s also fuses ``layer2`` ("pool3", stride 8). Skip score
layers start at zero, so training starts from the coarser net's prediction, as in the paper. Upsampling
is either learned transposed convolution initialised to (bi/tri)linear interpolation (``"transposed"``,
the paper's choice) or fixed interpolation (``"interpolate"``). Strides are per axis: every upsampling
factor is the ratio of the stage strides along that axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv
from torch import nn

from medseg.errors import ConfigError
from medseg.models.backbone import DEFAULT_STRIDES
from medseg.models.heads import BackboneSegmenter, ConvHead, NativeOptions, backbone_divisor, resize
from medseg.models.registry import register

#: FCN variant -> how many skip stages (layer3, then layer2) are fused.
SKIPS = {32: 0, 16: 1, 8: 2}
UPSAMPLE_MODES = ("transposed", "interpolate")
#: FCN's trunk is not dilated: it runs at the full stride 32.
FCN_OUTPUT_STRIDE = 32
#: The head's inner width is the layer4 width divided by this (torchvision's FCNHead uses 4).
HEAD_REDUCTION = 4


def bilinear_kernel(factors: Sequence[int]) -> torch.Tensor:
    """Separable (bi/tri)linear interpolation kernel of a transposed conv upsampling by `factors`."""
    kernel = torch.ones(())
    for f in factors:
        size = 2 * f - f % 2
        centre = (size - 1) / 2
        line = 1 - torch.abs(torch.arange(size, dtype=torch.float32) - centre) / f
        kernel = kernel.unsqueeze(-1) * line
    return kernel


class LearnedUpsample(nn.Module):
    """Transposed convolution upsampling by integer per-axis `factors`, initialised to interpolation."""

    def __init__(self, spatial_dims: int, channels: int, factors: Sequence[int]):
        super().__init__()
        factors = tuple(factors)
        kernel = tuple(2 * f - f % 2 for f in factors)
        self.conv = Conv[Conv.CONVTRANS, spatial_dims](
            channels, channels, kernel, stride=factors, padding=tuple(f // 2 for f in factors), bias=False
        )
        with torch.no_grad():
            self.conv.weight.zero_()
            interpolation = bilinear_kernel(factors)
            for c in range(channels):
                self.conv.weight[c, c] = interpolation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Always in float32: cuDNN has no fast half-precision kernel for these large 3D kernels (64³
        # for FCN-32s); under bf16 autocast on an H200 FCN-32s 3D ran 400x slower than in float32.
        with torch.autocast(x.device.type, enabled=False):
            return self.conv(x.float())


class FCN(BackboneSegmenter):
    """FCN-`variant`s (32, 16 or 8) on a `DilatedResNet` with output stride 32 (no dilation)."""

    def __init__(self, options: NativeOptions, variant: int, upsample: str) -> None:
        super().__init__(options)
        if upsample not in UPSAMPLE_MODES:
            raise ConfigError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        spatial_dims, out_channels = options.spatial_dims, options.out_channels
        channels = self.backbone.channels
        self.head = ConvHead(
            spatial_dims,
            channels[4],
            channels[4] // HEAD_REDUCTION,
            out_channels,
            options.norm,
            options.dropout,
        )
        skip_stages = [3, 2][: SKIPS[variant]]
        self.skip_stages = skip_stages
        self.skip_scores = nn.ModuleList()
        for stage in skip_stages:
            score = Conv[Conv.CONV, spatial_dims](channels[stage], out_channels, 1)
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)
            self.skip_scores.append(score)
        totals = self.backbone.total_strides
        # Each fusion upsamples from the previous (coarser) stage to the skip stage, then to the input.
        sources = [4, *skip_stages]
        factors = [
            _ratio(totals[coarse], totals[fine]) for coarse, fine in zip(sources, skip_stages, strict=False)
        ]
        factors.append(totals[sources[-1]])
        self.upsamplers = (
            nn.ModuleList(LearnedUpsample(spatial_dims, out_channels, f) for f in factors)
            if upsample == "transposed"
            else None
        )

    def logits(self, features: list[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        score = self.head(features[4])
        for index, (stage, skip_score) in enumerate(zip(self.skip_stages, self.skip_scores, strict=True)):
            skip = skip_score(features[stage])
            score = self._upsample(score, index, skip.shape[2:]) + skip
        return self._upsample(score, len(self.skip_stages), size)

    def _upsample(self, score: torch.Tensor, index: int, size: Sequence[int]) -> torch.Tensor:
        if self.upsamplers is None:
            return resize(score, size)
        return self.upsamplers[index](score)


def _ratio(coarse: Sequence[int], fine: Sequence[int]) -> tuple[int, ...]:
    return tuple(c // f for c, f in zip(coarse, fine, strict=True))


def _build(variant: int):
    def build(
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        depth: int = 50,
        width: int = 64,
        strides: Sequence[int | Sequence[int]] = DEFAULT_STRIDES,
        upsample: str = "transposed",
        norm: str = "batch",
        dropout: float = 0.1,
        aux_head: bool = False,
    ) -> FCN:
        options = NativeOptions(
            spatial_dims,
            in_channels,
            out_channels,
            depth,
            width,
            strides,
            FCN_OUTPUT_STRIDE,
            norm,
            dropout,
            aux_head,
        )
        return FCN(options, variant, upsample)

    build.__name__ = f"fcn{variant}s"
    return build


for _variant in SKIPS:
    register(
        f"fcn{_variant}s",
        family="FCN",
        description=f"FCN-{_variant}s: ResNet backbone, "
        + ("no skips" if _variant == 32 else f"{SKIPS[_variant]} skip fusion(s)")
        + f", {_variant}x final upsampling",
        divisor=backbone_divisor,
    )(_build(_variant))
