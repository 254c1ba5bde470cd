"""Tiny configurations of every registered model, and the real 2D/3D samples the models overfit.

Widths are as small as each architecture allows so the whole suite stays within its CPU budget. The
options also exercise what matters in 3D: per-stage strides (no max-pool downsampling), a
full-resolution stem (resunet) and group norm where instance norm would see a single voxel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from medseg.io.image import LabelMap
from medseg.io.volume import read_volume
from medseg.models import get_spec
from medseg.models.unet_family import UNETR_PATCH

#: Case overfitted in 3D, at half resolution (every second voxel: 2 mm) and centre-cropped to a shape
#: that still holds its whole hippocampus; full-resolution 3D networks are expensive on a CPU.
HIPPOCAMPUS_CASE = "hippocampus_001"
HIPPOCAMPUS_SHAPE = (16, 24, 16)
#: Chest X-ray overfitted in 2D, downsampled from 512² to this size.
CXR_CASE = "CHNCXR_0006_0"
CXR_SIZE = 64
#: The CXR masks are anti-aliased 8-bit images: lung is > 127.
CXR_MASK_THRESHOLD = 127

_BACKBONE = {"depth": 18, "width": 8, "dropout": 0.0}


def tiny_options(name: str, spatial_dims: int, input_shape: tuple[int, ...]) -> dict:
    """Small options of model `name` for inputs of spatial `input_shape` (UNETR's img_size depends on it)."""
    options = {
        "unet": {"channels": (8, 16, 32), "strides": (2, 2), "num_res_units": 1},
        "attention_unet": {"channels": (8, 16, 32), "strides": (2, 2)},
        "unetpp": {"features": (4, 4, 8, 8, 16, 4), "deep_supervision": True, "upsample": "nontrainable"},
        "dynunet": {
            "kernel_size": (3, 3, 3),
            "strides": (1, 2, 2),
            "filters": (8, 16, 32),
            "deep_supr_num": 1,
        },
        "segresnet": {"init_filters": 8, "blocks_down": (1, 1, 1), "blocks_up": (1, 1)},
        "unetr": {"feature_size": 8, "hidden_size": 48, "mlp_dim": 96, "num_heads": 4},
        "swin_unetr": {
            "feature_size": 12,
            "depths": (1, 1, 1, 1),
            "num_heads": (1, 1, 2, 2),
            "window_size": 4,
            "norm_name": ("group", {"num_groups": 1}),
        },
        "resunet": {
            "depth": 10,
            "block_inplanes": (8, 16, 32, 64),
            "decoder_channels": (32, 16, 16, 8),
            "conv1_t_stride": 1,
        },
        "fcn32s": dict(_BACKBONE),
        "fcn16s": dict(_BACKBONE),
        "fcn8s": dict(_BACKBONE),
        "deeplabv3": {**_BACKBONE, "aspp_channels": 16, "output_stride": 8, "aux_head": True},
        "deeplabv3plus": {**_BACKBONE, "aspp_channels": 16},
        "pspnet": dict(_BACKBONE),
    }[name]
    if spatial_dims == 3 and name.startswith("fcn"):
        options["strides"] = (2, 1, 2, 2, 2)  # no max-pool downsampling: a small volume keeps 2+ voxels
    elif spatial_dims == 3 and get_spec(name).family in ("DeepLab", "PSPNet"):
        # Total stride 2: at their usual 8 the 2 mm hippocampus spans too few feature voxels. Half the
        # width keeps these finer feature maps cheap.
        options.update(strides=(2, 1, 1, 1, 1), width=4)
    if name == "unetr":
        options["img_size"] = tuple(-(-n // UNETR_PATCH) * UNETR_PATCH for n in input_shape)
    return options


@pytest.fixture(scope="session")
def tiny():
    """`tiny_options` as a fixture, so test modules need not import this conftest."""
    return tiny_options


@pytest.fixture(scope="module", autouse=True)
def _single_thread(one_torch_thread):
    """Every model test runs on one torch thread (see `one_torch_thread` in tests/conftest.py)."""


def _fit(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Centre-crop or zero-pad `array` to `shape`."""
    out = np.zeros(shape, array.dtype)
    source, target = [], []
    for n, s in zip(array.shape, shape, strict=True):
        start = abs(n - s) // 2
        source.append(slice(start, start + s) if n >= s else slice(0, n))
        target.append(slice(0, s) if n >= s else slice(start, start + n))
    out[tuple(target)] = array[tuple(source)]
    return out


def _zscore(array: np.ndarray) -> np.ndarray:
    return ((array - array.mean()) / array.std()).astype(np.float32)


def _with_mirror(image: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of the image and its mirror along the first axis, as (2, 1, ...) tensors.

    Two samples, not one: for batch 1, PyTorch's CPU conv3d takes its slow native path (not oneDNN).
    """
    images = np.stack([image, np.flip(image, 0)])[:, None]
    labels = np.stack([labels, np.flip(labels, 0)])[:, None]
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.copy())


@pytest.fixture(scope="session")
def hippocampus_sample(datasets_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One real MSD hippocampus MRI (z-scored, 2 mm) and its mirror with labels 0/1/2: (2, 1, 16, 24, 16)."""
    folder = datasets_dir / "msd_hippocampus"
    image = read_volume(folder / "imagesTr" / f"{HIPPOCAMPUS_CASE}.nii.gz").array.astype(np.float32)
    labels = read_volume(folder / "labelsTr" / f"{HIPPOCAMPUS_CASE}.nii.gz", LabelMap).array
    half = (slice(None, None, 2),) * 3
    image = _fit(_zscore(image)[half], HIPPOCAMPUS_SHAPE)
    return _with_mirror(image, _fit(labels[half].astype(np.int64), HIPPOCAMPUS_SHAPE))


@pytest.fixture(scope="session")
def cxr_sample(datasets_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One real chest X-ray and its mirror with lung masks, shapes (2, 1, CXR_SIZE, CXR_SIZE); mask 0/1."""
    folder = datasets_dir / "cxr_lung_mc_shenzhen"
    size = (CXR_SIZE, CXR_SIZE)
    with PILImage.open(folder / "images" / f"{CXR_CASE}.png") as png:
        image = np.asarray(png.convert("L").resize(size, PILImage.Resampling.BILINEAR), np.float32)
    with PILImage.open(folder / "masks" / f"{CXR_CASE}.png") as png:
        mask = np.asarray(png.convert("L").resize(size, PILImage.Resampling.BILINEAR)) > CXR_MASK_THRESHOLD
    return _with_mirror(_zscore(image), mask.astype(np.int64))
