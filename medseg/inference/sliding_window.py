"""Sliding-window segmentation with bounded memory: windows are stitched slab by slab along the last axis.

MONAI's `sliding_window_inference` keeps a float32 score volume per class for the whole image (a
512×512×600 CT and a 15-class model: 9.4 GB). Here windows are visited in order of their start on the
last axis, their gaussian-weighted class scores are added into a buffer that is only one window deep
on that axis, and as soon as no remaining window reaches a slab of slices, that slab's argmax is
written into the uint8 label volume and the buffer moves on. Window batches are cut from that one
ordered list, so a batch may span two starts (its windows are added one at a time, the buffer moving
on between them): only the volume's last batch is short, not every slab's. The buffer
lives on the networks' device with the image (on a GPU the image crosses once, and only each finished
slab's labels come back) and is half precision by default: class scores only need to stay ordered, and
float16 keeps three decimal digits of a logit sum.

Every score is a sum (over overlapping windows, ensemble members and mirrored copies): the argmax of a
sum is the argmax of the mean, so no count map and no division are needed. `segment_scores` keeps the
scores instead of their argmax and divides by a one-channel map of summed weights: the mean scores, for
labels that are to be interpolated onto another grid (`medseg.inference.ensemble`).

`segment_with_uncertainty` also stitches each pass's softmax probabilities the same way and returns the
normalised predictive entropy of their mean, H(p̄) / log(classes) in [0, 1]: 0 where every member and
mirrored copy is sure of one class, 1 where the mean is uniform. With test-time mirroring or an
ensemble it grows where the passes disagree, which is what a reader wants to see.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from medseg.errors import ConfigError
from medseg.runtime.compilation import compile_network
from medseg.runtime.memory_format import channels_last_format, wants_channels_last
from medseg.runtime.precision import CHOICES, DTYPES, auto_precision

#: Stitching buffer types.
ACCUMULATORS = {"fp16": torch.float16, "fp32": torch.float32}
#: Gaussian sigma as a share of the window size (nnU-Net and MONAI use 1/8).
SIGMA_SCALE = 0.125
#: Test-time zoom factors allowed: beyond these the networks see anatomy at sizes they never trained on.
MIN_ZOOM, MAX_ZOOM = 0.5, 2.0
#: Smallest gaussian weight, so that every voxel of a window counts a little (MONAI's floor).
MIN_WEIGHT = 1e-3


@dataclass(frozen=True)
class WindowSettings:
    """How windows are cut, run and blended."""

    roi_size: tuple[int, ...]
    overlap: float = 0.5
    batch_size: int = 4
    #: Spatial axes (0 = first array axis) mirrored for test-time augmentation; every subset is run.
    mirror_axes: tuple[int, ...] = ()
    #: Magnifications for test-time zooming (`medseg.inference.tta_zoom`); 1.0 is always among them.
    zooms: tuple[float, ...] = (1.0,)
    #: Autocast of the forward pass: bf16, fp16, fp32, or auto (`medseg.runtime.precision.auto_precision`).
    precision: str = "auto"
    accumulate: str = "fp16"
    #: Channels-last memory format for the networks and their inputs: true, false, or auto (GPUs, and 3D
    #: on CPUs, where a 3D U-Net's forward pass was 1.6× faster; `medseg.runtime.memory_format`).
    channels_last: bool | str = "auto"
    #: Rank of the networks' convolutions where it differs from the windows' (2 for a 2D network run on
    #: 3D windows slice by slice, `medseg.models.slicewise`); None: the windows' rank.
    network_dims: int | None = None
    #: The spatial axis a 2D network steps through on 3D volumes (the plan's `slice_axis`): test-time
    #: zooms leave it alone. None: every axis is zoomed.
    slice_axis: int | None = None
    device: str = "cpu"
    #: Run the networks through `torch.compile` (inductor): a 3D U-Net's forward pass was 1.6× faster on
    #: a 2-core CPU, after 3-17 s of compiling once per process. A volume's short last batch is then
    #: padded to `batch_size` windows, so one compiled graph serves the whole run.
    compile: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.overlap < 1.0:
            raise ConfigError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.batch_size < 1:
            raise ConfigError(f"window batch size must be at least 1, got {self.batch_size}")
        if self.precision not in CHOICES:
            raise ConfigError(f"precision {self.precision!r}; use one of {', '.join(CHOICES)}")
        if self.precision == "auto":
            object.__setattr__(self, "precision", auto_precision(self.device))
        if self.network_dims is None:
            object.__setattr__(self, "network_dims", len(self.roi_size))
        channels_last = wants_channels_last(self.channels_last, self.device, self.network_dims)
        object.__setattr__(self, "channels_last", channels_last)
        if self.accumulate not in ACCUMULATORS:
            raise ConfigError(f"accumulate {self.accumulate!r}; use one of {', '.join(ACCUMULATORS)}")
        if any(axis < 0 or axis >= len(self.roi_size) for axis in self.mirror_axes):
            raise ConfigError(f"mirror axes {self.mirror_axes} outside 0..{len(self.roi_size) - 1}")
        if not all(MIN_ZOOM <= factor <= MAX_ZOOM for factor in self.zooms):
            raise ConfigError(f"test-time zooms {list(self.zooms)}: each must be in [{MIN_ZOOM}, {MAX_ZOOM}]")
        object.__setattr__(self, "zooms", tuple(sorted({1.0, *map(float, self.zooms)})))


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Start indices of windows of `roi` voxels covering `size` voxels; the last one ends at the edge.

    The step is ``int(roi * (1 - overlap))``, as MONAI's, so both cut the same windows.
    """
    if roi >= size:
        return [0]
    step = max(1, int(roi * (1.0 - overlap)))
    count = math.ceil((size - roi) / step) + 1
    return [min(i * step, size - roi) for i in range(count)]


