"""ResNet-encoder U-Net: MONAI's `ResNet` as encoder, MONAI's `UpCat` blocks as decoder.

Unlike MONAI's `FlexibleUNet` (whose ResNet encoders have fixed ImageNet widths), the encoder widths
are an option, so the same architecture can be built tiny for tests or wide for real data. The five
encoder features (stem at stride 2, then ``layer1``–``layer4`` at strides 4–32) feed four U-Net up
steps with skips and a last up step to full resolution without skip. With ``conv1_t_stride=1`` the stem
keeps full resolution (divisor 16 instead of 32, for small inputs) and that last up step is left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv
from monai.networks.nets import ResNet
from monai.networks.nets.basic_unet import UpCat
from torch import nn

from medseg.errors import ConfigError
from medseg.models.registry import register

#: MONAI ResNet (block, blocks per stage) for each depth.
ENCODERS = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}
#: Max-pool 2, then three strided stages; the stem conv multiplies this by its stride.
ENCODER_DIVISOR = 16
BOTTLENECK_EXPANSION = 4


class ResNetUNet(nn.Module):
    """U-Net whose encoder is a MONAI `ResNet` (see module docstring)."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        depth: int,
        block_inplanes: Sequence[int],
        decoder_channels: Sequence[int],
        conv1_t_stride: int,
        act: str | tuple,
        norm: str | tuple,
    ) -> None:
        super().__init__()
        if depth not in ENCODERS:
            raise ConfigError(f"resunet: depth must be one of {sorted(ENCODERS)}, got {depth}")
        if conv1_t_stride not in (1, 2):
            raise ConfigError(f"resunet: conv1_t_stride must be 1 or 2, got {conv1_t_stride}")
        up_steps = 3 + conv1_t_stride
        if len(block_inplanes) != 4 or len(decoder_channels) != up_steps:
            raise ConfigError(
                f"resunet: block_inplanes needs 4 widths and decoder_channels {up_steps} with "
                f"conv1_t_stride={conv1_t_stride}, got {block_inplanes} and {decoder_channels}"
            )
        block, layers = ENCODERS[depth]
        self.encoder = ResNet(
            block,
            list(layers),
            list(block_inplanes),
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_stride=conv1_t_stride,
            feed_forward=False,
            bias_downsample=False,
        )
        expansion = BOTTLENECK_EXPANSION if block == "bottleneck" else 1
        skips = [w * expansion for w in reversed(block_inplanes[:3])] + [block_inplanes[0], 0][: up_steps - 3]
        inputs = [block_inplanes[3] * expansion, *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(
            UpCat(spatial_dims, i, s, o, act, norm, bias=False)
            for i, s, o in zip(inputs, skips, decoder_channels, strict=True)
        )
        self.classifier = Conv[Conv.CONV, spatial_dims](decoder_channels[-1], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.encoder
        stem = e.act(e.bn1(e.conv1(x)))
        layer1 = e.layer1(e.maxpool(stem))
        layer2 = e.layer2(layer1)
        layer3 = e.layer3(layer2)
        x = e.layer4(layer3)
        for up, skip in zip(self.decoder, (layer3, layer2, layer1, stem, None), strict=False):
            x = up(x, skip)
        return self.classifier(x)


@register(
    "resunet",
    family="U-Net",
    description="U-Net with a MONAI ResNet-10/18/34/50 encoder and UpCat decoder",
    divisor=lambda spatial_dims, options: (ENCODER_DIVISOR * options["conv1_t_stride"],) * spatial_dims,
)
def resunet(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    depth: int = 18,
    block_inplanes: Sequence[int] = (64, 128, 256, 512),
    decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
    conv1_t_stride: int = 2,
    act: str | tuple = ("relu", {"inplace": True}),
    norm: str | tuple = ("batch", {"affine": True}),
) -> ResNetUNet:
    return ResNetUNet(
        spatial_dims,
        in_channels,
        out_channels,
        depth,
        block_inplanes,
        decoder_channels,
        conv1_t_stride,
        act,
        norm,
    )
