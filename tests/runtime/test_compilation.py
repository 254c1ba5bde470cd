"""torch.compile where it can run; the plain network, with one warning, where it cannot (no C++ compiler)."""

from __future__ import annotations

import logging

import pytest
import torch
from torch._inductor import config as inductor_config

from medseg.inference.sliding_window import WindowSettings, segment
from medseg.runtime import compilation
from medseg.runtime.compilation import compile_network, compile_unavailable


@pytest.fixture
def no_cxx():
    """This machine as one without a C++ compiler: inductor finds none of its candidates. (Set and
    restored by hand: monkeypatch's undo deletes attributes of torch's config modules.)"""
    saved = inductor_config.cpp.cxx
    inductor_config.cpp.cxx = (None, "/nonexistent/g++")
    compilation._warn_once.cache_clear()
    yield
    inductor_config.cpp.cxx = saved


def test_compiles_where_a_compiler_exists():
    network = torch.nn.Conv3d(1, 2, 3)
    assert compile_unavailable("cpu") is None  # this machine (and CI) has g++
    assert compile_network(network, "cpu") is not network
    assert compile_unavailable("cuda") is None  # GPU kernels need no host C++ compiler check here


def test_without_a_compiler_the_network_runs_uncompiled_with_a_warning(no_cxx, caplog):
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1)).eval()
    assert "C++ compiler" in compile_unavailable("cpu")
    with caplog.at_level(logging.WARNING, logger="medseg.runtime.compilation"):
        assert compile_network(network, "cpu") is network
        volume = torch.randn(1, 20, 20, 12)
        compiled = segment([network], volume, WindowSettings((16, 16, 8), precision="fp32", compile=True))
    assert torch.equal(compiled, segment([network], volume, WindowSettings((16, 16, 8), precision="fp32")))
    warnings = [r for r in caplog.records if "torch.compile is off" in r.getMessage()]
    assert len(warnings) == 1 and "install g++" in warnings[0].getMessage()  # once, not per volume