def gaussian_weights(roi_size: Sequence[int], sigma_scale: float = SIGMA_SCALE) -> torch.Tensor:
    """Separable gaussian over a window, 1 at the centre, at least `MIN_WEIGHT` at the edges."""
    weights = torch.ones(())
    for size in roi_size:
        offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
        profile = torch.exp(-(offsets**2) / (2.0 * (sigma_scale * size) ** 2))
        weights = weights[..., None] * profile
    return weights.clamp(min=MIN_WEIGHT).float()


def mirror_sets(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of `axes` (the empty one first): the flips that test-time augmentation runs."""
    return [combo for n in range(len(axes) + 1) for combo in itertools.combinations(axes, n)]


def _batches(starts: list[tuple[int, ...]], size: int) -> Iterator[list[tuple[int, ...]]]:
    for first in range(0, len(starts), size):
        yield starts[first : first + size]


@torch.no_grad()
def window_scores(
    networks: Sequence[torch.nn.Module],
    batch: torch.Tensor,
    settings: WindowSettings,
    probabilities: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Class scores of a batch of windows summed over all networks and mirrored copies.

    A single pass comes back in the autocast type (bf16: half the bytes of a many-class batch); a sum
    is float32. With `probabilities`, the sum of every pass's softmax (float32) comes second, else None.
    """
    dtype = DTYPES[settings.precision]
    device_type = torch.device(settings.device).type
    if settings.channels_last and batch.ndim - 2 == settings.network_dims:
        batch = batch.contiguous(memory_format=channels_last_format(settings.network_dims))
    passes = [(network, flips) for network in networks for flips in mirror_sets(settings.mirror_axes)]
    total: torch.Tensor | None = None
    softmax_sum: torch.Tensor | None = None
    for network, flips in passes:
        dims = [axis + 2 for axis in flips]
        inputs = batch.flip(dims) if dims else batch
        with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
            scores = network(inputs)
        if dims:
            scores = scores.flip(dims)
        if probabilities:
            softmax = torch.softmax(scores.float(), dim=1)
            softmax_sum = softmax if softmax_sum is None else softmax_sum.add_(softmax)
        if len(passes) == 1:
            return scores, softmax_sum
        total = scores.float() if total is None else total.add_(scores)
    assert total is not None
    return total, softmax_sum


def compiled(network: torch.nn.Module, device: str) -> torch.nn.Module:
    """`network` under `torch.compile` with static shapes (uncompiled, with a warning, where it cannot
    be: `medseg.runtime.compilation`). Dynamo keeps what it compiled with the network's code, guarded by
    the network itself, so wrapping the same network again (every volume) reuses the compiled graph."""
    return compile_network(network, device, dynamic=False)


def _pad_to_roi(image: torch.Tensor, roi: Sequence[int]) -> tuple[torch.Tensor, list[slice]]:
    """Zero-pad `image` (C, *spatial) symmetrically to at least `roi`; the slices that undo it."""
    spatial = image.shape[1:]
    before = [max(0, r - s) // 2 for r, s in zip(roi, spatial, strict=True)]
    after = [max(0, r - s) - b for r, s, b in zip(roi, spatial, before, strict=True)]
    crop = [slice(b, b + s) for b, s in zip(before, spatial, strict=True)]
    if not any(before) and not any(after):
        return image, crop
    pads = [p for b, a in zip(reversed(before), reversed(after), strict=True) for p in (b, a)]
    return torch.nn.functional.pad(image, pads), crop


def running_argmax(channels: Iterable[torch.Tensor], classes: int) -> torch.Tensor:
    """Index of the largest of `channels` (the lowest on ties), as uint8 (int16 beyond 256 classes).

    A running maximum updated in place: ten times faster than ``argmax(dim=0)`` on a strided slab, no
    int64, and the channels may be made one at a time.
    """
    dtype = torch.uint8 if classes <= 256 else torch.int16
    channels = iter(channels)
    best = next(channels).clone()
    index = torch.zeros(best.shape, dtype=dtype, device=best.device)
    for value, channel in enumerate(channels, start=1):
        better = channel > best
        torch.maximum(best, channel, out=best)
        index.masked_fill_(better, value)
    return index


def _entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Normalised entropy (0..1, float16) over the first axis of summed, weighted probabilities."""
    total = probabilities.float()
    total = total / total.sum(dim=0, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    entropy = -(total * total.clamp_min(1e-12).log()).sum(dim=0)
    return (entropy / math.log(probabilities.shape[0])).clamp_(0, 1).to(torch.float16)


@torch.no_grad()
def segment(
    networks: Sequence[torch.nn.Module],
    image: torch.Tensor,
    settings: WindowSettings,
    progress: bool = False,
) -> torch.Tensor:
    """Label volume (uint8, same spatial shape as `image`) of a channel-first float `image` on the CPU.

    `networks` are in eval mode on ``settings.device`` and map (B, C, *roi) to (B, classes, *roi).
    """
    labels, _ = _stitch(networks, image, settings, progress, uncertainty=False)
    return labels


@torch.no_grad()
def segment_with_uncertainty(
    networks: Sequence[torch.nn.Module],
    image: torch.Tensor,
    settings: WindowSettings,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`segment`'s labels and the normalised predictive entropy (float16, 0..1) of every voxel."""
    labels, entropy = _stitch(networks, image, settings, progress, uncertainty=True)
    assert entropy is not None
    return labels, entropy


@torch.no_grad()
def segment_scores(
    networks: Sequence[torch.nn.Module],
    image: torch.Tensor,
    settings: WindowSettings,
    progress: bool = False,
    uncertainty: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean class scores (float16, (classes, *spatial)) on the CPU, and the entropy with `uncertainty`.

    Each voxel's scores are the gaussian-weighted mean over its windows, the networks and the mirrored
    copies: what `segment` takes the argmax of, kept for interpolating onto another grid first.
    """
    return _stitch(networks, image, settings, progress, uncertainty, keep_scores=True)


def _stitch(
    networks: Sequence[torch.nn.Module],
    image: torch.Tensor,
    settings: WindowSettings,
    progress: bool,
    uncertainty: bool,
    keep_scores: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Labels, or with `keep_scores` the mean scores, of `image`, slab by slab (see the module
    docstring); with `uncertainty`, the entropy second."""
    roi = tuple(settings.roi_size)
    if image.ndim != len(roi) + 1:
        raise ConfigError(f"window {roi} does not fit an image of shape {tuple(image.shape)} (channel first)")
    if settings.channels_last:
        for network in networks:  # weights in the inputs' format, or every convolution converts them
            network.to(memory_format=channels_last_format(settings.network_dims))
    if settings.compile:
        networks = [compiled(network, settings.device) for network in networks]
    padded, crop = _pad_to_roi(image, roi)
    # Windows are cut where the networks run: on a GPU the volume crosses once, not window by window.
    padded = padded.to(settings.device)
    spatial = padded.shape[1:]
    roi = tuple(min(r, s) for r, s in zip(roi, spatial, strict=True))
    per_axis = [window_starts(s, r, settings.overlap) for s, r in zip(spatial, roi, strict=True)]
    # Ordered by their start on the last axis, so the buffer only needs to be one window deep.
    starts = [(*rest, last) for last in per_axis[-1] for rest in itertools.product(*per_axis[:-1])]
    batches = list(_batches(starts, settings.batch_size))
    depth = roi[-1]

    # Weights in the buffer's type: a same-type multiply-add is several times faster on a CPU than a
    # mixed-type one, and the product needs no float32 temporary.
    weights = gaussian_weights(roi).to(settings.device, ACCUMULATORS[settings.accumulate])
    # With `keep_scores`, each voxel's sum of weights, to turn the score sums into means.
    coverage = torch.zeros((1, *spatial[:-1], depth), device=settings.device) if keep_scores else None
    passes = len(networks) * len(mirror_sets(settings.mirror_axes))
    # Allocated when the first scores tell the number of classes; `softmaxes` only with `uncertainty`.
    buffer = softmaxes = output = entropy = torch.empty(0)
    base = 0  # first slice held in the buffers

    def flush(until: int) -> None:
        """Write the argmax or mean scores (and entropy) of slices [base, until); move the buffers on."""
        nonlocal base
        done = until - base
        if done <= 0:
            return
        if coverage is not None:
            mean = buffer[..., :done].float() / (coverage[..., :done] * passes)
            output[..., base:until] = mean.to(output.dtype).cpu()
        else:
            output[..., base:until] = running_argmax(buffer[..., :done], len(buffer)).cpu()
        if uncertainty:
            entropy[..., base:until] = _entropy(softmaxes[..., :done]).cpu()
        held = [buffer] + [softmaxes] * uncertainty + [coverage] * (coverage is not None)
        for each in held:
            for channel in each:  # one class at a time, so the temporary copy stays small
                channel[..., : depth - done] = channel[..., done:].clone()
                channel[..., depth - done :] = 0
        base = until

    for batch in tqdm(batches, desc="windows", unit="batch", disable=not progress, leave=False):
        windows = [tuple(slice(s, s + r) for s, r in zip(start, roi, strict=True)) for start in batch]
        inputs = torch.stack([padded[(slice(None), *window)] for window in windows])
        if settings.compile and len(windows) < settings.batch_size:  # one batch shape: no recompiling
            filler = inputs[-1:].expand(settings.batch_size - len(windows), *inputs.shape[1:])
            inputs = torch.cat([inputs, filler])
        if DTYPES[settings.precision] is None:
            inputs = inputs.float()  # fp32 runs without autocast: the image may be stored in half precision
        scores, probabilities = window_scores(networks, inputs, settings, uncertainty)
        if not buffer.numel():
            classes = scores.shape[1]
            shape, dtype = (classes, *spatial[:-1], depth), ACCUMULATORS[settings.accumulate]
            buffer = torch.zeros(shape, dtype=dtype, device=settings.device)
            if keep_scores:
                output = torch.empty((classes, *spatial), dtype=torch.float16)
            else:
                output = torch.empty(spatial, dtype=torch.uint8 if classes <= 256 else torch.int16)
            if uncertainty:
                softmaxes = torch.zeros_like(buffer)
                entropy = torch.empty(spatial, dtype=torch.float16)
        for index, window in enumerate(windows):  # one window at a time: small temporaries
            flush(window[-1].start)  # no window after this one reaches the slices before its start
            _add_weighted(buffer, scores[index], window, weights, depth)
            if coverage is not None:
                coverage[(slice(None), *window[:-1], slice(0, depth))] += weights
            if probabilities is not None:
                _add_weighted(softmaxes, probabilities[index], window, weights, depth)
    flush(spatial[-1])
    output = output[(slice(None), *crop)] if keep_scores else output[tuple(crop)]
    return output, entropy[tuple(crop)] if uncertainty else None


def _add_weighted(
    buffer: torch.Tensor, score: torch.Tensor, window: tuple[slice, ...], weights: torch.Tensor, depth: int
) -> None:
    """Add one window's gaussian-weighted scores into its place in the slab buffer."""
    target = buffer[(slice(None), *window[:-1], slice(0, depth))]
    target.addcmul_(score.to(buffer.dtype), weights)  # one fused pass over the window
