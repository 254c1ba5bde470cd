"""`torch.compile` where it can run, and the plain network (with a warning) where it cannot.

Compiling is a speed option (training `compile: true`, `medseg infer --compile`), never a reason for a
run to fail. On a CPU, inductor builds C++ kernels, so it needs a working C++ compiler; without one the
first forward pass would raise deep inside torch. This is checked before compiling: the network then
runs eagerly and the log says why.
"""

from __future__ import annotations

import functools
import logging

import torch

log = logging.getLogger(__name__)


def compile_unavailable(device: str) -> str | None:
    """Why `torch.compile` cannot run on `device` here, or None when it can. (Torch caches its own
    compiler search, so asking again for every volume costs nothing.)"""
    if torch.device(device).type != "cpu":
        return None
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as error:  # InvalidCxxCompiler, or a torch without this (private) helper
        return f"no working C++ compiler for inductor's CPU kernels ({type(error).__name__}: {error})"
    return None


def compile_network(network: torch.nn.Module, device: str, **options) -> torch.nn.Module:
    """`torch.compile(network, **options)`, or `network` itself when `compile_unavailable` says why not."""
    reason = compile_unavailable(device)
    if reason:
        _warn_once(reason)
        return network
    return torch.compile(network, **options)


@functools.cache
def _warn_once(reason: str) -> None:
    log.warning("torch.compile is off, the network runs uncompiled: %s; install g++ to use it", reason)
