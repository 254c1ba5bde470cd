"""U-Net family: MONAI's networks registered under medseg names, keeping MONAI's option names.

Each builder exposes the MONAI options that matter for medical volumes, with medseg defaults where
MONAI has none. Networks with deep supervision are adapted to `medseg.models.outputs`' contract:
DynUNet's stacked training output is split into a tuple, and UNet++'s list is reordered main-first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks import nets
from torch import nn

from medseg.errors import ConfigError
from medseg.models.padding import per_axis, stride_product
from medseg.models.registry import register

Strides = Sequence[int | Sequence[int]]

#: BasicUNet++ pools 4 times by 2.
UNETPP_DIVISOR = 16
#: UNETR's ViT cuts the image into 16-voxel patches.
UNETR_PATCH = 16
#: SwinUNETR: patch size 2, then 4 patch-merging stages of 2.
SWIN_DIVISOR = 32


def _strides_divisor(spatial_dims: int, options: dict) -> tuple[int, ...]:
    return stride_product(options["strides"], spatial_dims)


def _fixed(divisor: int):
    def rule(spatial_dims: int, options: dict) -> tuple[int, ...]:
        return (divisor,) * spatial_dims

    return rule


@register(
    "unet",
    family="U-Net",
    description="MONAI UNet: residual units, strided-conv downsampling (Kerfoot et al.)",
    divisor=_strides_divisor,
)
def unet(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    strides: Strides = (2, 2, 2, 2),
    kernel_size: int | Sequence[int] = 3,
    up_kernel_size: int | Sequence[int] = 3,
    num_res_units: int = 2,
    act: str | tuple = "PRELU",
    norm: str | tuple = "INSTANCE",
    dropout: float = 0.0,
) -> nn.Module:
    return nets.UNet(
        spatial_dims,
        in_channels,
        out_channels,
        channels,
        strides,
        kernel_size,
        up_kernel_size,
        num_res_units,
        act,
        norm,
        dropout,
    )


@register(
    "attention_unet",
    family="U-Net",
    description="MONAI AttentionUnet: U-Net with attention gates on the skips (Oktay et al.)",
    divisor=_strides_divisor,
)
def attention_unet(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    strides: Strides = (2, 2, 2, 2),
    kernel_size: int | Sequence[int] = 3,
    up_kernel_size: int | Sequence[int] = 3,
    dropout: float = 0.0,
) -> nn.Module:
    return nets.AttentionUnet(
        spatial_dims, in_channels, out_channels, channels, strides, kernel_size, up_kernel_size, dropout
    )


class MainFirst(nn.Module):
    """Adapts BasicUNet++'s output list ``[x_0_1, ..., x_0_4]`` to ``x_0_4`` / ``(x_0_4, x_0_3, ...)``."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = self.network(x)
        if self.training and len(outputs) > 1:
            return tuple(reversed(outputs))
        return outputs[-1]


@register(
    "unetpp",
    family="U-Net",
    description="MONAI BasicUNetPlusPlus: nested dense skips, optional deep supervision (Zhou et al.)",
    divisor=_fixed(UNETPP_DIVISOR),
)
def unetpp(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    features: Sequence[int] = (32, 32, 64, 128, 256, 32),
    deep_supervision: bool = False,
    act: str | tuple = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
    norm: str | tuple = ("instance", {"affine": True}),
    dropout: float = 0.0,
    upsample: str = "deconv",
) -> nn.Module:
    network = nets.BasicUNetPlusPlus(
        spatial_dims,
        in_channels,
        out_channels,
        features,
        deep_supervision,
        act,
        norm,
        True,
        dropout,
        upsample,
    )
    return MainFirst(network)


