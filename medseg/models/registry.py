"""The model registry: one `ModelSpec` per architecture, registered with `@register`, built by `create_model`.

A builder is a plain function ``builder(spatial_dims, in_channels, out_channels, *, option=default, ...)``
returning an `nn.Module` that follows the output contract of `medseg.models.outputs`. Its keyword-only
parameters *are* the model's options: `create_model` checks the caller's options against them, and the
defaults shown by `medseg models` are read from the signature, so they are written down only once.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.models.padding import PadToDivisor, per_axis

#: Parameters every builder takes positionally; everything else is an option.
STANDARD_ARGUMENTS = ("spatial_dims", "in_channels", "out_channels")

#: How many close names an "unknown model/option" error suggests.
MAX_SUGGESTIONS = 3

#: ``divisor(spatial_dims, options) -> per-axis divisor`` the input size must be a multiple of.
DivisorRule = Callable[[int, dict[str, Any]], tuple[int, ...]]


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture."""

    name: str
    builder: Callable[..., nn.Module]
    dims: tuple[int, ...]
    family: str
    description: str
    divisor: DivisorRule
    #: Option whose value fixes the input shape (UNETR's learned position embeddings), or None.
    fixed_size_option: str | None = None

    @property
    def defaults(self) -> dict[str, Any]:
        """Option name -> default value, read from the builder's keyword-only parameters."""
        parameters = inspect.signature(self.builder).parameters.values()
        return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str,
    *,
    family: str,
    description: str,
    divisor: DivisorRule,
    dims: tuple[int, ...] = (2, 3),
    fixed_size_option: str | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a builder under `name`."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, builder, dims, family, description, divisor, fixed_size_option)
        return builder

    return decorate


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The `ModelSpec` registered under `name`; `ConfigError` with suggestions if there is none."""
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown model {name!r}{_suggest(name, _REGISTRY)}; valid models: {', '.join(list_models())}"
        )
    return _REGISTRY[name]


def create_model(
    name: str, spatial_dims: int, in_channels: int, out_channels: int, **options: Any
) -> PadToDivisor:
    """Build model `name` for `spatial_dims`-D inputs, wrapped so that any input size works.

    Options are the builder's keyword-only parameters (MONAI's own names for wrapped MONAI networks);
    unknown options raise `ConfigError` listing the valid ones. The result pads its input to the
    architecture's required divisor and crops the outputs back (see `PadToDivisor`).
    """
    spec = get_spec(name)
    if spatial_dims not in spec.dims:
        raise ConfigError(f"model {name!r} supports spatial_dims in {spec.dims}, not {spatial_dims}")
    for label, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"model {name!r}: {label} must be a positive integer, got {value!r}")
    defaults = spec.defaults
    unknown = [key for key in options if key not in defaults]
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option {unknown[0]!r}{_suggest(unknown[0], defaults)}; "
            f"valid options: {', '.join(defaults) or '(none)'}"
        )
    resolved = {**defaults, **options}
    try:
        network = spec.builder(spatial_dims, in_channels, out_channels, **options)
    except (ValueError, TypeError, AssertionError) as error:
        raise ConfigError(f"model {name!r} cannot be built with options {options}: {error}") from None
    fixed_shape = None
    if spec.fixed_size_option is not None:
        fixed_shape = per_axis(resolved[spec.fixed_size_option], spatial_dims)
    return PadToDivisor(network, spec.divisor(spatial_dims, resolved), fixed_shape=fixed_shape, name=name)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def build_cheaply(build: Callable[[], nn.Module]) -> nn.Module:
    """`build()` on the meta device, which allocates no memory, where it can be: SwinUNETR reads tensor
    values while building, which the meta device refuses, so such models are built on the CPU."""
    try:
        with torch.device("meta"):
            return build()
    except RuntimeError:
        return build()  # a real error in the options raises again here


@functools.cache
def default_parameter_count(name: str, spatial_dims: int, in_channels: int = 1, out_channels: int = 2) -> int:
    """Trainable parameters of `name` at its default options."""
    return count_parameters(
        build_cheaply(lambda: create_model(name, spatial_dims, in_channels, out_channels))
    )


def _suggest(word: str, choices: dict[str, Any]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=MAX_SUGGESTIONS)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
