"""Several processes with `torchrun` (DDP): process group set-up from the environment, and helpers.

``torchrun --nproc_per_node N -m medseg.cli.main train CONFIG`` starts N processes; each reads its
rank from the environment (RANK, WORLD_SIZE, LOCAL_RANK). The backend is NCCL on GPUs and gloo on the
CPU. Every rank trains on its share of each epoch's patches (`medseg.training.patches.EpochSampler`);
gradients are averaged by `DistributedDataParallel`; only rank 0 logs, validates and saves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among `world_size` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def setup(device: str) -> Context:
    """Join the process group if `torchrun` started us (NCCL on CUDA, gloo on the CPU); else one process."""
    if not launched_by_torchrun():
        return Context()
    context = Context(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    )
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    return context


def device_for(context: Context, device: str) -> str:
    """The device this rank uses: its own GPU (LOCAL_RANK) under torchrun on CUDA."""
    if torch.device(device).type == "cuda" and context.distributed:
        torch.cuda.set_device(context.local_rank)
        return f"cuda:{context.local_rank}"
    return device


def wrap(model: torch.nn.Module, context: Context, device: str) -> torch.nn.Module:
    """`model` wrapped in `DistributedDataParallel` when several processes train, else itself."""
    if not context.distributed:
        return model
    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model inside a DDP (or `torch.compile`) wrapper."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()


def _tensor(values: list[float]) -> torch.Tensor:
    """A float64 tensor where the backend can reduce it (NCCL reduces GPU tensors only)."""
    on_gpu = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
    return torch.tensor(values, dtype=torch.float64, device=device)


def broadcast_flag(flag: bool, context: Context) -> bool:
    """Rank 0's value of `flag` on every rank (e.g. "stop early"), so all ranks leave the loop together."""
    if not context.distributed:
        return flag
    tensor = _tensor([float(flag)])
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def average(value: float, context: Context) -> float:
    """Mean of `value` over all ranks (the logged loss)."""
    if not context.distributed:
        return value
    tensor = _tensor([value])
    dist.all_reduce(tensor)
    return float(tensor.item()) / context.world_size


def teardown(context: Context) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()
