"""Two gloo processes (as `torchrun --nproc_per_node 2` on a CPU) train one model together."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from train_fixtures import hippocampus_manifest, tiny_config

from medseg.checkpoint import load_checkpoint
from medseg.training.config import config_from_dict
from medseg.training.trainer import fit

pytestmark = pytest.mark.slow

WORLD_SIZE = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, raw_config: dict, port: int, out_dir: str) -> None:
    """What torchrun would set up for each rank, then a normal `fit`; the final weights are saved."""
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(WORLD_SIZE),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    summary = fit(config_from_dict(raw_config))
    torch.save(summary["model"].state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forked workers (spawn re-imports torch: ~20 s per rank)")
def test_two_gloo_ranks_end_with_identical_weights_and_one_checkpoint(datasets_dir, tmp_path):
    manifest = hippocampus_manifest(datasets_dir, tmp_path, train=4, val=1)
    output = tmp_path / "run"
    raw = tiny_config(manifest, output, epochs=1, steps_per_epoch=2, device="cpu")
    mp.start_processes(
        _worker, args=(raw, _free_port(), str(tmp_path)), nprocs=WORLD_SIZE, start_method="spawn"
    )
    weights = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD_SIZE)]
    checkpoint = load_checkpoint(output / "last.pt")
    assert checkpoint["training"]["step"] == 2
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name
        assert torch.equal(tensor, checkpoint["state_dict"][name]), name
    # the initial weights differ from the final ones, so the ranks really trained (and agreed)
    assert sorted(p.name for p in output.glob("*.pt")) == ["best.pt", "last.pt"]
    assert len(list((output / "tensorboard").iterdir())) == 1  # one event file: only rank 0 logs