class SplitStacked(nn.Module):
    """Adapts DynUNet's stacked training output ``(B, 1 + heads, C, ...)`` to a tuple, main first."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        output = self.network(x)
        if self.training and self.network.deep_supervision:
            return tuple(output.unbind(dim=1))
        return output


@register(
    "dynunet",
    family="U-Net",
    description="MONAI DynUNet: nnU-Net-style U-Net, per-level kernels/strides, deep supervision",
    divisor=_strides_divisor,
)
def dynunet(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    kernel_size: Strides = (3, 3, 3, 3, 3),
    strides: Strides = (1, 2, 2, 2, 2),
    upsample_kernel_size: Strides | None = None,
    filters: Sequence[int] | None = (16, 32, 64, 128, 256),
    dropout: float | None = None,
    norm_name: str | tuple = ("INSTANCE", {"affine": True}),
    act_name: str | tuple = ("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
    deep_supervision: bool = True,
    deep_supr_num: int = 2,
    res_block: bool = False,
) -> nn.Module:
    """`upsample_kernel_size` None means ``strides[1:]`` (nnU-Net's choice)."""
    if len(kernel_size) != len(strides):
        raise ConfigError(
            f"dynunet: kernel_size and strides need one entry per level, got {kernel_size}, {strides}"
        )
    network = nets.DynUNet(
        spatial_dims,
        in_channels,
        out_channels,
        kernel_size,
        strides,
        strides[1:] if upsample_kernel_size is None else upsample_kernel_size,
        filters=filters,
        dropout=dropout,
        norm_name=norm_name,
        act_name=act_name,
        deep_supervision=deep_supervision,
        deep_supr_num=deep_supr_num,
        res_block=res_block,
    )
    return SplitStacked(network)


@register(
    "segresnet",
    family="U-Net",
    description="MONAI SegResNet: residual encoder-decoder (Myronenko, BraTS 2018), no VAE branch",
    divisor=lambda spatial_dims, options: (2 ** (len(options["blocks_down"]) - 1),) * spatial_dims,
)
def segresnet(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    init_filters: int = 8,
    blocks_down: Sequence[int] = (1, 2, 2, 4),
    blocks_up: Sequence[int] = (1, 1, 1),
    dropout_prob: float | None = None,
    act: str | tuple = ("RELU", {"inplace": True}),
    norm: str | tuple = ("GROUP", {"num_groups": 8}),
    upsample_mode: str = "nontrainable",
) -> nn.Module:
    return nets.SegResNet(
        spatial_dims=spatial_dims,
        init_filters=init_filters,
        in_channels=in_channels,
        out_channels=out_channels,
        dropout_prob=dropout_prob,
        act=act,
        norm=norm,
        blocks_down=tuple(blocks_down),
        blocks_up=tuple(blocks_up),
        upsample_mode=upsample_mode,
    )


@register(
    "unetr",
    family="Transformer U-Net",
    description="MONAI UNETR: ViT encoder on 16-voxel patches, conv decoder (fixed img_size)",
    divisor=_fixed(UNETR_PATCH),
    fixed_size_option="img_size",
)
def unetr(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    img_size: int | Sequence[int] = 96,
    feature_size: int = 16,
    hidden_size: int = 768,
    mlp_dim: int = 3072,
    num_heads: int = 12,
    proj_type: str = "conv",
    norm_name: str | tuple = "instance",
    res_block: bool = True,
    dropout_rate: float = 0.0,
) -> nn.Module:
    """Inputs up to `img_size` are padded to it; the learned position embeddings fix the size.

    MONAI's transformer blocks always build a cross-attention LayerNorm that UNETR never calls; it is
    frozen so that every trainable parameter gets a gradient (DistributedDataParallel requires it).
    """
    size = per_axis(img_size, spatial_dims)
    if any(s % UNETR_PATCH for s in size):
        raise ConfigError(
            f"unetr: img_size must be a multiple of {UNETR_PATCH} on every axis, got {img_size}"
        )
    network = nets.UNETR(
        in_channels,
        out_channels,
        size,
        feature_size=feature_size,
        hidden_size=hidden_size,
        mlp_dim=mlp_dim,
        num_heads=num_heads,
        proj_type=proj_type,
        norm_name=norm_name,
        res_block=res_block,
        dropout_rate=dropout_rate,
        spatial_dims=spatial_dims,
    )
    for block in network.vit.blocks:
        block.norm_cross_attn.requires_grad_(False)
    return network


@register(
    "swin_unetr",
    family="Transformer U-Net",
    description="MONAI SwinUNETR: shifted-window transformer encoder, conv decoder (Hatamizadeh et al.)",
    divisor=_fixed(SWIN_DIVISOR),
)
def swin_unetr(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    feature_size: int = 24,
    depths: Sequence[int] = (2, 2, 2, 2),
    num_heads: Sequence[int] = (3, 6, 12, 24),
    window_size: int | Sequence[int] = 7,
    norm_name: str | tuple = "instance",
    drop_rate: float = 0.0,
    attn_drop_rate: float = 0.0,
    dropout_path_rate: float = 0.0,
    use_checkpoint: bool = False,
    use_v2: bool = False,
) -> nn.Module:
    return nets.SwinUNETR(
        in_channels,
        out_channels,
        depths=depths,
        num_heads=num_heads,
        window_size=window_size,
        feature_size=feature_size,
        norm_name=norm_name,
        drop_rate=drop_rate,
        attn_drop_rate=attn_drop_rate,
        dropout_path_rate=dropout_path_rate,
        use_checkpoint=use_checkpoint,
        spatial_dims=spatial_dims,
        use_v2=use_v2,
    )
